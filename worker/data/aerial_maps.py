"""`aerial-maps`: synthetic top-down maps, 128 px by default, large smooth structures and thin ones.

Fields, forest and lakes are large smooth blobs (thresholded smooth noise); a river (a sine-wandering
band 3-6 px wide) joins the water class; 1-3 straight roads 2-3 px wide cross the map (over the river:
bridges); small buildings sit beside the roads. Each class is painted with its own colour (jittered per
map) and texture, and the label map is written from the same masks, so labels are exact by
construction. Thin structures (roads, rivers) are few pixels but many boundary crossings: the data
where grid cells and clicks differ most from pixel counts. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.data.writer import pixel_shares, prepare, smooth_noise, write_splits

MIN_SIZE = 32
CLASSES = [
    {"id": 0, "name": "field", "color": "#c8d46a"},
    {"id": 1, "name": "forest", "color": "#1f6b2a"},
    {"id": 2, "name": "water", "color": "#2b6cd4"},
    {"id": 3, "name": "road", "color": "#8c8c8c"},
    {"id": 4, "name": "building", "color": "#b3412e"},
]
# Base colour (RGB in [0, 1]) and grain of each class: forest is rough, water smooth.
_PAINT = {0: ((0.72, 0.78, 0.38), 0.04), 1: ((0.14, 0.38, 0.16), 0.09), 2: ((0.16, 0.36, 0.78), 0.02),
          3: ((0.55, 0.55, 0.55), 0.03), 4: ((0.70, 0.26, 0.18), 0.03)}


def _river(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if rng.random() < 0.5:
        yy, xx = xx, yy  # flowing across instead of down
    amplitude, period = rng.uniform(0.05, 0.2) * size, rng.uniform(0.5, 1.5) * size
    centre = rng.uniform(0.2, 0.8) * size + amplitude * np.sin(2 * np.pi * yy / period + rng.uniform(0, 6.3))
    slope = amplitude * 2 * np.pi / period * np.cos(2 * np.pi * yy / period)
    half = rng.uniform(1.5, 3.0)
    return np.abs(xx - centre) < half * np.sqrt(1 + slope ** 2)


def _road(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(road mask, distance to the road's centre line) for one straight road."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    x0, y0 = rng.uniform(0.15, 0.85, 2) * size
    dist = np.abs((xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle))
    return dist < rng.uniform(1.0, 1.6), dist


def make_map(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One map: (HxWx3 uint8 image, HxW uint8 labels 0..4)."""
    label = np.zeros((size, size), np.uint8)
    label[smooth_noise(rng, size, int(rng.integers(3, 6))) > rng.uniform(0.5, 0.65)] = 1
    label[smooth_noise(rng, size, int(rng.integers(2, 5))) > rng.uniform(0.68, 0.8)] = 2
    if rng.random() < 0.8:
        label[_river(rng, size)] = 2
    for _ in range(int(rng.integers(1, 4))):
        road, dist = _road(rng, size)
        label[road] = 3
        for _ in range(int(rng.integers(0, 5))):  # buildings just off the road, on dry land
            ys, xs = np.nonzero((dist > 3) & (dist < 6) & (label < 2))
            if ys.size == 0:
                break
            k = int(rng.integers(ys.size))
            h, w = (int(v) for v in rng.integers(3, 7, 2))
            y, x = min(ys[k], size - h), min(xs[k], size - w)
            label[y:y + h, x:x + w] = 4
    return _paint(rng, label), label


def _paint(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    size = label.shape[0]
    shade = 0.85 + 0.3 * smooth_noise(rng, size, 4)  # light varies smoothly over the map
    img = np.zeros((size, size, 3))
    for c, (colour, grain) in _PAINT.items():
        where = label == c
        tint = np.clip(np.asarray(colour) + rng.normal(0, 0.05, 3), 0, 1)
        img[where] = tint + rng.normal(0, grain, (int(where.sum()), 3))
    img *= shade[..., None]
    return (np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1) * 255 + 0.5).astype(np.uint8)


def generate(out_dir: Path | str, n_train: int = 200, n_val: int = 40, size: int = 128, seed: int = 0,
             force: bool = False) -> dict:
    """Write the dataset (DESIGN §3 layout) to `out_dir`; returns a summary (`force`: writer.prepare)."""
    if n_train < 1 or n_val < 0:
        raise ValueError(f"need n_train >= 1 and n_val >= 0, got {n_train} and {n_val}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")
    out = prepare(out_dir, CLASSES, force, "aerial-maps")
    pixels = write_splits(out, lambda rng, _split: make_map(rng, size), {"train": n_train, "val": n_val},
                          seed, len(CLASSES))
    return {"out_dir": str(out), "train": n_train, "val": n_val, "size": size, "seed": seed,
            "class_pixel_share": pixel_shares(CLASSES, pixels)}
