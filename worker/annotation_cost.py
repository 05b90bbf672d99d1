"""What labeling a region costs an annotator, in three currencies (numpy + scipy.ndimage, no torch).

- labeled pixels: the region's pixels that were unlabeled before;
- corrected pixels: those of them where the pre-label shown (the current model's prediction; 255 when
  there is no model yet, so a cold-start region counts all its pixels) differs from the label given;
- clicks, after Cai et al. (CVPR 2021, "Revisiting superpixels for active learning in semantic
  segmentation with realistic annotation costs"): drawing the ground truth inside a region costs one
  click per connected ground-truth component inside it plus one per point where a ground-truth boundary
  crosses the region's border; a superpixel labeled with its dominant class costs one click.

The border of a region is its pixels with a neighbour (8-connectivity) outside it or outside the image:
for a rectangle, the ring of its outermost pixels. Walking a border loop, a crossing is each change of
class between consecutive runs of one class; a loop of k > 1 runs has k crossings, a loop of one class 0.
Runs and loops are 4-connected pieces of the border (the 8-neighbour border of a region is 4-connected).
For a rectangle this is exactly a walk around its ring; for a superpixel it is an approximation: a
one-pixel spur of the border is not walked through, so a class met only on the spur adds one run (one
crossing) where a walk would count two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# dominant_class lives with the mask conventions: the service's oracle and page submissions use it too.
from service.masks import IGNORE, dominant_class  # noqa: F401  (re-exported for simulate)

_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = ndimage.generate_binary_structure(2, 2)


@dataclass
class Cost:
    """Cost of a set of regions; adds up."""

    pixels: int = 0
    corrected: int = 0
    clicks: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.pixels + other.pixels, self.corrected + other.corrected, self.clicks + other.clicks)

    def as_dict(self) -> dict:
        return {"pixels": self.pixels, "corrected": self.corrected, "clicks": self.clicks}


def components_inside(truth: np.ndarray, mask: np.ndarray) -> int:
    """Connected (4-connected) components of each ground-truth class inside `mask`, summed."""
    total = 0
    for c in np.unique(truth[mask]):
        _, n = ndimage.label(mask & (truth == c), structure=_FOUR)
        total += n
    return total


def border(mask: np.ndarray) -> np.ndarray:
    """The region's pixels with an 8-neighbour outside it (the image edge counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, structure=_EIGHT, border_value=0)


def border_crossings(truth: np.ndarray, mask: np.ndarray) -> int:
    """Points where ground-truth boundaries cross the border of `mask`."""
    ring = border(mask)
    loops, n_loops = ndimage.label(ring, structure=_FOUR)
    runs_per_loop = np.zeros(n_loops + 1, np.int64)
    for c in np.unique(truth[ring]):
        runs, n = ndimage.label(ring & (truth == c), structure=_FOUR)
        if n:
            # every run lies in one loop: read the loop id at one pixel of each run
            first = ndimage.minimum_position(runs, runs, np.arange(1, n + 1))
            np.add.at(runs_per_loop, [loops[p] for p in first], 1)
    runs_per_loop = runs_per_loop[1:]
    return int(runs_per_loop[runs_per_loop > 1].sum())


def region_clicks(truth: np.ndarray, mask: np.ndarray | None = None, *, dominant: bool = False) -> int:
    """Clicks to label a region: `truth` is the ground truth inside the region's box, `mask` the region's
    pixels in that box (None: the whole box, a rectangle). `dominant`: one click (a class for the whole
    superpixel)."""
    if dominant:
        return 1
    mask = np.ones(truth.shape, bool) if mask is None else mask.astype(bool)
    if not mask.any():
        return 0
    return components_inside(truth, mask) + border_crossings(truth, mask)


def region_cost(given: np.ndarray, before: np.ndarray, prelabel: np.ndarray | None, truth: np.ndarray,
                mask: np.ndarray | None = None, *, dominant: bool = False) -> Cost:
    """Cost of labeling one region, all arrays cut to its box: `given` the labels the annotator gives,
    `before` the labels the pixels had (255 = unlabeled), `prelabel` the prediction shown (None: none)."""
    mask = np.ones(truth.shape, bool) if mask is None else mask.astype(bool)
    new = mask & (before == IGNORE)
    shown = np.full(truth.shape, IGNORE, np.uint8) if prelabel is None else prelabel
    return Cost(pixels=int(new.sum()), corrected=int((new & (shown != given)).sum()),
                clicks=region_clicks(truth, mask, dominant=dominant))
