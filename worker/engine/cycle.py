"""One active-learning cycle: train (semi-supervised) -> score the pool -> evaluate.

Used by `s4al simulate` and by the Celery task; neither needs anything else from the engine.
Everything that can be wrong with the inputs is checked before training starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from worker.engine import checkpoint as ckpt_io
from worker.engine.acquisition import check_metric, class_balance_weights
from worker.engine.errors import Cancelled
from worker.engine.loader import default_loader_workers
from worker.engine.metrics import iou_list, miou
from worker.engine.pool import ArrayPool, FilePool, LabelStats, Pool, Sample, check_pool
from worker.engine.predicted_cost import check_cost
from worker.engine.pseudoseg_report import check_tags, classifier_uncertainty, module_state
from worker.engine.regions import SelectedRegion, check_region_kind
from worker.engine.selection import check_budget
from worker.engine.stream import evaluate_pool, score_and_select
from worker.engine.trainer import TrainConfig, train

__all__ = ["AcquisitionConfig", "Cancelled", "CycleData", "CycleOutput", "FilePool", "Sample",
           "SelectedRegion", "TrainConfig", "check_cycle_inputs", "evaluate", "run_cycle"]

Progress = Callable[[str, int, int, dict], None]


class CycleData:
    """The train pool (images with their current labels) and the val pool (images with ground truth).

    `CycleData(images, labels, val_images, val_labels, ...)` wraps arrays in memory; `from_pools` takes
    any pools, e.g. `FilePool`s of files that are read only when needed. `images`/`labels` read lazily.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], num_classes: int,
                 class_names: list[str], tags: list[list[int] | None] | None = None) -> None:
        self.train: Pool = ArrayPool(images, labels)
        self.val: Pool = ArrayPool(val_images, val_labels)
        self.num_classes, self.class_names = num_classes, class_names
        # PseudoSeg: per train image, the class ids an annotator tagged it with, or None.
        self.tags = tags
        self._stats: LabelStats | None = None

    @classmethod
    def from_pools(cls, train: Pool, val: Pool, num_classes: int, class_names: list[str],
                   tags: list[list[int] | None] | None = None) -> CycleData:
        data = cls([], [], [], [], num_classes, class_names, tags)
        data.train, data.val = train, val
        return data

    @property
    def images(self) -> Sequence[np.ndarray]:
        return self.train.images

    @property
    def labels(self) -> Sequence[np.ndarray]:
        return self.train.labels

    @property
    def val_images(self) -> Sequence[np.ndarray]:
        return self.val.images

    @property
    def val_labels(self) -> Sequence[np.ndarray]:
        return self.val.labels

    def stats(self) -> LabelStats:
        """Checks every train sample (once per CycleData: labels are not expected to change under it)."""
        if self._stats is None:
            self._stats = check_pool(self.train, self.num_classes, "train")
        return self._stats

    def forget_stats(self) -> None:
        """After labels were changed in place (the simulator's oracle), the next cycle re-reads them."""
        self._stats = None


@dataclass
class AcquisitionConfig:
    metric: str = "entropy"  # random | least_confidence | entropy | margin
    region_kind: str = "grid"  # grid | superpixel
    region_size: int = 32
    budget_regions: int | None = None
    budget_fraction: float | None = None
    per_image: int | None = None
    class_balance: bool = False
    seed: int = 0
    # Cost-aware ranking (worker/engine/predicted_cost.py): none | clicks | corrected, and how the
    # predicted cost weighs the uncertainty: ratio | below_median.
    cost: str = "none"
    cost_rule: str = "ratio"
    dominant: bool = False  # regions are labeled with their majority class: each costs one click
    # The budget's currency (worker/engine/selection.py): regions (budget_regions, budget_fraction of the
    # pool's pixels, per_image) | clicks (budget_clicks predicted clicks per cycle, filled in the ranking's
    # order: cheaper regions buy more regions).
    budget_unit: str = "regions"
    budget_clicks: float | None = None

    def validate(self) -> None:
        check_metric(self.metric)
        check_region_kind(self.region_kind, self.region_size)
        check_budget(self.budget_regions, self.budget_fraction, self.per_image, self.budget_unit,
                     self.budget_clicks)
        check_cost(self.cost, self.cost_rule)


@dataclass
class CycleOutput:
    regions: list[SelectedRegion]  # best first; each carries its pre-label (None on a cold start)
    metrics: dict
    checkpoint: dict
    # PseudoSeg: the image classifier's uncertainty per train image (orders the tagging queue).
    tag_uncertainty: list[float] | None = None


def check_cycle_inputs(config: TrainConfig, data: CycleData, acquisition: AcquisitionConfig) -> LabelStats:
    """Raise ValueError naming the problem (and the image); called before any training. Returns the
    train pool's label statistics (one pass over the labels, one image at a time)."""
    config.validate()
    acquisition.validate()
    if data.num_classes < 2 or len(data.class_names) != data.num_classes:
        raise ValueError(f"num_classes {data.num_classes} must be >= 2 and match "
                         f"{len(data.class_names)} class names")
    if not len(data.train):
        raise ValueError("the training pool is empty")
    stats = data.stats()
    check_pool(data.val, data.num_classes, "val")
    check_tags(data.tags, len(data.train), data.num_classes)
    return stats


def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             num_classes: int, *, batch_size: int = 32, device: str | torch.device = "cpu",
             amp: bool = False, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Confusion matrix (rows = target) of `model`'s argmax on images; consecutive equal sizes are batched."""
    return evaluate_pool(model, ArrayPool(images, labels), num_classes, device=torch.device(device), amp=amp,
                         batch_size=batch_size, progress=progress)


def run_cycle(config: TrainConfig, data: CycleData, acquisition: AcquisitionConfig, *,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              init_checkpoint: dict | None = None) -> CycleOutput:
    """Train on `data`, select the next regions (with their pre-labels), evaluate on `val`. Cold start
    (nothing labeled): no training, random regions without pre-labels, `metrics["cold_start"] = True`,
    checkpoint {}."""
    stats = check_cycle_inputs(config, data, acquisition)
    total, labeled = int(stats.pixels.sum()), int(stats.labeled.sum())
    metrics: dict = {"labeled_fraction": labeled / total, "labeled_pixels": labeled, "total_pixels": total,
                     "cold_start": labeled == 0}

    def stage(phase: str) -> Callable[[int, int], None]:
        def report(done: int, count: int) -> None:
            if should_stop is not None and should_stop():
                raise Cancelled(f"cancelled during {phase}")
            if progress is not None:
                progress(phase, done, count, {})
        return report

    workers = default_loader_workers() if config.loader_workers is None else config.loader_workers
    acq = dict(region_kind=acquisition.region_kind, region_size=acquisition.region_size,
               budget_regions=acquisition.budget_regions, budget_fraction=acquisition.budget_fraction,
               per_image=acquisition.per_image, budget_unit=acquisition.budget_unit,
               budget_clicks=acquisition.budget_clicks, total_pixels=total, seed=acquisition.seed,
               base_size=config.base, batch_size=config.eval_batch_size, max_pixels=config.eval_pixels,
               workers=workers, progress=stage("score"))
    if labeled == 0:
        start = time.perf_counter()
        regions = score_and_select(None, data.train, metric="random", device=torch.device("cpu"), **acq)
        metrics.update(score_seconds=time.perf_counter() - start, iterations=0, miou=None, per_class_iou=None)
        return CycleOutput(regions, metrics, {})

    result = train(config, data, progress, should_stop, init_state=init_checkpoint)
    device, amp = torch.device(result.device), config.amp and result.device.startswith("cuda")
    start = time.perf_counter()
    weights = class_balance_weights(stats.class_counts) if acquisition.class_balance else None
    regions = score_and_select(result.teacher, data.train, metric=acquisition.metric, class_weights=weights,
                               device=device, amp=amp, cost=acquisition.cost, cost_rule=acquisition.cost_rule,
                               dominant=acquisition.dominant, **acq)
    if acquisition.budget_unit == "clicks":
        metrics["selected_predicted_clicks"] = sum(r.predicted_clicks for r in regions)
    metrics.update(train_seconds=result.seconds, score_seconds=time.perf_counter() - start,
                   data_wait_seconds=round(result.data_wait_seconds, 3),
                   iterations=result.iterations, losses=result.losses, device=result.device)
    if len(data.val):
        start = time.perf_counter()
        cm = evaluate_pool(result.teacher, data.val, data.num_classes, device=device, amp=amp,
                           base_size=config.base, batch_size=config.eval_batch_size,
                           max_pixels=config.eval_pixels, workers=workers, progress=stage("evaluate"))
        value = miou(cm)
        metrics.update(miou=None if np.isnan(value) else value, per_class_iou=iou_list(cm),
                       evaluate_seconds=time.perf_counter() - start)
    else:
        metrics.update(miou=None, per_class_iou=None)
    # PseudoSeg: classifier uncertainty per image, the module in the checkpoint.
    tag_uncertainty, extra = None, {}
    if result.pseudoseg is not None:
        start = time.perf_counter()
        tag_uncertainty = classifier_uncertainty(result.teacher, result.pseudoseg, data.train,
                                                 batch_size=config.eval_batch_size, device=device,
                                                 max_pixels=config.eval_pixels, workers=workers,
                                                 base_size=config.base, amp=amp)
        metrics["tag_seconds"] = time.perf_counter() - start
        extra["pseudoseg"] = module_state(result.pseudoseg)
    checkpoint = ckpt_io.make(result.student, result.teacher, config.to_dict(), data.class_names,
                              metrics={k: v for k, v in metrics.items() if k != "per_class_iou"}, **extra)
    return CycleOutput(regions, metrics, checkpoint, tag_uncertainty)
