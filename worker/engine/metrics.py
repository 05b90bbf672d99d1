"""Segmentation metrics: confusion matrix (rows = target, columns = prediction), per-class IoU, mIoU.

`confusion_matrix` accepts torch tensors (CPU or CUDA; the matrix stays on that device so evaluation can
accumulate without a host round-trip per batch) or numpy arrays (the matrix is numpy). `iou`/`miou`
accept either and always answer in numpy / Python floats, which is what reports and JSON want.
"""

from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def confusion_matrix(pred: Array, target: Array, num_classes: int, ignore_index: int = 255) -> Array:
    """Counts `cm[t, p]` of pixels with target class t predicted as p; `ignore_index` targets are skipped.

    `pred` and `target` have the same shape (any). A target or prediction outside 0..K-1 (other than an
    ignored target) is a ValueError: it means a mask or a model disagrees with the class list.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if isinstance(pred, np.ndarray) and isinstance(target, np.ndarray):
        cm = confusion_matrix(torch.from_numpy(np.ascontiguousarray(pred)),
                              torch.from_numpy(np.ascontiguousarray(target)), num_classes, ignore_index)
        return cm.numpy()
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).to(device=target.device, dtype=torch.long)
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    # One fused check (one host sync) instead of four.
    bad = ((target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes)).any()
    if bool(bad):
        raise ValueError(f"class ids must be in 0..{num_classes - 1} (or {ignore_index} in the target); "
                         f"target has {_out_of_range(target, num_classes)}, "
                         f"prediction has {_out_of_range(pred, num_classes)}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _out_of_range(values: torch.Tensor, num_classes: int) -> list[int]:
    bad = values[(values < 0) | (values >= num_classes)]
    return sorted(int(v) for v in torch.unique(bad).cpu()[:10])


def iou(cm: Array) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both target and prediction."""
    cm = _as_numpy(cm).astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def miou(cm: Array) -> float:
    """Mean IoU over the classes whose IoU is defined (not NaN); NaN if none is."""
    values = iou(cm)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def pixel_accuracy(cm: Array) -> float:
    cm = _as_numpy(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def iou_list(cm: Array) -> list[float | None]:
    """Per-class IoU for JSON: NaN becomes None."""
    return [None if np.isnan(v) else float(v) for v in iou(cm)]


def _as_numpy(cm: Array) -> np.ndarray:
    if isinstance(cm, torch.Tensor):
        return cm.detach().cpu().numpy()
    return np.asarray(cm)


class ConfusionMeter:
    """Streaming confusion matrix: `update` per batch, read `cm`, `iou()`, `miou()` at the end.

    The running matrix lives on the device of the first batch, so CUDA evaluation syncs only once.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._cm: torch.Tensor | None = None

    def update(self, pred: Array, target: Array) -> None:
        if isinstance(pred, np.ndarray):
            pred = torch.from_numpy(np.ascontiguousarray(pred))
        if isinstance(target, np.ndarray):
            target = torch.from_numpy(np.ascontiguousarray(target))
        batch = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self._cm = batch if self._cm is None else self._cm + batch.to(self._cm.device)

    @property
    def cm(self) -> np.ndarray:
        if self._cm is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self._cm.cpu().numpy()

    def iou(self) -> np.ndarray:
        return iou(self.cm)

    def miou(self) -> float:
        return miou(self.cm)
