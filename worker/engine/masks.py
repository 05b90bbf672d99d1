"""Mix masks. Each generator returns a float tensor `[B,1,H,W]` of 0/1; 1 = take from the first image.

Mixing two images A, B with mask M gives `M*A + (1-M)*B` (and the same for their targets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(generator: torch.Generator | None, *shape: int) -> torch.Tensor:
    """Uniforms drawn on the generator's device, returned on the CPU (these masks are built on the CPU)."""
    return torch.rand(*shape, generator=generator, device=generator.device if generator else None).cpu()


def classmix_mask(labels: torch.Tensor, *, class_weights: torch.Tensor | None = None, ignore_index: int = 255,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ClassMix (Olsson et al. 2021): per image, pick half of the classes present; mask their pixels.

    `labels` `[B,H,W]` long (argmax predictions, or human labels). With C classes present
    (`ignore_index` excluded), ceil(C/2) are chosen: the rounding of the original ClassMix code
    (`(C + C % 2) / 2`), so an image with a single class is pasted whole and one with 3 pastes 2.
    Without `class_weights` the choice is uniform; with `class_weights` `[K]` (balanced ClassMix) the
    classes are drawn without replacement with probability proportional to their weights (as Gumbel
    top-k: the k largest `log w + Gumbel noise`, the same distribution as k successive weighted draws).
    An image with no class present (all ignored) gets an all-zero mask.

    Everything runs on the labels' device as whole-batch tensor operations: no host sync. `generator`
    must live on that device (or be None).
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B,H,W], got {tuple(labels.shape)}")
    device, b = labels.device, labels.shape[0]
    ids = labels.reshape(b, -1).long()
    present = torch.zeros(b, 256, dtype=torch.bool, device=device).scatter_(1, ids.clamp(0, 255), True)
    if 0 <= ignore_index < 256:
        present[:, ignore_index] = False
    keys = choice_keys(b, class_weights, generator, device)
    chosen = chosen_classes(present, keys)
    return chosen.gather(1, ids.clamp(0, 255)).view(labels.shape).unsqueeze(1).float()


def choice_keys(b: int, class_weights: torch.Tensor | None, generator: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """`[B,256]` random keys; the classes with the largest keys are the ones pasted."""
    u = torch.rand(b, 256, generator=generator, device=generator.device if generator else device).to(device)
    if class_weights is None:
        return u
    w = torch.zeros(256, dtype=torch.float64, device=device)
    w[:class_weights.numel()] = class_weights.detach().to(device).double().clamp_min(1e-12)
    gumbel = -torch.log(-torch.log(u.double().clamp(1e-300, 1.0 - 1e-16)))
    return w.log() + gumbel


def chosen_classes(present: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """`[B,256]` bool: per row, the ceil(C/2) present classes with the largest keys (C = present count)."""
    keys = keys.masked_fill(~present, float("-inf"))
    order = keys.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(256, device=keys.device).expand_as(order))
    half = (present.sum(1, keepdim=True) + 1) // 2
    return present & (rank < half)


def cutmix_mask(batch: int, height: int, width: int, *, proportion: float = 0.5,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One rectangle per image covering `proportion` of the area (up to rounding to whole pixels).

    As French et al.'s code: the height share is log-uniform in [proportion, 1] and the width share is
    `proportion / height share`, so the aspect is random; the position is uniform inside the image.
    """
    if not 0.0 <= proportion <= 1.0:
        raise ValueError(f"proportion must be in [0, 1], got {proportion}")
    masks = torch.zeros(batch, 1, height, width)
    if proportion == 0.0:
        return masks
    u = _uniform(generator, batch, 3)
    for b in range(batch):
        h_share = math.exp(float(u[b, 0]) * math.log(proportion))
        h = min(height, max(1, round(h_share * height)))
        w = min(width, max(1, round(proportion / h_share * width)))
        y = int(float(u[b, 1]) * (height - h + 1))
        x = int(float(u[b, 2]) * (width - w + 1))
        masks[b, 0, y:y + h, x:x + w] = 1.0
    return masks


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def cow_mask(batch: int, height: int, width: int, *, proportion: float | torch.Tensor = 0.5,
             sigma: tuple[float, float] = (4.0, 16.0),
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Cow masks (French et al. 2020).

    Per image: sigma log-uniform in `sigma`; Gaussian noise smoothed with a Gaussian of that sigma;
    1 where the smoothed noise is <= `erfinv(2p-1)*sqrt(2)*std + mean`, so a share p of pixels is 1 in
    expectation. The noise is drawn 3 sigma larger on each side and smoothed without padding, so the
    borders have the same statistics as the centre. `proportion` is a float or a `[B]` tensor (CowOut
    draws one per image).
    """
    lo, hi = sigma
    if not 0 < lo <= hi:
        raise ValueError(f"sigma range must satisfy 0 < min <= max, got {sigma}")
    props = torch.as_tensor(proportion, dtype=torch.float32).expand(batch)
    if bool(((props < 0) | (props > 1)).any()):
        raise ValueError("proportion must be in [0, 1]")
    log_sigmas = math.log(lo) + _uniform(generator, batch) * (math.log(hi) - math.log(lo))
    masks = torch.empty(batch, 1, height, width)
    for b in range(batch):
        kernel = _gaussian_kernel(float(log_sigmas[b].exp()))
        r = kernel.numel() // 2
        noise = torch.randn(1, 1, height + 2 * r, width + 2 * r, generator=generator,
                            device=generator.device if generator else None).cpu()
        smooth = F.conv2d(noise, kernel.view(1, 1, 1, -1))
        smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1))
        p = float(props[b])
        if p <= 0.0 or p >= 1.0:
            masks[b] = float(p >= 1.0)
            continue
        threshold = math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(2.0 * p - 1.0)))
        threshold = threshold * float(smooth.std()) + float(smooth.mean())
        masks[b] = (smooth[0] <= threshold).float()
    return masks
