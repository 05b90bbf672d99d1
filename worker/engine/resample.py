"""An image's training resolution, and the two resamplings every path uses to reach it.

The training resolution is the whole image resized so that its long side is at most `base_size`
(`base_factor`). Images are resized with PIL's bilinear filter (antialiased when shrinking); labels by
nearest neighbour, computed here in integers (`nearest_index`) rather than by PIL: PIL takes a box in
float32 and steps through it, so a window of a label resized alone could pick a different neighbour on
a tie than the same window of the label resized whole. With exact integers, any rows of a resized
label equal those rows of the label resized whole, which lets a crop read only the rows it needs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage


def base_factor(height: int, width: int, base_size: int | None) -> float:
    """The resize that brings the long side down to `base_size` (never up); 1 without a base size."""
    long = max(height, width)
    return 1.0 if base_size is None or long <= base_size else base_size / long


def training_size(height: int, width: int, base_size: int | None) -> tuple[int, int]:
    """(height, width) of the image at its training resolution."""
    f = base_factor(height, width, base_size)
    return max(1, round(height * f)), max(1, round(width * f))


def nearest_index(n_src: int, n_dst: int, start: int, stop: int) -> np.ndarray:
    """For output pixels start..stop-1 of a length n_src -> n_dst resize, the source pixel whose extent
    holds the output pixel's centre: floor((j + 1/2) * n_src / n_dst), in exact integers."""
    j = np.arange(start, stop, dtype=np.int64)
    return (2 * j + 1) * n_src // (2 * n_dst)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> the whole image at `size` (height, width); the same array when it already is."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(PILImage.fromarray(image).resize((size[1], size[0]), PILImage.BILINEAR))


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxW -> the whole label at `size`, by nearest neighbour (`nearest_index`)."""
    h, w = label.shape
    if (h, w) == tuple(size):
        return label
    return label[np.ix_(nearest_index(h, size[0], 0, size[0]), nearest_index(w, size[1], 0, size[1]))]
