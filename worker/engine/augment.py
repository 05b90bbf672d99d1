"""Augmentations. Weak (teacher's and supervised view): random scale, crop, flip, applied identically
to an image and its label. Strong (student's view of a mixed image): colour jitter and Gaussian blur,
photometric only, so the teacher's pixel-aligned targets stay valid; CutOut as an option.

Images here are float `[3,H,W]` / `[B,3,H,W]` in [0, 1]; labels long with 255 = unlabeled.
All randomness comes from the `generator` passed in (determinism for a seed).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from service.masks import IGNORE
from worker.engine.masks import cutmix_mask

# Erased pixels take the ImageNet mean, which the models' normalisation maps to 0 ("zeroed").
FILL = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> uint8 `[3,H,W]` tensor (kept uint8: 4x less memory for the pool)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def label_tensor(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(label))


def _rand(generator: torch.Generator | None, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator)


def weak_augment(image: torch.Tensor, label: torch.Tensor, *, crop: int,
                 scale: tuple[float, float] = (0.75, 1.25), flip: bool = True,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale by s ~ U(scale), pad to at least `crop`, crop `crop`x`crop` at random, flip with p=0.5.

    `image` uint8 or float `[3,H,W]`, `label` `[H,W]`. Returns (float image `[3,c,c]`, long label
    `[c,c]`, bool `inside` `[c,c]`: False on padding, whose label is 255 and image the fill colour).
    """
    u = _rand(generator, 4)
    s = scale[0] + float(u[0]) * (scale[1] - scale[0])
    h, w = label.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    x = image.float().unsqueeze(0) / (255.0 if image.dtype == torch.uint8 else 1.0)
    y = label.long().view(1, 1, h, w)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        # nearest-exact samples pixel centres like bilinear does; plain nearest is off by half a pixel.
        y = F.interpolate(y.float(), size=(nh, nw), mode="nearest-exact").long()
    inside = torch.ones(1, 1, nh, nw, dtype=torch.bool)
    ph, pw = max(0, crop - nh), max(0, crop - nw)
    if ph or pw:
        fill = FILL.expand(1, 3, nh + ph, nw + pw).clone()
        fill[..., :nh, :nw] = x
        x = fill
        y = F.pad(y, (0, pw, 0, ph), value=IGNORE)
        inside = F.pad(inside, (0, pw, 0, ph), value=False)
    top = int(float(u[1]) * (x.shape[-2] - crop + 1))
    left = int(float(u[2]) * (x.shape[-1] - crop + 1))
    x, y, inside = (t[..., top:top + crop, left:left + crop] for t in (x, y, inside))
    if flip and float(u[3]) < 0.5:
        x, y, inside = (t.flip(-1) for t in (x, y, inside))
    return x[0], y[0, 0], inside[0, 0]


def weak_batch(images: list[torch.Tensor], labels: list[torch.Tensor], indices: list[int], **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`weak_augment` for each index -> stacked (x `[B,3,c,c]`, y `[B,c,c]`, inside `[B,c,c]`)."""
    parts = [weak_augment(images[i], labels[i], **kwargs) for i in indices]
    return tuple(torch.stack(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def color_jitter(x: torch.Tensor, strength: float = 0.4,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness, contrast and saturation, each by a factor ~ U(1-strength, 1+strength) per image."""
    if strength <= 0:
        return x
    f = 1.0 + (2.0 * _rand(generator, 3, x.shape[0], 1, 1, 1) - 1.0) * strength
    f = f.to(x.device, x.dtype)
    x = (x * f[0]).clamp(0, 1)
    mean = _gray(x).mean((2, 3), keepdim=True)
    x = ((x - mean) * f[1] + mean).clamp(0, 1)
    gray = _gray(x)
    return ((x - gray) * f[2] + gray).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, prob: float = 0.5, sigma: tuple[float, float] = (0.1, 1.0),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability `prob` per image, a separable Gaussian blur of sigma ~ U(sigma), 5x5 kernel."""
    if prob <= 0:
        return x
    b, c, h, w = x.shape
    u = _rand(generator, 2, b)
    sig = sigma[0] + u[0] * (sigma[1] - sigma[0])
    t = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None, :] / sig[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)
    identity = (t == 0).float().expand(b, 5)
    k = torch.where((u[1] < prob)[:, None], k, identity)
    k = k.repeat_interleave(c, 0).to(x.device, x.dtype)  # one kernel per (image, channel)
    y = F.pad(x.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="replicate")
    y = F.conv2d(y, k.view(b * c, 1, 1, 5), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, 5, 1), groups=b * c)
    return y.view(b, c, h, w)


def strong_augment(x: torch.Tensor, *, jitter: float = 0.4, blur_prob: float = 0.5,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The student's view: colour jitter then blur (photometric: pixel positions do not move)."""
    return gaussian_blur(color_jitter(x, jitter, generator), blur_prob, generator=generator)


def cutout(x: torch.Tensor, *, proportion: float = 0.25, generator: torch.Generator | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """CutOut (DeVries & Taylor 2017): erase one random rectangle of `proportion` of each image.

    Returns (erased images, kept `[B,1,H,W]` float: 1 where the image is intact).
    """
    b, _, h, w = x.shape
    erased = cutmix_mask(b, h, w, proportion=proportion, generator=generator).to(x.device, x.dtype)
    return x * (1 - erased) + FILL.to(x.device, x.dtype) * erased, 1 - erased
