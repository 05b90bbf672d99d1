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

from service.masks import IGNORE
from worker.engine import checkpoint as ckpt_io
from worker.engine.acquisition import acquire, check_metric
from worker.engine.errors import Cancelled
from worker.engine.metrics import ConfusionMeter, iou_list, miou
from worker.engine.pseudoseg_report import check_tags, classifier_uncertainty, module_state
from worker.engine.regions import SelectedRegion, check_region_kind
from worker.engine.selection import check_budget
from worker.engine.trainer import TrainConfig, train

__all__ = ["AcquisitionConfig", "Cancelled", "CycleData", "CycleOutput", "SelectedRegion", "TrainConfig",
           "check_cycle_inputs", "evaluate", "run_cycle"]

Progress = Callable[[str, int, int, dict], None]


@dataclass
class CycleData:
    images: list[np.ndarray]  # train pool, HxWx3 uint8 (sizes may differ)
    labels: list[np.ndarray]  # HxW uint8 class ids, 255 = unlabeled
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]  # ground truth for evaluation (255 ignored)
    num_classes: int
    class_names: list[str]
    # PseudoSeg: per train image, the class ids an annotator tagged it with, or None.
    tags: list[list[int] | None] | None = None


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

    def validate(self) -> None:
        check_metric(self.metric)
        check_region_kind(self.region_kind, self.region_size)
        check_budget(self.budget_regions, self.budget_fraction, self.per_image)


@dataclass
class CycleOutput:
    regions: list[SelectedRegion]
    predictions: list[np.ndarray]
    metrics: dict
    checkpoint: dict
    # PseudoSeg: the image classifier's uncertainty per train image (orders the tagging queue).
    tag_uncertainty: list[float] | None = None


def _check_pairs(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], k: int, what: str) -> None:
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} label masks")
    for i, (im, lab) in enumerate(zip(images, labels, strict=True)):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"{what} image {i}: expected HxWx3 uint8, got {im.shape} {im.dtype}")
        if lab.shape != im.shape[:2] or lab.dtype != np.uint8:
            raise ValueError(f"{what} mask {i}: expected {im.shape[:2]} uint8, got {lab.shape} {lab.dtype}")
        bad = np.setdiff1d(np.unique(lab), np.r_[np.arange(k), IGNORE])
        if bad.size:
            raise ValueError(f"{what} mask {i}: values {bad.tolist()[:10]} are neither a class id "
                             f"(0..{k - 1}) nor {IGNORE}")


def check_cycle_inputs(config: TrainConfig, data: CycleData, acquisition: AcquisitionConfig) -> None:
    """Raise ValueError naming the problem; called before any training."""
    config.validate()
    acquisition.validate()
    if data.num_classes < 2 or len(data.class_names) != data.num_classes:
        raise ValueError(f"num_classes {data.num_classes} must be >= 2 and match "
                         f"{len(data.class_names)} class names")
    if not data.images:
        raise ValueError("the training pool is empty")
    _check_pairs(data.images, data.labels, data.num_classes, "train")
    _check_pairs(data.val_images, data.val_labels, data.num_classes, "val")
    check_tags(data.tags, len(data.images), data.num_classes)  # PseudoSeg's image-level tags


@torch.inference_mode()
def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             num_classes: int, *, batch_size: int = 32, device: str | torch.device = "cpu",
             amp: bool = False,             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Confusion matrix (rows = target) of `model`'s argmax on images; consecutive equal sizes are batched."""
    device = torch.device(device)
    meter = ConfusionMeter(num_classes)
    model.eval()
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < batch_size and images[j].shape == images[i].shape:
            j += 1
        x = torch.from_numpy(np.stack(images[i:j])).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.autocast(device.type, torch.float16, enabled=amp and device.type == "cuda"):
            pred = model(x).argmax(1)
        meter.update(pred, torch.from_numpy(np.stack(labels[i:j])).to(device))
        i = j
        if progress is not None:
            progress(i, len(images))
    return meter.cm


def run_cycle(config: TrainConfig, data: CycleData, acquisition: AcquisitionConfig, *,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              init_checkpoint: dict | None = None) -> CycleOutput:
    """Train on `data`, select the next regions, evaluate on `val`. Cold start (nothing labeled):
    no training, random regions, predictions all 255, `metrics["cold_start"] = True`, checkpoint {}."""
    check_cycle_inputs(config, data, acquisition)
    total = sum(lab.size for lab in data.labels)
    labeled = sum(int((lab != IGNORE).sum()) for lab in data.labels)
    metrics: dict = {"labeled_fraction": labeled / total, "labeled_pixels": labeled, "total_pixels": total,
                     "cold_start": labeled == 0}

    def stage(phase: str) -> Callable[[int, int], None]:
        def report(done: int, count: int) -> None:
            if should_stop is not None and should_stop():
                raise Cancelled(f"cancelled during {phase}")
            if progress is not None:
                progress(phase, done, count, {})
        return report

    acq = dict(num_classes=data.num_classes, region_kind=acquisition.region_kind,
               region_size=acquisition.region_size, budget_regions=acquisition.budget_regions,
               budget_fraction=acquisition.budget_fraction, per_image=acquisition.per_image,
               class_balance=acquisition.class_balance, seed=acquisition.seed)
    if labeled == 0:
        start = time.perf_counter()
        regions, _ = acquire(None, data.images, data.labels, metric="random", return_predictions=False,
                             progress=stage("score"), **acq)
        metrics.update(score_seconds=time.perf_counter() - start, iterations=0, miou=None, per_class_iou=None)
        predictions = [np.full(im.shape[:2], IGNORE, np.uint8) for im in data.images]
        return CycleOutput(regions, predictions, metrics, {})

    result = train(config, data, progress, should_stop, init_state=init_checkpoint)
    device, amp = torch.device(result.device), config.amp and result.device.startswith("cuda")
    start = time.perf_counter()
    regions, pool = acquire(result.teacher, data.images, data.labels, metric=acquisition.metric,
                            batch_size=config.eval_batch_size, device=device, amp=amp,
                            return_predictions=True, progress=stage("score"), **acq)
    metrics.update(train_seconds=result.seconds, score_seconds=time.perf_counter() - start,
                   iterations=result.iterations, losses=result.losses, device=result.device)
    if data.val_images:
        start = time.perf_counter()
        cm = evaluate(result.teacher, data.val_images, data.val_labels, data.num_classes,
                      batch_size=config.eval_batch_size, device=device, amp=amp, progress=stage("evaluate"))
        value = miou(cm)
        metrics.update(miou=None if np.isnan(value) else value, per_class_iou=iou_list(cm),
                       evaluate_seconds=time.perf_counter() - start)
    else:
        metrics.update(miou=None, per_class_iou=None)
    # --- PseudoSeg: classifier uncertainty per image, the module in the checkpoint ---
    tag_uncertainty, extra = None, {}
    if result.pseudoseg is not None:
        start = time.perf_counter()
        tag_uncertainty = classifier_uncertainty(result.teacher, result.pseudoseg, data.images,
                                                 batch_size=config.eval_batch_size, device=device)
        metrics["tag_seconds"] = time.perf_counter() - start
        extra["pseudoseg"] = module_state(result.pseudoseg)
    # --- end PseudoSeg ---
    checkpoint = ckpt_io.make(result.student, result.teacher, config.to_dict(), data.class_names,
                              metrics={k: v for k, v in metrics.items() if k != "per_class_iou"}, **extra)
    return CycleOutput(regions, pool.predictions or [], metrics, checkpoint, tag_uncertainty)
