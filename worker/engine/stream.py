"""Scoring and evaluating a `Pool` as a stream: memory O(batch) + O(selected regions), never O(pool).

Images are decoded (and superpixels loaded from their cache, or computed and cached) by a `DataLoader`
in worker processes, in pool order; consecutive images of one size form a batch of at most
`batch_size` images and `max_pixels` pixels. Per batch the teacher's per-region numbers come back
(worker/engine/acquisition.py `_score_batch`) and a `Selector` keeps only the regions that can still be
selected: the top `per_image` of each image, then a bounded heap for a global budget (B regions, or
enough regions to cover a pixel share or a number of predicted clicks). A click budget of C keeps at
most C + 1 regions plus the last region's clicks, since every region spends at least one click (see
worker/engine/selection.py). The pre-label of a kept region (the teacher's argmax inside it)
is cut while its image's prediction is at hand, so no full-size prediction outlives its batch.
The selection is the one `selection.select_regions` makes on the whole pool (same order, same ties).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from worker.engine.acquisition import _score_batch, forward_at
from worker.engine.loader import usable_workers
from worker.engine.metrics import ConfusionMeter
from worker.engine.pool import IGNORE, Pool
from worker.engine.predicted_cost import check_cost, cost_aware_scores
from worker.engine.regions import (
    SelectedRegion,
    grid_box,
    grid_cell_counts,
    region_boxes,
    region_mask,
    slic_regions,
)
from worker.engine.resample import base_factor
from worker.engine.selection import budget_clicks_of, check_budget


def cached_superpixels(image: np.ndarray, size: int, cache: str | None) -> np.ndarray:
    """SLIC of `image`, read from `cache` when it holds a map of this image's size, else computed and
    written there (atomically: a half-written cache is never read)."""
    if cache is not None and os.path.exists(cache):
        m = np.load(cache)
        if m.shape == image.shape[:2]:
            return m.astype(np.int32)
    m = slic_regions(image, size)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp.npy"
        np.save(tmp, m.astype(np.uint16 if m.max() < 65535 else np.int32))
        os.replace(tmp, cache)
    return m


class PoolItems(Dataset):
    """`items[i]` -> (i, image HxWx3 uint8, label HxW uint8 or None, superpixel map or None)."""

    def __init__(self, pool: Pool, superpixel_size: int | None = None, with_labels: bool = True) -> None:
        self.pool, self.superpixel_size, self.with_labels = pool, superpixel_size, with_labels

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, i: int):
        image = self.pool.image(i)
        label = self.pool.label(i) if self.with_labels and self.pool.has_label(i) else None
        sp = None
        if self.superpixel_size is not None:
            sp = cached_superpixels(image, self.superpixel_size, self.pool.superpixel_cache(i))
        return i, image, label, sp


def _as_is(item):
    """The loader's collate: items stay as they are (a module function: spawned workers pickle it)."""
    return item


def pool_batches(pool: Pool, *, batch_size: int, max_pixels: int, workers: int = 0,
                 superpixel_size: int | None = None, with_labels: bool = True) -> Iterator[list]:
    """Lists of consecutive same-size items (see `PoolItems`), in pool order."""
    workers = usable_workers(workers)
    extra = {"prefetch_factor": 2} if workers > 0 else {}
    loader = DataLoader(PoolItems(pool, superpixel_size, with_labels), batch_size=None, shuffle=False,
                        num_workers=min(workers, len(pool)), collate_fn=_as_is, **extra)
    batch: list = []
    for item in loader:
        h, w = item[1].shape[:2]
        limit = max(1, min(batch_size, max_pixels // max(1, h * w)))
        if batch and (len(batch) >= limit or batch[0][1].shape != item[1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


class Selector:
    """The regions a budget can still select, kept while the pool streams by (see module doc).

    A pixel or click budget is a target that the kept regions' spending (unlabeled pixels, or predicted
    clicks) must cover: the worst kept region is dropped while the others still cover it.
    """

    def __init__(self, *, budget_regions: int | None, budget_fraction: float | None, per_image: int | None,
                 total_pixels: int, budget_clicks: float | None = None) -> None:
        self.budget_regions, self.per_image = budget_regions, per_image
        self.target = budget_clicks if budget_fraction is None else budget_fraction * total_pixels
        self.in_clicks = budget_clicks is not None
        self.heap: list = []  # (score, -image, -region, spent, region): the worst on top
        self.covered = 0.0

    def _full(self) -> bool:
        if self.budget_regions is not None:
            return len(self.heap) > self.budget_regions
        if self.target is not None:
            return bool(self.heap) and self.covered - self.heap[0][3] >= self.target
        return False

    def offer(self, image: int, scores: np.ndarray, unlabeled: np.ndarray,
              region: Callable[[int, float], SelectedRegion], clicks: np.ndarray | None = None) -> None:
        """One image's regions; `clicks`: what each spends of a click budget (`budget_clicks_of`)."""
        eligible = np.flatnonzero(unlabeled > 0)
        s = scores[eligible]
        spend = clicks if self.in_clicks else unlabeled
        order = np.lexsort((eligible, -s.astype(np.float64)))  # best first; ties by region id
        if self.per_image is not None:
            order = order[:self.per_image]
        if self.budget_regions is not None:
            order = order[:self.budget_regions]
        for j in order.tolist():
            rid, score = int(eligible[j]), float(s[j])
            key = (score, -image, -rid)
            if self.heap and self._full_without_new() and key < self.heap[0][:3]:
                break  # this one and every later (worse) one of the image would be dropped
            heapq.heappush(self.heap, (*key, spend[rid].item(), region(rid, score)))
            self.covered += spend[rid].item()
            while self._full():
                self.covered -= heapq.heappop(self.heap)[3]

    def _full_without_new(self) -> bool:
        if self.budget_regions is not None:
            return len(self.heap) >= self.budget_regions
        if self.target is not None:
            return self.covered >= self.target
        return False

    def selected(self) -> list[SelectedRegion]:
        ranked = sorted(self.heap, key=lambda e: (-e[0], -e[1], -e[2]))
        if self.target is not None:
            out, before = [], 0.0
            for e in ranked:
                if before >= self.target:
                    break
                out.append(e[4])
                before += e[3]
            return out
        return [e[4] for e in ranked]


def prelabel(pred: np.ndarray | None, x: int, y: int, w: int, h: int,
             mask: np.ndarray | None) -> np.ndarray | None:
    """The teacher's argmax inside a region (255 outside a superpixel's own pixels); None when empty."""
    if pred is None:
        return None
    crop = pred[y:y + h, x:x + w].copy()
    if mask is not None:
        crop[~mask] = IGNORE
    return None if (crop == IGNORE).all() else crop


def score_and_select(model: torch.nn.Module | None, pool: Pool, *, metric: str, region_kind: str,
                     region_size: int, budget_regions: int | None, budget_fraction: float | None,
                     per_image: int | None, total_pixels: int, class_weights: np.ndarray | None = None,
                     seed: int = 0, device: torch.device, amp: bool = False, base_size: int | None = None,
                     batch_size: int = 8, max_pixels: int = 1 << 23, workers: int = 0, cost: str = "none",
                     cost_rule: str = "ratio", dominant: bool = False, budget_unit: str = "regions",
                     budget_clicks: float | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[SelectedRegion]:
    """Selected regions, best first, each with its `prelabel` (None without a model) and, with a click
    budget, its `predicted_clicks`. `cost`, `cost_rule`, `dominant`: cost-aware ranking as in
    `acquisition.score_pool` (a model-less cold start is not costed); `budget_unit`, `budget_clicks`:
    as in `selection.select_regions`."""
    check_cost(cost, cost_rule)
    check_budget(budget_regions, budget_fraction, per_image, budget_unit, budget_clicks)
    costed = model is not None and cost != "none"
    clicked = model is not None and budget_unit == "clicks"
    selector = Selector(budget_regions=budget_regions, budget_fraction=budget_fraction, per_image=per_image,
                        total_pixels=total_pixels, budget_clicks=budget_clicks)
    weights = None if class_weights is None or model is None else torch.as_tensor(
        np.asarray(class_weights), dtype=torch.float32, device=device)
    rng = torch.Generator().manual_seed(seed)
    superpixels = region_size if region_kind == "superpixel" else None
    buffers: dict = {}
    done = 0
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        with torch.inference_mode():
            for batch in pool_batches(pool, batch_size=batch_size, max_pixels=max_pixels, workers=workers,
                                      superpixel_size=superpixels):
                index, images, labels, maps = (list(t) for t in zip(*batch, strict=True))
                h, w = images[0].shape[:2]
                out, pred, _, counts = _score_batch(
                    model, images, labels, metric=metric, region_kind=region_kind, region_size=region_size,
                    weights=weights, device=device, want_pred=model is not None, amp=amp, buffers=buffers,
                    maps=maps if superpixels else None, factor=base_factor(h, w, base_size), cost=cost,
                    dominant=dominant, count_clicks=clicked)
                out = out.cpu().numpy()
                pred = None if pred is None else pred.cpu().numpy()
                offset = 0
                for b, (i, n) in enumerate(zip(index, counts, strict=True)):
                    cut = slice(offset, offset + n)
                    offset += n
                    unc, unl, bal = out[0][cut], out[1][cut].astype(np.int32), out[2][cut]
                    pixels = grid_cell_counts(h, w, region_size).reshape(-1) if maps[b] is None \
                        else np.bincount(maps[b].reshape(-1))
                    if metric == "random":  # per-region draws, as `score_pool` makes them
                        unc = (torch.rand(n, generator=rng).numpy() * unl / pixels).astype(np.float32)
                    predicted = out[3][cut] if costed else None
                    score = cost_aware_scores(unc, bal, pixels, unl, predicted, cost_rule)
                    clicks = out[4][cut] if clicked else None
                    selector.offer(i, score, unl, _region_maker(i, h, w, region_size, maps[b],
                                                                None if pred is None else pred[b], n, clicks),
                                   budget_clicks_of(clicks, n))
                done += len(batch)
                if progress is not None:
                    progress(done, len(pool))
    finally:
        if model is not None:
            model.train(was_training)
    return selector.selected()


def _region_maker(i: int, h: int, w: int, size: int, label_map: np.ndarray | None, pred: np.ndarray | None,
                  n: int, clicks: np.ndarray | None) -> Callable[[int, float], SelectedRegion]:
    boxes = None if label_map is None else region_boxes(label_map, n)

    def make(rid: int, score: float) -> SelectedRegion:
        predicted = None if clicks is None else float(clicks[rid])
        if label_map is None:
            x, y, bw, bh = grid_box(rid, h, w, size)
            return SelectedRegion(i, x, y, bw, bh, -1, score, None, prelabel(pred, x, y, bw, bh, None),
                                  predicted)
        x, y, bw, bh = (int(v) for v in boxes[rid])
        mask = region_mask(label_map, rid, (x, y, bw, bh))
        return SelectedRegion(i, x, y, bw, bh, rid, score, mask, prelabel(pred, x, y, bw, bh, mask),
                              predicted)
    return make


@torch.inference_mode()
def evaluate_pool(model: torch.nn.Module, pool: Pool, num_classes: int, *, device: torch.device,
                  amp: bool = False, base_size: int | None = None, batch_size: int = 32,
                  max_pixels: int = 1 << 23, workers: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Confusion matrix (rows = target) of `model`'s argmax against the pool's labels, at full size."""
    meter = ConfusionMeter(num_classes)
    was_training = model.training
    model.eval()
    done = 0
    try:
        for batch in pool_batches(pool, batch_size=batch_size, max_pixels=max_pixels, workers=workers):
            _, images, labels, _ = zip(*batch, strict=True)
            h, w = images[0].shape[:2]
            x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            pred = forward_at(model, x, amp, base_factor(h, w, base_size)).argmax(1)
            y = np.stack([np.full((h, w), IGNORE, np.uint8) if lab is None else lab for lab in labels])
            meter.update(pred, torch.from_numpy(y).to(device))
            done += len(batch)
            if progress is not None:
                progress(done, len(pool))
    finally:
        model.train(was_training)
    return meter.cm
