"""PseudoSeg's calibrated fusion of the decoder prediction p_hat and the SGC map m_hat (§3.3):

    F(p_hat, m_hat) = Sharpen(gamma * Softmax(p_hat / N) + (1 - gamma) * Softmax(m_hat / N), T)
    Sharpen(a, T)_i = a_i^(1/T) / sum_j a_j^(1/T)

Our reading of N = Norm(p_hat, m_hat), from the official code (googleinterns/wss, `train_wss.py`,
flag `logit_norm`): both logit tensors are concatenated and divided by one scalar, their joint
root-mean-square `sqrt(mean(concat(p_hat, m_hat)^2) + 1e-8)` over every element (images, classes,
pixels) of the batch. One scalar for both keeps their relative confidence (the point of the
calibration: the two sources have very different logit scales) while putting them on a common,
unit scale. The paper writes "Norm"; the code's RMS is the L2 norm divided by sqrt(#elements).
Defaults from the code: gamma = 0.5 (the plain average, `pseudo_src=avg`), T = 0.5.

Classes known to be absent from an image (its tags, or a fully labeled image) get probability 0
before sharpening (Sharpen renormalises); a pixel whose every class is ruled out keeps its unmasked
distribution rather than becoming 0/0.
"""

from __future__ import annotations

import torch


def logit_norm(p_logits: torch.Tensor, m_logits: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The joint RMS of both logit tensors: a 0-d tensor (see the module docstring)."""
    both = torch.cat([p_logits.reshape(-1), m_logits.reshape(-1)])
    return torch.sqrt(both.square().mean() + eps)


def sharpen(probs: torch.Tensor, temperature: float, dim: int = 1) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # Divide by the largest entry first: the powers then lie in [0, 1], the largest is 1 and the sum
    # cannot underflow to 0; zeros (absent classes) stay exactly 0.
    peak = probs.amax(dim=dim, keepdim=True)
    powered = (probs / peak.clamp_min(torch.finfo(probs.dtype).tiny)) ** (1.0 / temperature)
    total = powered.sum(dim=dim, keepdim=True)
    return torch.where(total > 0, powered / total.clamp_min(torch.finfo(probs.dtype).tiny), probs)


def fuse(p_logits: torch.Tensor, m_logits: torch.Tensor, *, gamma: float = 0.5, temperature: float = 0.5,
         absent: torch.Tensor | None = None) -> torch.Tensor:
    """Fused, sharpened soft targets `[B, K, H, W]` from two `[B, K, H, W]` logit maps.

    `absent`: optional `[B, K]` bool, classes known absent from each image.
    """
    if p_logits.shape != m_logits.shape:
        raise ValueError(f"p_hat {tuple(p_logits.shape)} and m_hat {tuple(m_logits.shape)} differ")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    n = logit_norm(p_logits, m_logits)
    probs = gamma * torch.softmax(p_logits / n, dim=1) + (1 - gamma) * torch.softmax(m_logits / n, dim=1)
    if absent is not None:
        probs = mask_absent(probs, absent)
    return sharpen(probs, temperature, dim=1)


def mask_absent(probs: torch.Tensor, absent: torch.Tensor) -> torch.Tensor:
    """Zero the absent classes of `[B, K, H, W]` probabilities (pixels left with nothing keep theirs)."""
    keep = (~absent.to(probs.device)).to(probs)[:, :, None, None]
    masked = probs * keep
    empty = masked.sum(dim=1, keepdim=True) <= 0
    return torch.where(empty, probs, masked)
