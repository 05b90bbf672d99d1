"""`long-tail`: shapes on textured ground whose classes differ in frequency by two orders of magnitude.

Each scene (64 px by default) is a smooth two-colour background with objects of six shape classes
(disc, square, triangle, ring, cross, bar). The number of objects of class k in a scene is Poisson with
mean `RATES[k]`, halving from class to class, so the head class covers tens of times the pixels of the
tail classes and many scenes hold no tail object at all: the data where uncertainty sampling and class
balance matter. Each class has its own hue band (jittered, overlapping its neighbours') and its own
shape; objects overwrite earlier ones and the label map is written from the same masks, so labels are
exact by construction. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.data.writer import pixel_shares, prepare, smooth_noise, write_splits

MIN_SIZE = 32
CLASSES = [
    {"id": 0, "name": "background", "color": "#000000"},
    {"id": 1, "name": "disc", "color": "#e6194b"},
    {"id": 2, "name": "square", "color": "#3cb44b"},
    {"id": 3, "name": "triangle", "color": "#ffe119"},
    {"id": 4, "name": "ring", "color": "#4363d8"},
    {"id": 5, "name": "cross", "color": "#f58231"},
    {"id": 6, "name": "bar", "color": "#911eb4"},
]
RATES = (3.0, 1.5, 0.75, 0.35, 0.18, 0.09)  # mean objects per scene of classes 1..6
_HUE = np.array([0.0, 0.16, 0.33, 0.5, 0.66, 0.83])  # centre hue of classes 1..6


def shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Pixels of one shape of class `kind` (1..6) with radius `r`, centred at (0, 0) of (yy, xx)."""
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if kind == 1:
        return u ** 2 + v ** 2 < r ** 2
    if kind == 2:
        return (np.abs(u) < 0.8 * r) & (np.abs(v) < 0.8 * r)
    if kind == 3:
        return (v < 0.5 * r) & (v > -r + 2 * np.abs(u) * 0.9)
    if kind == 4:
        d = np.sqrt(u ** 2 + v ** 2)
        return (d < r) & (d > 0.55 * r)
    if kind == 5:
        return ((np.abs(u) < 0.3 * r) & (np.abs(v) < r)) | ((np.abs(v) < 0.3 * r) & (np.abs(u) < r))
    return (np.abs(u) < 1.3 * r) & (np.abs(v) < 0.25 * r)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def make_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (HxWx3 uint8 image, HxW uint8 labels 0..6)."""
    t = smooth_noise(rng, size, int(rng.integers(2, 6)))[..., None]
    a, b = (_hsv(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.2, 0.5)) for _ in range(2))
    img = a + t * (b - a)
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    objects = [k for k, rate in enumerate(RATES, start=1) for _ in range(int(rng.poisson(rate)))]
    for k in rng.permutation(objects) if objects else []:
        r = rng.uniform(0.07, 0.16) * size
        cy, cx = rng.uniform(0, size, 2)
        mask = shape_mask(int(k), yy - cy, xx - cx, r, rng.uniform(0, np.pi))
        colour = _hsv((_HUE[k - 1] + rng.normal(0, 0.06)) % 1, rng.uniform(0.5, 0.9), rng.uniform(0.6, 1.0))
        img[mask] = colour
        label[mask] = k
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    return (img * 255 + 0.5).astype(np.uint8), label


def generate(out_dir: Path | str, n_train: int = 400, n_val: int = 100, size: int = 64, seed: int = 0,
             force: bool = False) -> dict:
    """Write the dataset (DESIGN §3 layout) to `out_dir`; returns a summary (`force`: writer.prepare)."""
    if n_train < 1 or n_val < 0:
        raise ValueError(f"need n_train >= 1 and n_val >= 0, got {n_train} and {n_val}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")
    out = prepare(out_dir, CLASSES, force, "long-tail")
    pixels = write_splits(out, lambda rng, _split: make_scene(rng, size), {"train": n_train, "val": n_val},
                          seed, len(CLASSES))
    return {"out_dir": str(out), "train": n_train, "val": n_val, "size": size, "seed": seed,
            "class_pixel_share": pixel_shares(CLASSES, pixels)}
