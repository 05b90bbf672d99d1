"""PseudoSeg (Zou et al., ICLR 2021) for the S4AL trainer: the classifier + SGC module, its losses and
the fused pseudo-labels (the trainer's side is in pseudoseg_train.py).

Which network: PseudoSeg has no teacher. It computes Grad-CAM with the same network in inference mode
on the weakly augmented view and stops the gradient. Our trainer takes its targets from the mean
teacher, so the pseudo-label side runs on the **teacher**: its decoder logits are p_hat, its encoder
features feed Grad-CAM and the SGC, with an EMA copy of this module's classifier and SGC weights (the
trainer keeps that copy like the teacher itself). The **student** trains the module: BCE of the
classifier on its own deepest features of the labeled batch (this gradient reaches the encoder, as in
PseudoSeg, where the classifier shares the backbone), and the SGC's segmentation loss on the labeled
pixels (hypercolumn and seed detached, so it trains only the SGC's own weights).

Features are read with forward hooks on named sub-modules (`TAPS`), so the models stay unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.classifier_head import (
    ClassifierHead,
    absent_classes,
    cam_class_mask,
    classifier_loss,
)
from worker.engine.fusion import fuse
from worker.engine.gradcam import grad_cam
from worker.engine.sgc import SelfAttentionCAM, hypercolumn, sgc_loss

# model class -> (deepest encoder features for the classifier, hypercolumn layers for the SGC).
# UNetSmall: enc.4 is the stride-16 bottleneck; enc.2/enc.3 (stride 4/8) give the SGC finer positions
# than PseudoSeg's stride 16, which on 64x64 images would be a 4x4 map.
# DeepLabV3PlusMobileNetV2: `high` is the stride-16 MobileNetV2 output (320 ch), `high.9` is
# features.13 (96 ch, stride 16), `low` the stride-4 features (24 ch).
# LRASPPMobileNetV2: `high` ends with features.7 (64 ch, stride 8); `high.6` is features.6 (32 ch, stride 8).
TAPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "UNetSmall": ("enc.4", ("enc.2", "enc.3", "enc.4")),
    "DeepLabV3PlusMobileNetV2": ("high", ("low", "high.9", "high")),
    "LRASPPMobileNetV2": ("high", ("low", "high.6", "high")),
}


class FeatureTap:
    """Captures the outputs of named sub-modules during every forward of `model` while active."""

    def __init__(self, model: nn.Module) -> None:
        name = type(model).__name__
        if name not in TAPS:
            raise ValueError(f"pseudoseg does not know where the encoder features of {name} are; "
                             f"known models: {', '.join(sorted(TAPS))}")
        self.deep_name, self.hyper_names = TAPS[name]
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n))
                         for n in {self.deep_name, *self.hyper_names}]

    def _hook(self, name: str):
        def store(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.outputs[name] = output
        return store

    @property
    def deep(self) -> torch.Tensor:
        return self.outputs[self.deep_name]

    @property
    def hyper(self) -> list[torch.Tensor]:
        return [self.outputs[n] for n in self.hyper_names]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self.outputs.clear()


@contextmanager
def tapped(model: nn.Module):
    tap = FeatureTap(model)
    try:
        yield tap
    finally:
        tap.remove()


class PseudoSegModule(nn.Module):
    """The classifier head and the SGC for one segmentation model (sizes found by a dry run)."""

    def __init__(self, model: nn.Module, num_classes: int, *, background: int | None = None,
                 attention_dim: int = 64, max_positions: int = 4096) -> None:
        super().__init__()
        deep_ch, hyper_ch = _tap_channels(model)
        self.num_classes = num_classes
        self.background = background
        self.max_positions = max_positions
        self.classifier = ClassifierHead(deep_ch, num_classes)
        self.sgc = SelfAttentionCAM(hyper_ch, num_classes, attention_dim, background)

    def sgc_size(self, hyper: Sequence[torch.Tensor]) -> tuple[int, int]:
        """The finest tapped resolution, halved until it has at most `max_positions` positions
        (self-attention is quadratic in them)."""
        h, w = max((t.shape[-2:] for t in hyper), key=lambda s: s[0] * s[1])
        while h * w > self.max_positions:
            h, w = (h + 1) // 2, (w + 1) // 2
        return int(h), int(w)

    def sgc_logits(self, deep: torch.Tensor, hyper: Sequence[torch.Tensor], target: torch.Tensor,
                   known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(classifier logits `[B, K]`, SGC logits `[B, K, h, w]` at the SGC resolution) from a tap's
        `deep` features and `hyper` maps and the images' labels `(target, known)`."""
        # Full precision whatever autocast the caller runs under: Grad-CAM divides by small maxima.
        deep, hyper = deep.float(), [t.float() for t in hyper]
        target, known = target.to(deep.device), known.to(deep.device)
        with torch.autocast(deep.device.type, enabled=False):
            cls_logits = self.classifier(deep)
            mask = cam_class_mask(cls_logits, target, known)
            if self.background is not None:
                mask[:, self.background] = 0.0
            seed = grad_cam(deep, self.classifier, mask)
            size = self.sgc_size(hyper)
            seed = F.interpolate(seed, size=size, mode="bilinear", align_corners=False)
            return cls_logits, self.sgc(hypercolumn(hyper, size), seed)

    def losses(self, deep: torch.Tensor, hyper: Sequence[torch.Tensor], labels: torch.Tensor,
               target: torch.Tensor, known: torch.Tensor, ignore_index: int = 255) -> dict[str, torch.Tensor]:
        """Student side, on the labeled batch: `cls` (BCE over known image labels) and `sgc` (CE of the
        SGC map on the labeled pixels)."""
        cls_logits, sgc = self.sgc_logits(deep, hyper, target, known)
        return {"cls": classifier_loss(cls_logits, target, known),
                "sgc": sgc_loss(sgc, labels, ignore_index)}

    @torch.no_grad()
    def pseudo_targets(self, p_logits: torch.Tensor, deep: torch.Tensor, hyper: Sequence[torch.Tensor],
                       target: torch.Tensor, known: torch.Tensor, *, gamma: float = 0.5,
                       temperature: float = 0.5) -> torch.Tensor:
        """Teacher side: fused, sharpened soft targets `[B, K, H, W]` at the size of `p_logits`."""
        _, sgc = self.sgc_logits(deep, hyper, target, known)
        m_logits = F.interpolate(sgc, size=p_logits.shape[-2:], mode="bilinear", align_corners=False)
        return fuse(p_logits.float(), m_logits.float(), gamma=gamma, temperature=temperature,
                    absent=absent_classes(target, known).to(p_logits.device))


def _tap_channels(model: nn.Module) -> tuple[int, int]:
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        with torch.no_grad(), tapped(model) as tap:
            model(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype))
            return tap.deep.shape[1], sum(t.shape[1] for t in tap.hyper)
    finally:
        model.train(was_training)

