"""PseudoSeg's multi-label classifier: image-level labels, the head on the deepest features, its BCE.

Image-level labels are a pair `(target, known)` of `[B, K]` tensors: `target` is 1 where a class is
present, `known` says which entries are actually known. Rules:
- an image with **tags** (the complete list of classes an annotator saw) knows every class: tagged
  classes are present, the others absent. A class its labeled pixels show is present even if the tag
  list forgot it (pixels are the more careful annotation);
- without tags, a class its labeled pixels show is present; a class is known **absent** only when the
  image is fully labeled; everything else is unknown and left out of the BCE.
- the background class (when the dataset has one) is never a classifier output, as in PseudoSeg (its
  head has K-1 outputs): it is never "known", so never supervised and never masked as absent.
Labels are computed on whole images, before augmentation: a crop may lose a tagged class, which the
BCE then sees as label noise; an absent class stays absent in any crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Tags = Sequence[int] | None


class ClassifierHead(nn.Module):
    """Global average pooling + one linear layer: `[B, C, h, w]` features -> `[B, K]` logits."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(-2, -1)))


def image_level_labels(labels: torch.Tensor | np.ndarray | Sequence[np.ndarray], num_classes: int,
                       tags: Tags | Sequence[Tags] = None, *, ignore_index: int = 255,
                       background: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(target, known)`, both `[B, K]` (float and bool), from label maps and optional tags.

    `labels` is one `[H, W]` map or a batch (`[B, H, W]` tensor, or a list of `[H, W]` arrays of any
    sizes); with one map, `tags` is one list (or None); with a batch, a list of per-image lists/None.
    """
    single = _is_single(labels)
    maps = [labels] if single else list(labels)
    per_image = [tags] if single else (list(tags) if tags is not None else [None] * len(maps))
    if len(per_image) != len(maps):
        raise ValueError(f"{len(per_image)} tag lists for {len(maps)} label maps")
    target = torch.zeros(len(maps), num_classes)
    known = torch.zeros(len(maps), num_classes, dtype=torch.bool)
    for i, (lab, tag) in enumerate(zip(maps, per_image, strict=True)):
        lab = torch.as_tensor(np.asarray(lab) if not isinstance(lab, torch.Tensor) else lab).long()
        labeled = lab[lab != ignore_index]
        if labeled.numel() and (labeled.min() < 0 or labeled.max() >= num_classes):
            raise ValueError(f"label values must be in 0..{num_classes - 1} or {ignore_index}")
        seen = torch.bincount(labeled.reshape(-1), minlength=num_classes) > 0
        if tag is not None:
            tagged = torch.zeros(num_classes, dtype=torch.bool)
            ids = torch.as_tensor(list(tag), dtype=torch.long)
            if ids.numel() and (ids.min() < 0 or ids.max() >= num_classes):
                raise ValueError(f"tag class ids must be in 0..{num_classes - 1}, got {sorted(tag)}")
            tagged[ids] = True
            target[i] = (tagged | seen).float()
            known[i] = True
        else:
            target[i] = seen.float()
            fully_labeled = labeled.numel() == lab.numel()
            known[i] = True if fully_labeled else seen
    if background is not None:
        target[:, background] = 0.0
        known[:, background] = False
    return target, known


def _is_single(labels: object) -> bool:
    if isinstance(labels, torch.Tensor | np.ndarray):
        return labels.ndim == 2
    return False


def classifier_loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the known entries only (0 with a graph when none is known)."""
    known = known.to(logits.device)
    per_entry = F.binary_cross_entropy_with_logits(logits, target.to(logits), reduction="none")
    return (per_entry * known).sum() / known.sum().clamp_min(1)


def cam_class_mask(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor,
                   threshold: float = 0.5) -> torch.Tensor:
    """Which classes get a Grad-CAM: the known labels where known, else the classifier's own verdict
    (sigmoid >= threshold), as PseudoSeg does without image-level labels. `[B, K]` float 0/1."""
    predicted = torch.sigmoid(logits.detach()) >= threshold
    known = known.to(logits.device)
    return torch.where(known, target.to(logits.device) > 0.5, predicted).float()


def absent_classes(target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """`[B, K]` bool: classes known to be absent (a tag list or a fully labeled image rules them out)."""
    return known & (target < 0.5)
