"""Writing a generated dataset in the DESIGN §3 layout (classes.json, images/, masks/, splits/)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

WRITTEN = ("classes.json", "images", "masks", "splits")
Scene = Callable[[np.random.Generator, str], tuple[np.ndarray, np.ndarray]]


def prepare(out_dir: Path | str, classes: list[dict], force: bool, name: str) -> Path:
    """Create the folder with classes.json; refuse a non-empty one unless `force`, which first removes
    only what a generator writes."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ValueError(f"{out}: not empty (use --force to replace a previous {name} dataset)")
        for entry in WRITTEN:
            p = out / entry
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    for sub in ("images", "masks", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    return out


def write_splits(out: Path, scene: Scene, counts: dict[str, int], seed: int, num_classes: int) -> np.ndarray:
    """Write `counts[split]` scenes per split (an independent random stream per split, so the val scenes
    do not change with the number of train scenes); returns the pixel count of every class."""
    pixels = np.zeros(num_classes, np.int64)
    for (split, n), seq in zip(counts.items(), np.random.SeedSequence(seed).spawn(len(counts)), strict=True):
        rng = np.random.default_rng(seq)
        stems = [f"{split}_{i:05d}" for i in range(n)]
        for stem in stems:
            image, label = scene(rng, split)
            Image.fromarray(image).save(out / "images" / f"{stem}.png")
            Image.fromarray(label).save(out / "masks" / f"{stem}.png")
            pixels += np.bincount(label.ravel(), minlength=num_classes)
        (out / "splits" / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    return pixels


def pixel_shares(classes: list[dict], pixels: np.ndarray) -> dict[str, float]:
    total = max(1, int(pixels.sum()))
    return {c["name"]: round(float(v) / total, 4) for c, v in zip(classes, pixels, strict=True)}


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """HxW float in [0, 1]: a coarse `cells`x`cells` random grid upsampled bicubically (smooth blobs)."""
    coarse = Image.fromarray((rng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float64) / 255
