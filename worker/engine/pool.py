"""The training pool as samples read on demand: no image or label is held longer than one use.

A `Pool` is a sequence of images with their current labels (HxW uint8, 255 = unlabeled). `FilePool` reads
files (what the worker hands the engine: an image file, its materialized label file or none, a cache path
for its superpixels); `ArrayPool` wraps arrays already in memory (`s4al simulate` on small data, tests).
Both answer the same questions, so the data loader, the scorer and the evaluator never hold the pool.

Training crops ask for a `window`: some rows and columns of an image and its label at the training
resolution. A `FilePool` sample with a `cache` folder reads those rows from a decoded copy (decoded.py),
decoding its file only the first time; any other pool decodes, resizes and cuts. Both give the same
pixels, since the copy is that same resized image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from service.masks import IGNORE
from worker.engine import decoded
from worker.engine.resample import resize_image, resize_label


@dataclass(frozen=True)
class Sample:
    image: str  # image file (PNG/JPEG)
    label: str | None = None  # its label file (8-bit class ids, 255 = unlabeled); None = nothing labeled
    superpixels: str | None = None  # where this image's superpixel map is cached (.npy); None = not cached
    name: str = ""  # how errors name the image (its file name when empty)
    cache: str | None = None  # folder of decoded copies for training crops (decoded.py); None = none

    @property
    def title(self) -> str:
        return self.name or Path(self.image).name


class Pool:
    """The questions every pool answers; `i` is the image's index in the pool."""

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, i: int) -> np.ndarray:  # HxWx3 uint8
        raise NotImplementedError

    def label(self, i: int) -> np.ndarray:  # HxW uint8, 255 = unlabeled
        raise NotImplementedError

    def size(self, i: int) -> tuple[int, int]:  # (height, width), without decoding pixels
        raise NotImplementedError

    def window(self, i: int, size: tuple[int, int], rows: slice,
               cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Image `i` and its label resized whole to `size` (its training resolution, resample.py), cut
        to `rows` x `cols` (start and stop set, inside `size`)."""
        image, label = resize_image(self.image(i), size), resize_label(self.label(i), size)
        return image[rows, cols], label[rows, cols]

    def name(self, i: int) -> str:
        return f"image {i}"

    def has_label(self, i: int) -> bool:
        """False only when the image surely has no labeled pixel (no label file)."""
        return True

    def superpixel_cache(self, i: int) -> str | None:
        return None

    @property
    def images(self) -> Sequence[np.ndarray]:
        return _View(self, self.image)

    @property
    def labels(self) -> Sequence[np.ndarray]:
        return _View(self, self.label)


class _View(Sequence):
    """`pool.images[i]` / `pool.labels[i]`, read when indexed."""

    def __init__(self, pool: Pool, read) -> None:
        self.pool, self.read = pool, read

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.read(j) for j in range(*i.indices(len(self)))]
        return self.read(i)


class ArrayPool(Pool):
    """Arrays in memory. The lists are referenced, not copied: a caller may update labels in place."""

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
        self._images, self._labels = images, labels

    def __len__(self) -> int:
        return len(self._images)

    def image(self, i: int) -> np.ndarray:
        return self._images[i]

    def label(self, i: int) -> np.ndarray:
        return self._labels[i]

    def size(self, i: int) -> tuple[int, int]:
        return tuple(self._images[i].shape[:2])  # type: ignore[return-value]


class FilePool(Pool):
    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, i: int) -> str:
        return self.samples[i].title

    def image(self, i: int) -> np.ndarray:
        with PILImage.open(self.samples[i].image) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)

    def label(self, i: int) -> np.ndarray:
        s = self.samples[i]
        if s.label is None:
            return np.full(self.size(i), IGNORE, np.uint8)
        with PILImage.open(s.label) as img:
            return np.asarray(img, dtype=np.uint8)

    def size(self, i: int) -> tuple[int, int]:
        with PILImage.open(self.samples[i].image) as img:  # reads the header only
            return img.height, img.width

    def window(self, i: int, size: tuple[int, int], rows: slice,
               cols: slice) -> tuple[np.ndarray, np.ndarray]:
        s = self.samples[i]
        if s.cache is None:
            return super().window(i, size, rows, cols)
        image = decoded.read_rows(s.cache, s.image, "rgb", (*size, 3), rows,
                                  lambda: resize_image(self.image(i), size))
        if s.label is None:
            label = np.full((rows.stop - rows.start, size[1]), IGNORE, np.uint8)
        else:
            label = decoded.read_rows(s.cache, s.label, "label", size, rows,
                                      lambda: resize_label(self.label(i), size))
        return image[:, cols], label[:, cols]

    def cache_entries(self) -> list[tuple[str, str]]:
        """(file, kind) of every decoded copy this pool's samples may have: what `decoded.prune` keeps."""
        entries = []
        for s in self.samples:
            if s.cache is not None:
                entries += [(s.image, "rgb")] + ([(s.label, "label")] if s.label is not None else [])
        return entries

    def has_label(self, i: int) -> bool:
        return self.samples[i].label is not None

    def superpixel_cache(self, i: int) -> str | None:
        return self.samples[i].superpixels


@dataclass
class LabelStats:
    """One pass over a pool's labels: what the cycle needs to know before training."""

    labeled: np.ndarray  # [N] labeled pixels per image
    pixels: np.ndarray  # [N] pixels per image
    class_counts: np.ndarray  # [K] labeled pixels per class


def check_pool(pool: Pool, num_classes: int, what: str) -> LabelStats:
    """Read every image's header and every label once (one at a time); raise ValueError naming the first
    image that is missing, unreadable, or whose label does not fit. Returns the label statistics."""
    if isinstance(pool, ArrayPool) and len(pool._images) != len(pool._labels):
        raise ValueError(f"{what}: {len(pool._images)} images but {len(pool._labels)} label masks")
    n = len(pool)
    labeled, pixels = np.zeros(n, np.int64), np.zeros(n, np.int64)
    counts = np.zeros(num_classes, np.int64)
    for i in range(n):
        try:
            h, w = pool.size(i)
            lab = pool.label(i) if pool.has_label(i) else None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{what} {pool.name(i)}: cannot be read ({exc})") from exc
        if isinstance(pool, ArrayPool):
            im = pool.image(i)
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"{what} image {i}: expected HxWx3 uint8, got {im.shape} {im.dtype}")
        pixels[i] = h * w
        where = f"{what} mask {i}" + ("" if isinstance(pool, ArrayPool) else f" ({pool.name(i)})")
        if lab is None:
            continue
        if lab.shape != (h, w) or lab.dtype != np.uint8:
            raise ValueError(f"{where}: expected {(h, w)} uint8, "
                             f"got {lab.shape} {lab.dtype}")
        hist = np.bincount(lab.reshape(-1), minlength=256)
        bad = np.flatnonzero(hist[num_classes:IGNORE])
        if bad.size:
            raise ValueError(f"{where}: values {(bad + num_classes).tolist()[:10]} "
                             f"are neither a class id (0..{num_classes - 1}) nor {IGNORE}")
        counts += hist[:num_classes]
        labeled[i] = hist[:num_classes].sum()
    return LabelStats(labeled, pixels, counts)
