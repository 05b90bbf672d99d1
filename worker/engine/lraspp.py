"""`lraspp_mobilenetv2`: an ImageNet MobileNetV2 encoder cut at output stride 8, with a LR-ASPP head.

A pretrained network that fits a CPU. The encoder is torchvision's MobileNetV2 (`features.*`, so the
shipped ImageNet file loads strictly) cut where it reaches output stride 8: after the first
block of the 64-channel stage, run at stride 1 (`features[:8]`), so the deepest features keep 1/8 of
the input's resolution (small objects in 64 px images survive). The cut is set by cost: on 64 px crops
(batch 16, 1 CPU thread, a shared machine) one SGD step took 1.4x (cut after `features.6`), 1.6x
(`features.7`, this one), 1.6-2.5x (`features.8`), 2.5-4.5x (`features.10`) and 3-4x (`features.13`,
the 96-channel stage dilated) the time of unet_small's; the budget is 2x.
The head is LR-ASPP (Howard et al., "Searching for MobileNetV3", 2019): a 1x1 conv on the deep
features gated per channel by a sigmoid of their global average, then class logits from it and from
the stride-4 features, added, and upsampled bilinearly to the input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.models import _Normalize, _pad_to, load_mobilenet_encoder, mobilenet_v2_features

LOW_END = 4  # features[:4] ends at stride 4 with 24 channels
CUT = 8  # features[:8] ends with the first 64-channel block, at stride 8
LOW_CHANNELS, HIGH_CHANNELS = 24, 64


class LRASPPMobileNetV2(nn.Module):
    """MobileNetV2 `features[:8]` (output stride 8) + LR-ASPP (inner width 128)."""

    stride = 8

    def __init__(self, num_classes: int, pretrained: str | Path | bool | None = None,
                 inner: int = 128) -> None:
        super().__init__()
        self.normalize = _Normalize()
        features = mobilenet_v2_features(output_stride=self.stride)
        if pretrained:
            # The whole torchvision file loads strictly first (so a wrong file fails loudly); the blocks
            # past the cut are then dropped.
            load_mobilenet_encoder(features, None if pretrained is True else pretrained)
        self.low = features[:LOW_END]
        self.high = features[LOW_END:CUT]
        self.cbr = nn.Sequential(nn.Conv2d(HIGH_CHANNELS, inner, 1, bias=False), nn.BatchNorm2d(inner),
                                 nn.ReLU(inplace=True))
        # No BN on the pooled branch: it sees a 1x1 map (batch of 1 at evaluation).
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(HIGH_CHANNELS, inner, 1), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(LOW_CHANNELS, num_classes, 1)
        self.high_classifier = nn.Conv2d(inner, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to(self.normalize(x), self.stride)
        low = self.low(x)
        high = self.high(low)
        y = self.cbr(high) * self.scale(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.low_classifier(low) + self.high_classifier(y)
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., :h, :w]
