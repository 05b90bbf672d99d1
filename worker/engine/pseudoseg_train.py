"""The trainer's side of PseudoSeg (`TrainConfig.pseudo_label = "pseudoseg"`): one `PseudoSegHook` per
training run, called from a few clearly marked lines of trainer.py.

What changes against `argmax` (the S4AL/ClassMix default, teacher argmax targets):
- targets: the fused, sharpened soft distribution F(p_hat, m_hat) of pseudoseg.py instead of the
  teacher's argmax; human-labeled pixels still override with their one-hot; ClassMix picks the classes
  to paste from the fused argmax. The student is trained with a soft cross-entropy to the mixed targets.
- weighting: unchanged - each pixel by the teacher's own confidence (max softmax of p_hat, 1 on human
  labels) and each image by eta = share of pixels above tau, exactly as in `argmax`, so the comparison
  isolates the targets. (PseudoSeg itself weights every pixel 1; its calibrated, sharpened targets are
  rarely above tau = 0.97, which would switch S4AL's eta off.)
- strong augmentation: CutOut on the student's view (PseudoSeg: colour jitter + CutOut), the erased
  square left out of the loss as in the official code; the trainer's colour jitter and blur stay.
- extra losses on the labeled crops: the classifier's BCE and the SGC's cross-entropy (pseudoseg.py).
- image-level labels come from `data.tags` (one list or None per image) and the labeled pixels, on the
  whole images; crops from the replay buffer have lost their image, so their labels are unknown. The
  pool's labels are read one at a time and only the `[N, K]` vectors are kept (DESIGN §3: the pool is
  never held in memory).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.masks import IGNORE
from worker.engine import augment
from worker.engine.classifier_head import image_level_labels
from worker.engine.losses import labels_to_probs, teacher_targets
from worker.engine.pool import Pool
from worker.engine.pseudoseg import FeatureTap, PseudoSegModule, tapped
from worker.engine.teacher import EMATeacher

PSEUDO_LABELS = ("argmax", "pseudoseg")


def check_config(cfg) -> None:
    """ValueError naming the bad PseudoSeg field of a TrainConfig."""
    if cfg.pseudo_label not in PSEUDO_LABELS:
        raise ValueError(f"unknown pseudo_label {cfg.pseudo_label!r}; "
                         f"expected one of {', '.join(PSEUDO_LABELS)}")
    if not 0.0 <= cfg.pseudoseg_gamma <= 1.0:
        raise ValueError(f"pseudoseg_gamma must be in [0, 1], got {cfg.pseudoseg_gamma}")
    if cfg.pseudoseg_temperature <= 0:
        raise ValueError(f"pseudoseg_temperature must be > 0, got {cfg.pseudoseg_temperature}")
    if not 0.0 <= cfg.pseudoseg_cutout < 1.0:
        raise ValueError(f"pseudoseg_cutout must be in [0, 1), got {cfg.pseudoseg_cutout}")
    if cfg.pseudo_label == "pseudoseg" and getattr(cfg, "consistency", "ce") != "ce":
        raise ValueError("pseudo_label 'pseudoseg' trains with a soft cross-entropy: "
                         "consistency must be 'ce'")
    if cfg.pseudoseg_background is not None and cfg.pseudoseg_background < 0:
        raise ValueError(f"pseudoseg_background must be a class id or None, got {cfg.pseudoseg_background}")


def resolve_background(background: int | None, class_names: Sequence[str] | None) -> int | None:
    """The background class: the configured id, else the class named "background" if any, else None."""
    if background is not None:
        return background
    names = [n.strip().lower() for n in (class_names or [])]
    return names.index("background") if "background" in names else None


def pool_image_labels(pool: Pool, num_classes: int, tags: Sequence[Sequence[int] | None] | None = None, *,
                      background: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`image_level_labels` of every image of `pool` (`[N, K]` target and known), its labels read one at
    a time. An image without a label file is not decoded: a one-pixel unlabeled map gives the same
    answer as its full-size one, since no pixel of it is labeled."""
    n = len(pool)
    if tags is not None and len(tags) != n:
        raise ValueError(f"{len(tags)} tag lists for {n} training images")
    target = torch.zeros(n, num_classes)
    known = torch.zeros(n, num_classes, dtype=torch.bool)
    unlabeled = np.full((1, 1), IGNORE, np.uint8)
    for i in range(n):
        label = pool.label(i) if pool.has_label(i) else unlabeled
        t, k = image_level_labels(label, num_classes, tags=None if tags is None else tags[i],
                                  background=background)
        target[i], known[i] = t[0], k[0]
    return target, known


class PseudoSegHook:
    """Owns the PseudoSeg module, its EMA copy and the image-level labels of the training pool.

    Build it after the EMATeacher of the student: a forward hook registered before `deepcopy` would be
    copied into the teacher and record the teacher's features as the student's.
    """

    def __init__(self, cfg, data, student: nn.Module, device: torch.device) -> None:
        k = data.num_classes
        self.cfg = cfg
        self.background = resolve_background(cfg.pseudoseg_background, getattr(data, "class_names", None))
        if self.background is not None and self.background >= k:
            raise ValueError(f"pseudoseg_background {self.background} is not a class id (0..{k - 1})")
        self.target, self.known = pool_image_labels(data.train, k, getattr(data, "tags", None),
                                                    background=self.background)
        self.module = PseudoSegModule(student, k, background=self.background).to(device)
        self.ema = EMATeacher(self.module, cfg.ema_momentum)
        self.student_tap = FeatureTap(student)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.module.parameters())

    def _labels(self, indices: Sequence[int] | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if indices is None:  # a replayed crop: its image, hence its tags, is unknown
            k = self.target.shape[1]
            return torch.zeros(n, k), torch.zeros(n, k, dtype=torch.bool)
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return self.target[idx], self.known[idx]

    def student_losses(self, n_labeled: int, labels: torch.Tensor, indices: Sequence[int]
                       ) -> dict[str, torch.Tensor]:
        """Classifier BCE and SGC CE on the first `n_labeled` images of the student's last forward."""
        tap = self.student_tap
        target, known = self._labels(indices, n_labeled)
        return self.module.losses(tap.deep[:n_labeled], [t[:n_labeled] for t in tap.hyper], labels,
                                  target, known)

    @torch.no_grad()
    def teacher_view(self, teacher: nn.Module, x: torch.Tensor, labels: torch.Tensor, inside: torch.Tensor,
                     indices: Sequence[int] | None, amp: bool = False) -> tuple[torch.Tensor, ...]:
        """(fused targets `[B,K,H,W]`, labels, inside, confidence `[B,H,W]`) for a weak view `x`."""
        with tapped(teacher) as tap, torch.autocast(x.device.type, torch.float16, enabled=amp):
            logits = teacher(x).float()
            target, known = self._labels(indices, x.shape[0])
            fused = self.ema.module.pseudo_targets(
                logits, tap.deep, tap.hyper, target, known,
                gamma=self.cfg.pseudoseg_gamma, temperature=self.cfg.pseudoseg_temperature)
        _, confidence = teacher_targets(logits.softmax(1), labels)
        return fused, labels, inside, confidence

    def cutout(self, x: torch.Tensor, view_a: tuple, view_b: tuple, generator: torch.Generator
               ) -> tuple[torch.Tensor, tuple, tuple]:
        """CutOut on the student's mixed view; the erased pixels leave both views' `inside` masks."""
        if self.cfg.pseudoseg_cutout <= 0:
            return x, view_a, view_b
        x, kept = augment.cutout(x, proportion=self.cfg.pseudoseg_cutout, generator=generator)
        keep = kept[:, 0] > 0.5

        def cut(view: tuple) -> tuple:
            return (view[0], view[1], view[2] & keep, view[3])
        return x, cut(view_a), cut(view_b)

    def update(self, step: int) -> None:
        self.ema.update(step)

    def close(self) -> nn.Module:
        """Remove the student's hooks; returns the EMA module (for scoring and reports)."""
        self.student_tap.remove()
        return self.ema.module.eval()


def mix_loss(student_logits: torch.Tensor, view_a: tuple, view_b: tuple, m: torch.Tensor, mode: str,
             tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's `_mix_loss` for PseudoSeg views `(fused, labels, inside, confidence)`."""
    (fa, ya, ia, ca), (fb, yb, ib, cb) = view_a, view_b
    mm = m[:, 0] > 0.5
    ta = labels_to_probs(fa, ya)
    if mode == "cowout":  # the erased part carries no target: only kept pixels count
        target, conf, valid = ta, ca, mm & ia
    else:
        target = torch.where(mm[:, None], ta, labels_to_probs(fb, yb))
        conf, valid = torch.where(mm, ca, cb), torch.where(mm, ia, ib)
    return soft_unsupervised_loss(student_logits, target, conf, tau=tau, valid=valid)


def soft_unsupervised_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, confidence: torch.Tensor,
                           *, tau: float = 0.97, valid: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """losses.unsupervised_loss with a soft target: per-pixel `-sum_k q_k log p_k`, weighted by
    `confidence`, averaged over each image's valid pixels, times eta; -> (loss, eta `[B]`)."""
    logits = student_logits.float()
    b = logits.shape[0]
    valid = torch.ones_like(confidence) if valid is None else valid.reshape(confidence.shape).float()
    count = valid.reshape(b, -1).sum(1).clamp_min(1.0)
    eta = ((confidence > tau).float() * valid).reshape(b, -1).sum(1) / count
    pixel = -(target_probs.float() * F.log_softmax(logits, 1)).sum(1) * confidence
    per_image = (pixel * valid).reshape(b, -1).sum(1) / count
    return (eta.detach() * per_image).mean(), eta.detach()
