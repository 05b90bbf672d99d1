"""Acquisition: per-pixel uncertainty -> per-region scores over the whole pool -> selected regions.

`score_pool` streams the pool through the teacher in batches; per batch everything up to the
per-region numbers (softmax, uncertainty, masking of labeled pixels, pooling, class balance) runs on the
model's device and only a few floats per region (plus, when asked, the uint8 argmax) come back to the
host. Memory therefore grows with the number of regions, never with pixels times images.

`acquire` scores and selects in one call. The per-pixel metrics live in worker/engine/uncertainty.py,
the predicted annotation cost of cost-aware ranking in worker/engine/predicted_cost.py, the selection
rules in worker/engine/selection.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from service.masks import IGNORE
from worker.engine.predicted_cost import check_cost, cost_aware_scores, expected_errors, predicted_clicks
from worker.engine.regions import (
    SelectedRegion,
    check_region_kind,
    grid_cell_counts,
    grid_regions,
    grid_shape,
    region_boxes,
    region_sums,
    slic_regions,
    stack_label_maps,
)
from worker.engine.selection import ImageRegions, PoolScores, check_budget, select_regions
from worker.engine.uncertainty import (
    METRICS,
    channel_argmax,
    check_metric,
    pixel_uncertainty,
    uncertainty_from_logits,
)

__all__ = ["METRICS", "ImageRegions", "PoolScores", "SelectedRegion", "acquire", "channel_argmax",
           "check_metric", "class_balance_weights", "grid_scores", "grid_sums", "labeled_class_counts",
           "pixel_uncertainty", "score_pool", "select_regions", "uncertainty_from_logits"]

def grid_sums(values: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of `[B,H,W]` values over each `size` cell -> `[B, ceil(H/size), ceil(W/size)]` (zero-padded)."""
    b, h, w = values.shape
    rows, cols = grid_shape(h, w, size)
    padded = F.pad(values, (0, cols * size - w, 0, rows * size - h))
    return padded.reshape(b, rows, size, cols, size).sum((2, 4))


def grid_scores(uncertainty: torch.Tensor, size: int, labeled: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `[B,H,W]` uncertainty over each grid cell's own pixels; labeled pixels count as 0.

    Edge cells are smaller and divided by their own pixel count, so they are not penalised.
    """
    u = uncertainty.float()
    if labeled is not None:
        u = u.masked_fill(labeled.to(u.device).bool(), 0.0)
    counts = torch.from_numpy(grid_cell_counts(u.shape[1], u.shape[2], size)).to(u.device, u.dtype)
    return grid_sums(u, size) / counts


def labeled_class_counts(labels: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Labeled pixels per class over the pool (255 ignored)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for lab in labels:
        counts += np.bincount(np.asarray(lab).reshape(-1), minlength=256)[:num_classes]
    return counts


def class_balance_weights(class_counts: np.ndarray) -> np.ndarray:
    """Per-class weight for class-balanced acquisition: `w_c = sqrt((1/K) / f_c)`.

    `f_c = (n_c + 1) / (N + K)` is the add-one-smoothed share of labeled pixels of class c (N labeled
    pixels, K classes). A class at the uniform share 1/K weighs 1, rarer classes more, common ones less;
    the square root keeps an unseen class (n_c = 0) from swamping the uncertainty term. A region's
    ranking score is its mean uncertainty times the mean of `w[predicted class]` over its unlabeled
    pixels (see `score_pool`).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    k = counts.size
    freq = (counts + 1.0) / (counts.sum() + k)
    return np.sqrt((1.0 / k) / freq)


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU has it, else fp16."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16


def forward_at(model: torch.nn.Module, x: torch.Tensor, amp: bool, factor: float = 1.0) -> torch.Tensor:
    """Logits `[B,K,H,W]` at `x`'s size, the model run on `x` resized by `factor` (< 1: the base size)."""
    size = x.shape[-2:]
    if factor < 1.0:
        scaled = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
        x = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False, antialias=True)
    out = _forward(model, x, amp)
    if out.shape[-2:] != size:
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    return out


def _forward(model: torch.nn.Module, x: torch.Tensor, amp: bool) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype(x.device), enabled=amp and x.is_cuda):
        out = model(x)
    if isinstance(out, dict):  # torchvision-style segmentation models
        out = out["out"]
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out.float()


def _score_batch(model, images: list[np.ndarray], labels: list[np.ndarray | None], *, metric: str,
                 region_kind: str, region_size: int, weights: torch.Tensor | None, device: torch.device,
                 want_pred: bool, amp: bool, buffers: dict | None = None, maps: list | None = None,
                 factor: float = 1.0, cost: str = "none", dominant: bool = False, count_clicks: bool = False,
                 ) -> tuple[torch.Tensor, torch.Tensor | None, list, list]:
    """One batch of equal-size images -> (device `[5, R]` rows uncertainty/unlabeled/balance/predicted
    cost of the ranking/predicted clicks (0 without a cost, without `count_clicks` or without a model),
    argmax, ...)."""
    b = len(images)
    h, w = images[0].shape[:2]
    lab = np.stack([np.full((h, w), IGNORE, np.uint8) if y is None else y for y in labels])
    unlabeled = torch.from_numpy(lab).to(device, non_blocking=True) == IGNORE
    unl = unlabeled.float()
    pred = u = errors = None
    costed = model is not None and cost != "none"
    clicked = model is not None and (cost == "clicks" or count_clicks)  # the clicks are predicted
    if model is not None and (metric != "random" or want_pred or weights is not None or costed or clicked):
        x = torch.from_numpy(np.stack(images)).to(device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        logits = forward_at(model, x, amp, factor)
        peak = None
        if metric != "random":
            u, peak = uncertainty_from_logits(logits, metric, buffers)
            u = u.mul_(unl)
        if cost == "corrected":
            errors = expected_errors(logits, peak).mul_(unl)
        if want_pred or weights is not None or clicked:
            pred = channel_argmax(logits, peak if logits.is_contiguous() else None)
    u = torch.zeros_like(unl) if u is None else u
    # Summed per region: uncertainty, unlabeled pixels, then what is there of class weight and errors.
    planes = [u, unl]
    balanced = weights is not None and pred is not None
    if balanced:
        planes.append(weights[pred.long()] * unl)
    if errors is not None:
        planes.append(errors)
    counts = []
    if region_kind == "grid":
        maps = []
        p = len(planes)
        stacked = grid_sums(torch.stack(planes, 1).reshape(b * p, h, w), region_size)
        stacked = stacked.reshape(b, p, -1).permute(1, 0, 2).reshape(p, -1)
        counts = [stacked.shape[1] // b] * b
        pixels = torch.from_numpy(grid_cell_counts(h, w, region_size).reshape(-1)).to(device).repeat(b)
        ids = _grid_ids(b, h, w, region_size) if clicked else None
    else:
        maps = maps if maps is not None else [slic_regions(im, region_size) for im in images]
        ids, counts = stack_label_maps(maps)
        ids_t = torch.from_numpy(ids).to(device).long()
        n = sum(counts)
        stacked = torch.stack([region_sums(v, ids_t, n) for v in planes])
        pixels = region_sums(torch.ones_like(unl), ids_t, n)
    # Rows: mean uncertainty over all pixels, unlabeled count, balance factor over unlabeled pixels,
    # predicted cost of the ranking, predicted clicks.
    balance = stacked[2] / stacked[1].clamp(min=1) if balanced else torch.ones_like(stacked[1])
    clicks = torch.zeros_like(stacked[1])
    if clicked:
        counted = predicted_clicks(pred.cpu().numpy(), ids, stacked.shape[1], dominant=dominant)
        clicks = torch.from_numpy(counted).to(device, stacked.dtype)
    predicted = torch.zeros_like(clicks)  # the ranking's cost: corrected pixels or clicks
    if errors is not None:
        predicted = stacked[-1]
    elif cost == "clicks":
        predicted = clicks
    out = torch.stack([stacked[0] / pixels, stacked[1], balance, predicted, clicks])
    return out, (pred if want_pred else None), maps, counts


def _grid_ids(b: int, h: int, w: int, size: int) -> np.ndarray:
    """Grid cell ids of a batch `[B,H,W]`, each image's offset by the cells before it (row-major)."""
    cells = grid_regions(h, w, size)
    return cells[None] + (np.arange(b) * (int(cells.max()) + 1))[:, None, None]


def score_pool(model: torch.nn.Module | None, images: Iterable[np.ndarray], *,
               labels: Iterable[np.ndarray | None] | None = None, metric: str = "entropy",
               region_kind: str = "grid", region_size: int = 32, class_weights: np.ndarray | None = None,
               batch_size: int = 8, device: str | torch.device = "cpu", return_predictions: bool = False,
               seed: int = 0, amp: bool = False, cost: str = "none", cost_rule: str = "ratio",
               dominant: bool = False, count_clicks: bool = False,
               progress: Callable[[int, int], None] | None = None) -> PoolScores:
    """Score every region of every pool image with `model` (the teacher) in eval + inference mode.

    `images`: HxWx3 uint8 arrays (any iterable; sizes may differ: consecutive equal-size images are
    batched together). `labels`: matching HxW uint8 (255 = unlabeled) or None for all-unlabeled.
    The model takes `[B,3,H,W]` floats in [0, 1] and returns logits `[B,K,H,W]`.
    `class_weights` `[K]` (see `class_balance_weights`) turns on class-balanced ranking.
    `model=None` is allowed for `metric="random"` (cold start): no forward pass, no predictions.
    Random scores are drawn per region (uniform, `seed`) and multiplied by the region's unlabeled
    share: averaging per-pixel noise would favour small edge cells, whose means vary more.
    `cost` (`clicks` | `corrected`; needs a model) weighs each region's score by its predicted annotation
    cost with `cost_rule` (worker/engine/predicted_cost.py); `dominant`: a region costs one click.
    `count_clicks`: predict every region's clicks (`ImageRegions.predicted_clicks`) for a click budget.
    """
    check_metric(metric)
    check_region_kind(region_kind, region_size)
    check_cost(cost, cost_rule)
    if model is None and metric != "random":
        raise ValueError(f"metric {metric!r} needs a model")
    device = torch.device(device)
    total = len(images) if isinstance(images, Sequence) else 0
    weights = None if class_weights is None else torch.as_tensor(
        np.asarray(class_weights), dtype=torch.float32, device=device)
    rng = torch.Generator().manual_seed(seed)
    costed = model is not None and cost != "none"  # a model-less cold start has nothing to predict from
    clicked = model is not None and count_clicks
    regions: list[ImageRegions] = []
    predictions: list[np.ndarray] | None = [] if return_predictions else None
    buffers: dict = {}  # work buffers reused across batches
    pending: list = []  # the previous batch, read back after the next one is queued (keeps a GPU busy)
    start = time.perf_counter()

    def finish() -> None:
        if not pending:
            return
        out, pred, maps, counts, sizes = pending.pop()
        out = out.cpu().numpy()
        pred = None if pred is None else pred.cpu().numpy()
        # Per-image arrays are views into the batch's rows: no copies, same memory as copies would take.
        unc_all, unl_all, bal_all = out[0], out[1].astype(np.int32), out[2]
        offset = 0
        for i, ((h, w), n) in enumerate(zip(sizes, counts, strict=True)):
            cut = slice(offset, offset + n)
            offset += n
            unc, unl = unc_all[cut], unl_all[cut]
            pixels = _pixels(maps, i, h, w, region_kind, region_size)
            if metric == "random":
                unc = (torch.rand(n, generator=rng).numpy() * unl / pixels).astype(np.float32)
            score = cost_aware_scores(unc, bal_all[cut], pixels, unl, out[3][cut] if costed else None,
                                      cost_rule)
            regions.append(ImageRegions(h, w, score, unc, unl, region_boxes(maps[i], n) if maps else None,
                                        out[3][cut] if costed else None, out[4][cut] if clicked else None))
            if predictions is not None:
                predictions.append(pred[i] if pred is not None else np.full((h, w), IGNORE, np.uint8))
        if progress is not None:
            progress(len(regions), total)

    def flush(batch_images: list, batch_labels: list) -> None:
        out, pred, maps, counts = _score_batch(
            model, batch_images, batch_labels, metric=metric, region_kind=region_kind,
            region_size=region_size, weights=weights, device=device, want_pred=return_predictions, amp=amp,
            buffers=buffers, cost=cost, dominant=dominant, count_clicks=clicked)
        finish()
        pending.append((out, pred, maps, counts, [im.shape[:2] for im in batch_images]))

    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        with torch.inference_mode():
            batch_images: list[np.ndarray] = []
            batch_labels: list[np.ndarray | None] = []
            label_iter = iter(labels) if labels is not None else None
            for image in images:
                image = _check_image(image)
                label = _check_label(_next_label(label_iter), image)
                full = len(batch_images) == batch_size
                if batch_images and (full or image.shape != batch_images[0].shape):
                    flush(batch_images, batch_labels)
                    batch_images, batch_labels = [], []
                batch_images.append(image)
                batch_labels.append(label)
            if batch_images:
                flush(batch_images, batch_labels)
            finish()
    finally:
        if model is not None:
            model.train(was_training)
    return PoolScores(region_kind, region_size, metric, regions, predictions, time.perf_counter() - start)


def acquire(model: torch.nn.Module | None, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
            num_classes: int, metric: str = "entropy", region_kind: str = "grid", region_size: int = 32,
            budget_regions: int | None = None, budget_fraction: float | None = None,
            per_image: int | None = None, class_balance: bool = False, seed: int = 0, batch_size: int = 8,
            device: str | torch.device = "cpu", return_predictions: bool = True, amp: bool = False,
            cost: str = "none", cost_rule: str = "ratio", dominant: bool = False,
            budget_unit: str = "regions", budget_clicks: float | None = None,
            progress: Callable[[int, int], None] | None = None,
            ) -> tuple[list[SelectedRegion], PoolScores]:
    """Score the pool and select the budget: what a cycle needs after training, in one call.
    `budget_unit="clicks"`: the budget is `budget_clicks` predicted clicks (worker/engine/selection.py).

    Arguments are checked before any model work. Class balance uses the labeled pixels of `labels`
    (see `class_balance_weights`) and needs a model (it is ignored for a model-less random cold start).
    Returns the selected regions (best first) and the pool scores (`.predictions` when asked for).
    """
    check_metric(metric)
    check_region_kind(region_kind, region_size)
    check_budget(budget_regions, budget_fraction, per_image, budget_unit, budget_clicks)
    check_cost(cost, cost_rule)
    weights = None
    if class_balance and model is not None:
        weights = class_balance_weights(labeled_class_counts(labels, num_classes))
    pool = score_pool(model, images, labels=labels, metric=metric, region_kind=region_kind,
                      region_size=region_size, class_weights=weights, batch_size=batch_size, device=device,
                      return_predictions=return_predictions, seed=seed, amp=amp, cost=cost,
                      cost_rule=cost_rule, dominant=dominant, count_clicks=budget_unit == "clicks",
                      progress=progress)
    regions = select_regions(pool, budget_regions=budget_regions, budget_fraction=budget_fraction,
                             per_image=per_image, images=images, budget_unit=budget_unit,
                             budget_clicks=budget_clicks)
    return regions, pool


def _pixels(maps: list, i: int, h: int, w: int, kind: str, size: int) -> np.ndarray:
    if kind == "grid":
        return grid_cell_counts(h, w, size).reshape(-1)
    return np.bincount(maps[i].reshape(-1))


def _next_label(label_iter) -> np.ndarray | None:
    if label_iter is None:
        return None
    try:
        return next(label_iter)
    except StopIteration:
        raise ValueError("fewer labels than pool images") from None


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"pool images must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    return image


def _check_label(label: np.ndarray | None, image: np.ndarray) -> np.ndarray | None:
    if label is None:
        return None
    label = np.asarray(label)
    if label.shape != image.shape[:2] or label.dtype != np.uint8:
        raise ValueError(f"label must be HxW uint8 matching its image {image.shape[:2]}, "
                         f"got shape {label.shape} dtype {label.dtype}")
    return label
