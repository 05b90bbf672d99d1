"""A dataset folder (DESIGN §3) for `s4al simulate` and the benchmarks: the index comes from the one
layout reader (service/layout.py), pixels are loaded on demand as numpy arrays (HxWx3 uint8 images, HxW
uint8 masks).

No val.txt: simulation still needs a held-out set, so `simulation_split` holds out a deterministic
~10% of the train stems: those whose SHA-1 of the stem ranks lowest (at least one image, and at least
one left for training). It depends only on the stems, not on file order or on a seed, so every run and
every arm evaluate on the same images.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from service.layout import LayoutError, LayoutItem, read_layout
from service.masks import MaskError, decode_mask_png

DatasetError = LayoutError  # the name simulate's callers know
DatasetItem = LayoutItem


@dataclass
class Dataset:
    root: Path
    classes: list[dict]  # sorted by id: {"id", "name", "color"}
    items: list[DatasetItem] = field(default_factory=list)  # sorted by stem
    has_val_split: bool = False
    _index: dict[str, DatasetItem] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]

    def item(self, stem: str) -> DatasetItem:
        if len(self._index) != len(self.items):
            self._index = {it.stem: it for it in self.items}
        return self._index[stem]

    def stems(self, split: str) -> list[str]:
        return [it.stem for it in self.items if it.split == split]

    def simulation_split(self, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
        """(train stems, val stems): val.txt when present, else the deterministic fallback."""
        if self.has_val_split:
            return self.stems("train"), self.stems("val")
        train = self.stems("train")
        val = set(fallback_val_stems(train, val_fraction))
        return [s for s in train if s not in val], [s for s in train if s in val]

    def load_image(self, stem: str) -> np.ndarray:
        return load_image(self.item(stem).image_path)

    def load_mask(self, stem: str) -> np.ndarray | None:
        it = self.item(stem)
        if it.mask_path is None:
            return None
        return load_mask(it.mask_path, it.width, it.height, self.num_classes)

    def load(self, stems: list[str]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Images and masks (None where an image has no mask) for these stems, in order."""
        return [self.load_image(s) for s in stems], [self.load_mask(s) for s in stems]


def fallback_val_stems(stems: list[str], fraction: float = 0.1) -> list[str]:
    """A deterministic held-out subset: the ceil(fraction * n) stems with the smallest SHA-1, sorted."""
    if len(stems) < 2:
        return []
    n = min(len(stems) - 1, max(1, math.ceil(fraction * len(stems))))
    ranked = sorted(stems, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return sorted(ranked[:n])


def load_image(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB (grey, palette and alpha images are converted; alpha is dropped)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(path.parent.parent, [f"images/{path.name}: cannot be decoded: {exc}"]) from exc


def load_mask(path: Path, width: int, height: int, num_classes: int) -> np.ndarray:
    """HxW uint8 class ids; raises DatasetError naming the file for any layout violation."""
    try:
        return decode_mask_png(path.read_bytes(), width, height, num_classes)
    except (OSError, MaskError) as exc:
        raise DatasetError(path.parent.parent, [f"masks/{path.name}: {exc}"]) from exc


def read_dataset(root: Path | str, *, require_masks: bool = False) -> Dataset:
    """Validate the folder and return its index; `require_masks`: every image must have a mask
    (simulation and evaluation need ground truth)."""
    layout = read_layout(root, require_masks=require_masks)
    return Dataset(layout.root, layout.classes, layout.items, has_val_split=layout.has_val_split)
