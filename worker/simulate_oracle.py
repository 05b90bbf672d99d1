"""The oracle annotator of `s4al simulate` and what its work costs (see worker/annotation_cost.py).

Torch-free: labels, ground truth and pre-labels are numpy arrays; regions are the engine's
`SelectedRegion`s (x, y, w, h and, for superpixels, a mask inside the box).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.masks import IGNORE
from worker.annotation_cost import Cost, dominant_class, region_clicks, region_cost

ANNOTATIONS = ("exact", "dominant")


def reveal(labels: list[np.ndarray], truth: Sequence[np.ndarray], regions, annotation: str = "exact") -> Cost:
    """Label the selected regions in place and return what it cost.

    `exact`: the ground truth of the region's pixels; `dominant` (superpixels): the region's majority
    class on all its pixels, one click. A region's `prelabel` is what the annotator saw in its box (None,
    or 255 pixels: no model yet, every pixel is painted).
    """
    total = Cost()
    for r in regions:
        box = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
        mask = np.ones((r.h, r.w), bool) if r.mask is None else r.mask
        gt = truth[r.image_index][box]
        before = labels[r.image_index][box].copy()
        given = gt.copy()
        if annotation == "dominant":
            given[:] = dominant_class(gt, mask)
        shown = getattr(r, "prelabel", None)
        total += region_cost(given, before, shown, gt, mask, dominant=annotation == "dominant")
        labels[r.image_index][box][mask] = given[mask]
    return total


def pool_clicks(truth: Sequence[np.ndarray], images: Sequence[np.ndarray], kind: str, size: int,
                annotation: str = "exact") -> int:
    """Clicks to label every pixel of the pool region by region (the 100% of the clicks currency)."""
    from worker.engine.regions import grid_box, grid_shape, region_boxes, region_mask, slic_regions

    clicks = 0
    for image, gt in zip(images, truth, strict=True):
        h, w = gt.shape
        if kind == "grid":
            rows, cols = grid_shape(h, w, size)
            for index in range(rows * cols):
                x, y, bw, bh = grid_box(index, h, w, size)
                clicks += region_clicks(gt[y:y + bh, x:x + bw])
            continue
        label_map = slic_regions(image, size)
        boxes = region_boxes(label_map)
        if annotation == "dominant":
            clicks += len(boxes)
            continue
        for rid, (x, y, bw, bh) in enumerate(boxes.tolist()):
            clicks += region_clicks(gt[y:y + bh, x:x + bw], region_mask(label_map, rid, (x, y, bw, bh)))
    return clicks


def labeled_fraction(labels: Sequence[np.ndarray]) -> float:
    return sum(int((lab != IGNORE).sum()) for lab in labels) / sum(lab.size for lab in labels)
