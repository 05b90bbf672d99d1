"""Cost-aware acquisition: what labeling a region will cost, predicted from the model's own outputs (never
from the ground truth), and the ranking score that weighs a region's uncertainty against it.

In the spirit of CEREALS (Mackowiak et al., BMVC 2018: uncertainty divided by predicted annotation cost),
with the two annotator currencies that `s4al simulate` measures (worker/annotation_cost.py):
- `clicks`: the click cost of Cai et al. (CVPR 2021) applied to the model's argmax inside the region:
  its connected predicted components (4-connected, per class) plus the points where predicted class
  boundaries cross the region's border; a superpixel labeled by its dominant class costs one click;
- `corrected`: the expected number of pixels whose pre-label is wrong, the sum over the region's
  unlabeled pixels of (1 - max softmax probability).

Rules (`COST_RULES`), applied per image to the regions' mean uncertainty u (labeled pixels count 0):
- `ratio`: u x pixels / max(cost, 1): uncertainty per unit of predicted effort. A cost below one click
  or one pixel is counted as one, so a region predicted to cost nothing does not win by division alone.
- `below_median`: u, for the regions whose predicted cost is at most the median over the image's
  candidate regions; 0 for the others (they come after every cheaper region, in region order).
For `corrected` the ratio favours the most confident regions: with entropy, u / (1 - p_max) grows as
p_max -> 1 (e.g. two classes: 1.4 at p_max 0.5, 3.3 at 0.9, 7.9 at 0.999), so it picks regions
that are cheap because nothing in them is worth labeling; `below_median` keeps the uncertainty order.
Measured with `s4al simulate` on aerial-maps (unet_small, 400 then 200 warm-start steps per cycle, 2%
per cycle, 8 px cells, 2 seeds), the two rules were within seed noise of each other at 6% labeled:
clicks 4600 vs 4472 and 70.4 vs 71.5 mIoU, corrected 63.8 vs 63.4 mIoU (entropy alone: 7954 clicks,
87.9; random: 3292 clicks, 70.0). `ratio`, CEREALS' form, is the default rule; cost-awareness itself
is off by default (`none`): at a budget counted in pixels it saved clicks and corrected pixels by
giving up the accuracy that entropy's regions buy, and never reached random's accuracy for less cost.
At a budget counted in predicted clicks (worker/engine/selection.py) it did worse: the regions it ranks
first are those whose prediction is cheapest, which is where a young model misses the structure, so the
first such cycle cost 4.5x the clicks it predicted.

Components and crossings are counted as worker/annotation_cost.py counts them on the ground truth
(4-connected pieces of one class; the border is the region's pixels with an 8-neighbour outside it),
with one labeling of the whole batch instead of one per region: a region's predicted clicks equal
`annotation_cost.region_clicks` of the prediction cut to the region.
"""

from __future__ import annotations

import numpy as np
import torch

ACQUISITION_COSTS = ("none", "clicks", "corrected")
COST_RULES = ("ratio", "below_median")


def check_cost(cost: str, rule: str) -> None:
    if cost not in ACQUISITION_COSTS:
        raise ValueError(f"unknown acquisition cost {cost!r}; expected one of {', '.join(ACQUISITION_COSTS)}")
    if rule not in COST_RULES:
        raise ValueError(f"unknown acquisition cost rule {rule!r}; expected one of {', '.join(COST_RULES)}")


def expected_errors(logits: torch.Tensor, peak: torch.Tensor | None = None) -> torch.Tensor:
    """`[B,K,H,W]` logits -> `[B,H,W]` probability that the argmax is wrong, 1 - max softmax."""
    lg = logits.float()
    peak = lg.amax(1, keepdim=True) if peak is None else peak
    return 1.0 - 1.0 / torch.exp(lg - peak).sum(1)


def components_per_region(pred: np.ndarray, region_ids: np.ndarray, num_regions: int) -> np.ndarray:
    """Connected components (4-connected, one class each) of `pred` inside each region.

    `pred` `[B,H,W]` class ids < 256; `region_ids` `[B,H,W]` ints, distinct across the batch's images.
    One labeling of the batch: pixels join when their (region, class) key is equal, so no component
    spans two regions (nor two images, whose ids differ).
    """
    _, region_of = _pieces(_key(region_ids, pred), region_ids)
    return np.bincount(region_of, minlength=num_regions)[:num_regions]


def crossings_per_region(pred: np.ndarray, region_ids: np.ndarray, num_regions: int) -> np.ndarray:
    """Points where predicted class boundaries cross each region's border (see the module doc).

    Each border loop (a 4-connected piece of the border) holding k > 1 runs of one class (4-connected
    pieces of the loop) is crossed k times, as in worker/annotation_cost.py.
    """
    border = _border(region_ids)
    loops, region_of_loop = _pieces(np.where(border, region_ids.astype(np.int64) + 1, 0), region_ids)
    runs, _ = _pieces(np.where(border, _key(region_ids, pred), 0), region_ids)
    loop_of_run = np.zeros(int(runs.max()) + 1, np.int64)
    loop_of_run[runs.reshape(-1)] = loops.reshape(-1)
    runs_per_loop = np.bincount(loop_of_run[1:], minlength=region_of_loop.size + 1)[1:]
    crossings = np.where(runs_per_loop > 1, runs_per_loop, 0)
    per_region = np.bincount(region_of_loop, weights=crossings, minlength=num_regions)[:num_regions]
    return per_region.astype(np.int64)


def _key(region_ids: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """One positive int per (region, class): equal keys connect, 0 is left for the background."""
    return region_ids.astype(np.int64) * 256 + pred.astype(np.int64) + 1


def _pieces(key: np.ndarray, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected pieces of equal nonzero `key` -> (piece map, 0 = background; region id of each piece)."""
    from skimage.measure import label

    pieces, n = label(key, background=0, connectivity=1, return_num=True)
    region_of = np.zeros(n + 1, np.int64)
    region_of[pieces.reshape(-1)] = region_ids.reshape(-1)
    return pieces, region_of[1:]


def _border(region_ids: np.ndarray) -> np.ndarray:
    """`[B,H,W]` pixels with an 8-neighbour in another region or outside the image."""
    ids = np.pad(region_ids.astype(np.int64), ((0, 0), (1, 1), (1, 1)), constant_values=-1)
    inner = ids[:, 1:-1, 1:-1]
    h, w = inner.shape[1:]
    border = np.zeros(inner.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                border |= ids[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != inner
    return border


def predicted_clicks(pred: np.ndarray, region_ids: np.ndarray, num_regions: int, *,
                     dominant: bool = False) -> np.ndarray:
    """Cai et al.'s click count of each region applied to the prediction `pred` (float64 `[num_regions]`);
    `dominant`: every region is one click (a superpixel labeled with its dominant class)."""
    if dominant:
        return np.ones(num_regions)
    return (components_per_region(pred, region_ids, num_regions)
            + crossings_per_region(pred, region_ids, num_regions)).astype(np.float64)


def cost_aware_scores(uncertainty: np.ndarray, balance: np.ndarray, pixels: np.ndarray, unlabeled: np.ndarray,
                      cost: np.ndarray | None, rule: str) -> np.ndarray:
    """One image's ranking scores (float32): mean uncertainty x class balance, weighed by `cost`
    (None: not weighed) with `rule` (see the module doc). All arrays `[n_regions]`."""
    base = uncertainty * balance
    if cost is None:
        return base.astype(np.float32)
    if rule == "ratio":
        return (base * pixels / np.maximum(cost, 1.0)).astype(np.float32)
    candidates = unlabeled > 0
    if not candidates.any():
        return base.astype(np.float32)
    cheap = cost <= np.median(cost[candidates])
    return np.where(cheap, base, 0.0).astype(np.float32)
