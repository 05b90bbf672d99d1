"""Supervised and unsupervised losses of S4AL / ClassMix / French et al.

Unsupervised targets come from the teacher: `teacher_targets` turns its probabilities into a hard
target and a confidence per pixel, with human labels overriding both (confidence 1.0). The loss on a
mixed image then weights each pixel by that confidence and each image by
`eta = share of its pixels with confidence > tau` (S4AL; this replaces a ramp-up schedule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from service.masks import IGNORE

CONSISTENCY = ("ce", "mse")


def supervised_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Mean cross-entropy over labeled pixels; exactly 0 (with a graph) when no pixel is labeled."""
    labels = labels.long()
    if not bool((labels != ignore_index).any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=ignore_index)


def teacher_targets(probs: torch.Tensor, labels: torch.Tensor | None = None,
                    ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor]:
    """`probs` `[B,K,H,W]` -> (target `[B,H,W]` long = argmax, confidence `[B,H,W]` = max prob).

    Where `labels` `[B,H,W]` holds a class (not `ignore_index`), the target is that class and the
    confidence 1.0: a human label is certain.
    """
    confidence, target = probs.float().max(1)
    if labels is not None:
        human = labels != ignore_index
        target = torch.where(human, labels.long(), target)
        confidence = torch.where(human, torch.ones_like(confidence), confidence)
    return target, confidence


def labels_to_probs(probs: torch.Tensor, labels: torch.Tensor | None,
                    ignore_index: int = IGNORE) -> torch.Tensor:
    """Teacher probabilities with human-labeled pixels replaced by their one-hot (for `mse`)."""
    probs = probs.float()
    if labels is None:
        return probs
    human = (labels != ignore_index).unsqueeze(1)
    k = probs.shape[1]
    onehot = F.one_hot(labels.long().clamp(max=k - 1), k).permute(0, 3, 1, 2).float()
    return torch.where(human, onehot, probs)


def unsupervised_loss(student_logits: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor, *,
                      tau: float = 0.97, valid: torch.Tensor | None = None, kind: str = "ce",
                      target_probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The S4AL unsupervised loss on one batch of mixed images -> (loss, eta per image `[B]`).

    kind `ce`: per-pixel cross-entropy to `target`, times `confidence`, averaged over each image's
    `valid` pixels (all by default; CowOut passes the kept pixels), times the image's
    `eta = mean(confidence > tau)` over the same pixels; the batch loss is the mean over images.
    kind `mse` (French et al.): squared difference of the student's softmax and `target_probs`, summed
    over classes, modulated by eta only (no per-pixel weight).
    """
    if kind not in CONSISTENCY:
        raise ValueError(f"unknown consistency {kind!r}; expected one of {', '.join(CONSISTENCY)}")
    logits = student_logits.float()
    b = logits.shape[0]
    valid = torch.ones_like(confidence) if valid is None else valid.reshape(confidence.shape).float()
    count = valid.reshape(b, -1).sum(1).clamp_min(1.0)
    eta = ((confidence > tau).float() * valid).reshape(b, -1).sum(1) / count
    if kind == "ce":
        pixel = F.cross_entropy(logits, target.long(), reduction="none") * confidence
    else:
        if target_probs is None:
            raise ValueError("mse consistency needs target_probs")
        pixel = (logits.softmax(1) - target_probs.float()).pow(2).sum(1)
    per_image = (pixel * valid).reshape(b, -1).sum(1) / count
    return (eta.detach() * per_image).mean(), eta.detach()
