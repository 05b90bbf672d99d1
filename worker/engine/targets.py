"""Pseudo-label providers: what the teacher's view of unlabeled crops is, and how the student is scored on
mixed crops against it. `ArgmaxTargets` is S4AL/ClassMix (the teacher's argmax, human labels override);
`PseudoSegTargets` is PseudoSeg (fused soft targets, plus the classifier and SGC losses on labeled crops).
The trainer calls the same methods whichever it has.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from service.masks import IGNORE
from worker.engine import augment, pseudoseg_train
from worker.engine.losses import labels_to_probs, teacher_targets, unsupervised_loss


class ArgmaxTargets:
    """A view is (teacher probs `[B,K,H,W]`, human labels, inside)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.gate = None  # an UnsupGate: the teacher's measured precision replaces its own confidence

    def parameters(self) -> list[nn.Parameter]:
        return []

    def view(self, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, inside: torch.Tensor,
             indices: Sequence[int] | None, autocast: dict) -> tuple:
        with torch.no_grad(), torch.autocast(x.device.type, **autocast):
            return teacher(x).float().softmax(1), y, inside

    def cutout(self, x: torch.Tensor, view_a: tuple, view_b: tuple, generator) -> tuple:
        return x, view_a, view_b

    def student_losses(self, n_labeled: int, labels: torch.Tensor, indices: Sequence[int]) -> dict:
        return {}

    def mix_loss(self, student_logits: torch.Tensor, view_a: tuple, view_b: tuple, m: torch.Tensor,
                 mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of the student on mixed images against the mixed teacher targets, and eta per image."""
        cfg = self.cfg
        (pa, ya, ia), (pb, yb, ib) = view_a, view_b
        ta, ca = teacher_targets(pa, ya)
        mm = m[:, 0] > 0.5
        if mode == "cowout":  # the erased part carries no target: only kept pixels count
            target, conf, valid = ta, ca, mm & ia
            probs = labels_to_probs(pa, ya) if cfg.consistency == "mse" else None
        else:
            tb, cb = teacher_targets(pb, yb)
            target, conf, valid = torch.where(mm, ta, tb), torch.where(mm, ca, cb), torch.where(mm, ia, ib)
            probs = None
            if cfg.consistency == "mse":
                probs = torch.where(mm[:, None], labels_to_probs(pa, ya), labels_to_probs(pb, yb))
        if self.gate is not None:
            human = (ya != IGNORE) if mode == "cowout" else torch.where(mm, ya != IGNORE, yb != IGNORE)
            conf = self.gate.confidence(target, conf, human)
        return unsupervised_loss(student_logits, target, conf, tau=cfg.tau, valid=valid,
                                 kind=cfg.consistency, target_probs=probs)

    def update(self, step: int) -> None:
        pass

    def close(self) -> nn.Module | None:
        return None


class PseudoSegTargets(ArgmaxTargets):
    """PseudoSeg: views carry fused soft targets and the teacher's confidence (see pseudoseg_train)."""

    def __init__(self, cfg, data, student: nn.Module, device: torch.device) -> None:
        super().__init__(cfg)
        self.hook = pseudoseg_train.PseudoSegHook(cfg, data, student, device)

    def parameters(self) -> list[nn.Parameter]:
        return self.hook.parameters()

    def view(self, teacher, x, y, inside, indices, autocast: dict) -> tuple:
        return self.hook.teacher_view(teacher, x, y, inside, indices, autocast.get("enabled", False))

    def cutout(self, x, view_a, view_b, generator) -> tuple:
        return self.hook.cutout(x, view_a, view_b, generator)

    def student_losses(self, n_labeled, labels, indices) -> dict:
        return self.hook.student_losses(n_labeled, labels, indices)

    def mix_loss(self, student_logits, view_a, view_b, m, mode):
        return pseudoseg_train.mix_loss(student_logits, view_a, view_b, m, mode, self.cfg.tau)

    def update(self, step: int) -> None:
        self.hook.update(step)

    def close(self) -> nn.Module:
        return self.hook.close()


def make_targets(cfg, data, student: nn.Module, device: torch.device) -> ArgmaxTargets:
    """Build after the EMA teacher: PseudoSeg's feature hooks must not be copied into it."""
    if cfg.pseudo_label == "pseudoseg":
        return PseudoSegTargets(cfg, data, student, device)
    return ArgmaxTargets(cfg)


def mixed_input(m: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor, mode: str, cfg,
                generator) -> torch.Tensor:
    """The student's view of a mixed pair: paste, then colour jitter, blur (and CutOut if set)."""
    other = augment.FILL.to(xa.device, xa.dtype) if mode == "cowout" else xb
    x = m * xa + (1 - m) * other
    x = augment.strong_augment(x, jitter=cfg.color_jitter, blur_prob=cfg.blur_prob, generator=generator)
    if cfg.cutout:
        x, _ = augment.cutout(x, generator=generator)
    return x
