"""Region builders (grid cells, SLIC superpixels) and the `SelectedRegion` record acquisition returns.

A region set for an image is a label map `HxW int32` with ids `0..n-1`. Grid ids are row-major
(`row * cols + col`); grid boxes are computed, never stored. Superpixels come from scikit-image's SLIC,
which is deterministic for a given image, so a superpixel's mask can be rebuilt later from the image
instead of keeping every label map of the pool in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

REGION_KINDS = ("grid", "superpixel")


@dataclass
class SelectedRegion:
    image_index: int  # index into the pool (CycleData.train)
    x: int
    y: int
    w: int
    h: int
    superpixel_id: int  # -1 for grid cells
    score: float
    mask: np.ndarray | None  # None for grid; for superpixels an hxw bool array inside the box
    prelabel: np.ndarray | None = None  # the teacher's argmax in the box (255 off the region); None: none
    predicted_clicks: float | None = None  # what the model predicts labeling it costs; None: not predicted


def check_region_kind(kind: str, size: int) -> None:
    if kind not in REGION_KINDS:
        raise ValueError(f"unknown region kind {kind!r}; expected one of {', '.join(REGION_KINDS)}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"region size must be a positive integer (pixels), got {size!r}")


def grid_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(rows, cols) of a grid of `size` px cells; the last row/column may be narrower."""
    return math.ceil(height / size), math.ceil(width / size)


def grid_regions(height: int, width: int, size: int) -> np.ndarray:
    """Label map of grid cells, ids row-major."""
    rows, cols = grid_shape(height, width, size)
    r = np.arange(height) // size
    c = np.arange(width) // size
    return (r[:, None] * cols + c[None, :]).astype(np.int32)


def grid_box(index: int, height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of grid cell `index`; edge cells are clipped to the image."""
    _, cols = grid_shape(height, width, size)
    row, col = divmod(int(index), cols)
    x, y = col * size, row * size
    return x, y, min(size, width - x), min(size, height - y)


def grid_cell_counts(height: int, width: int, size: int) -> np.ndarray:
    """Pixels per grid cell, `[rows, cols]` (edge cells smaller)."""
    rows, cols = grid_shape(height, width, size)
    rh = np.full(rows, size)
    rh[-1] = height - size * (rows - 1)
    cw = np.full(cols, size)
    cw[-1] = width - size * (cols - 1)
    return np.outer(rh, cw)


def slic_regions(image: np.ndarray, size: int, *, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of about `size`x`size` px: label map with ids 0..n-1 (contiguous, connected).

    `image` is HxWx3 uint8 (or HxW). Deterministic: the same image gives the same map.
    """
    from skimage.segmentation import relabel_sequential, slic

    image = np.asarray(image)
    height, width = image.shape[:2]
    n_segments = max(1, math.ceil(height * width / (size * size)))
    labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0,
                  channel_axis=-1 if image.ndim == 3 else None)
    labels, _, _ = relabel_sequential(labels.astype(np.int32))
    return labels.astype(np.int32)


def region_boxes(label_map: np.ndarray, num_regions: int | None = None) -> np.ndarray:
    """Bounding boxes `[n, 4]` int32 as (x, y, w, h) for ids 0..n-1; an absent id gets (0, 0, 0, 0)."""
    from scipy.ndimage import find_objects

    n = int(label_map.max()) + 1 if num_regions is None else num_regions
    boxes = np.zeros((n, 4), dtype=np.int32)
    for i, found in enumerate(find_objects(label_map.astype(np.int32) + 1, max_label=n)):
        if found is not None:
            ys, xs = found
            boxes[i] = (xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
    return boxes


def region_mask(label_map: np.ndarray, region_id: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """The region's pixels inside its box, `hxw` bool."""
    x, y, w, h = box
    return label_map[y:y + h, x:x + w] == region_id


def region_sums(values: torch.Tensor, label_maps: torch.Tensor, num_regions: int) -> torch.Tensor:
    """Sum of `values` `[..., H, W]` per region id for a label map of the same shape -> `[num_regions]`.

    Several images score in one call by offsetting each image's ids (see `stack_label_maps`).
    """
    return torch.zeros(num_regions, dtype=values.dtype, device=values.device).index_add_(
        0, label_maps.reshape(-1), values.reshape(-1))


def stack_label_maps(maps: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Concatenate per-image label maps into one id space; returns the offset maps and region counts."""
    counts = [int(m.max()) + 1 for m in maps]
    offsets = np.cumsum([0] + counts[:-1])
    return np.stack([m + o for m, o in zip(maps, offsets, strict=True)]), counts


def region_scores(uncertainty: torch.Tensor, label_map: torch.Tensor | np.ndarray,
                  labeled: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Mean uncertainty of each region of one image (`[H, W]` inputs); labeled pixels count as 0."""
    label_map = torch.as_tensor(np.asarray(label_map) if isinstance(label_map, np.ndarray) else label_map,
                                device=uncertainty.device).long()
    u = uncertainty.float()
    if labeled is not None:
        u = u.masked_fill(torch.as_tensor(labeled, device=u.device).bool(), 0.0)
    n = int(label_map.max()) + 1
    sums = region_sums(u, label_map, n)
    counts = region_sums(torch.ones_like(u), label_map, n)
    return sums / counts.clamp(min=1)
