"""`fashion-scenes`: a synthetic segmentation dataset with exact labels, built from Fashion-MNIST items.

Each scene is a procedural textured background (smooth value noise, stripes at a random angle, or
checks; two random colours plus grain) with 2-6 garments pasted at random scales (30-60% of the
scene side), positions and horizontal flips. A garment is a 28x28 grey Fashion-MNIST item, resized
bilinearly; its mask is its pixels above `ITEM_THRESHOLD`, and inside that mask the scene takes a
random tint shaded by the item's grey level. The label map gets the garment's class on exactly those
pixels, and later pastes overwrite earlier ones (occlusion), so labels are exact by construction.

Classes: 0 background + the 10 Fashion-MNIST classes (1..10). Train scenes use items from Fashion-MNIST's
train set, val scenes items from its test set (the committed subset, worker/data/fashion_mnist_subset.npz),
so no garment appears in both splits. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from worker.data.writer import pixel_shares, prepare, write_splits

SUBSET = Path(__file__).with_name("fashion_mnist_subset.npz")
ITEM_THRESHOLD = 50  # grey level (0..255) above which an item pixel belongs to the garment
MIN_SIZE = 16
CLASSES = [
    {"id": 0, "name": "background", "color": "#000000"},
    {"id": 1, "name": "t-shirt", "color": "#e6194b"},
    {"id": 2, "name": "trouser", "color": "#3cb44b"},
    {"id": 3, "name": "pullover", "color": "#ffe119"},
    {"id": 4, "name": "dress", "color": "#4363d8"},
    {"id": 5, "name": "coat", "color": "#f58231"},
    {"id": 6, "name": "sandal", "color": "#911eb4"},
    {"id": 7, "name": "shirt", "color": "#42d4f4"},
    {"id": 8, "name": "sneaker", "color": "#f032e6"},
    {"id": 9, "name": "bag", "color": "#bfef45"},
    {"id": 10, "name": "ankle-boot", "color": "#469990"},
]


def load_items(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(items [N,28,28] uint8, Fashion-MNIST class 0..9 [N]) of the committed subset; split train|val."""
    with np.load(SUBSET) as data:
        return data[f"{split}_items"], data[f"{split}_labels"]


def _colour(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """A random RGB colour with value (brightness) in [lo, hi]."""
    c = rng.uniform(0.0, 1.0, 3)
    return c / max(c.max(), 1e-6) * rng.uniform(lo, hi)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """HxWx3 float in [0, 1]: one of three textures between two colours, plus grain."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == 0:  # smooth value noise: a coarse random grid, bilinearly upsampled
        cells = int(rng.integers(3, 9))
        coarse = Image.fromarray((rng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8))
        t = np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.float64) / 255
    elif kind == 1:  # stripes at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    else:  # checks
        cell = int(rng.integers(4, 13))
        t = ((xx // cell + yy // cell) % 2).astype(np.float64)
    a, b = _colour(rng, 0.1, 0.6), _colour(rng, 0.1, 0.6)
    img = a + t[..., None] * (b - a)
    return np.clip(img + rng.normal(0, 0.025, img.shape), 0, 1)


def make_scene(rng: np.random.Generator, items: np.ndarray, classes: np.ndarray,
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (HxWx3 uint8 image, HxW uint8 labels 0..10)."""
    img = background(rng, size)
    label = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 7))):
        k = int(rng.integers(len(items)))
        side = int(round(rng.uniform(0.3, 0.6) * size))
        grey = Image.fromarray(items[k]).resize((side, side), Image.BILINEAR)
        grey = np.asarray(grey, dtype=np.float64)
        if rng.random() < 0.5:
            grey = grey[:, ::-1]
        y, x = (int(v) for v in rng.integers(0, size - side + 1, 2))
        paste(img, label, grey, _colour(rng, 0.6, 1.0), x, y, int(classes[k]) + 1)
    return (img * 255 + 0.5).astype(np.uint8), label


def paste(img: np.ndarray, label: np.ndarray, grey: np.ndarray, tint: np.ndarray, x: int, y: int,
          class_id: int) -> None:
    """Paste one garment in place: its pixels (grey > ITEM_THRESHOLD) take the tint shaded by their grey
    level (0.35..1) in `img` (float [0, 1]) and `class_id` in `label`; everything else is untouched."""
    h, w = grey.shape
    mask = grey > ITEM_THRESHOLD
    img[y:y + h, x:x + w][mask] = tint * (0.35 + 0.65 * grey[mask, None] / 255)
    label[y:y + h, x:x + w][mask] = class_id


def generate(out_dir: Path | str, n_train: int = 600, n_val: int = 100, size: int = 64, seed: int = 0,
             force: bool = False) -> dict:
    """Write the dataset (DESIGN §3 layout) to `out_dir`; returns a summary.

    Refuses a non-empty folder unless `force`, which first removes only what this writes
    (classes.json, images/, masks/, splits/).
    """
    if n_train < 1 or n_val < 0:
        raise ValueError(f"need n_train >= 1 and n_val >= 0, got {n_train} and {n_val}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")
    out = prepare(out_dir, CLASSES, force, "fashion-scenes")
    pools = {split: load_items(split) for split in ("train", "val")}
    pixels = write_splits(out, lambda rng, split: make_scene(rng, *pools[split], size),
                          {"train": n_train, "val": n_val}, seed, len(CLASSES))
    return {"out_dir": str(out), "train": n_train, "val": n_val, "size": size, "seed": seed,
            "class_pixel_share": pixel_shares(CLASSES, pixels)}
