"""Batched Grad-CAM for every class of a multi-label head (Selvaraju et al. 2017, as PseudoSeg uses it).

For class c: `alpha_c = mean_{ij} d logit_c / d A_ij` (one weight per feature channel),
`CAM_c = ReLU(sum_k alpha_ck A_k)`, then each map is divided by its own spatial maximum (PseudoSeg
normalises to [0, 1], dividing by zero gives zero) and multiplied by the class mask (the classes the
image is believed to contain). All classes come from one batched backward pass
(`autograd.grad(..., is_grads_batched=True)`), not K separate ones.

Differentiable: with `create_graph=True` the maps carry gradients back to the features and the head's
weights. PseudoSeg itself stops the gradient of its CAMs (they are only a seed for the pseudo-label
and the self-attention module); the trainer does the same, the option is there for tests and for
anyone who wants to train through it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def grad_cam(features: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
             class_mask: torch.Tensor | None = None, *, create_graph: bool = False) -> torch.Tensor:
    """`features` `[B, C, h, w]`, `head` maps them to `[B, K]` logits -> CAMs `[B, K, h, w]` in [0, 1].

    If `features` has no graph (e.g. it came from a `no_grad` teacher pass) a detached leaf copy is
    used, so this also works inside `torch.no_grad()`.
    """
    with torch.enable_grad():
        source = features if features.requires_grad else features.detach().requires_grad_(True)
        logits = head(source)
        b, k = logits.shape
        # grad_outputs[c] selects class c in every image: one vmapped backward gives all K gradients.
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
        selectors = eye[:, None, :].expand(k, b, k)
        (grads,) = torch.autograd.grad(logits, source, grad_outputs=selectors, is_grads_batched=True,
                                       create_graph=create_graph)
    weights = grads.mean(dim=(-2, -1))  # [K, B, C]
    cams = torch.relu(torch.einsum("kbc,bchw->bkhw", weights, source))
    if not create_graph:
        cams = cams.detach()
    peak = cams.amax(dim=(-2, -1), keepdim=True)
    cams = torch.where(peak > 0, cams / peak.clamp_min(1e-12), torch.zeros_like(cams))
    if class_mask is not None:
        cams = cams * class_mask.to(cams)[:, :, None, None]
    return cams


def with_background(cams: torch.Tensor, background: int | None, ceiling: float = 1.0) -> torch.Tensor:
    """Fill the background channel with `ceiling - max(other channels)` (PseudoSeg: 1 - max CAM for the
    seed, 2 - max after the self-attention skip connection). No-op when there is no background class."""
    if background is None:
        return cams
    k = cams.shape[1]
    others = [c for c in range(k) if c != background]
    bg = ceiling - cams[:, others].amax(dim=1)
    out = cams.clone()
    out[:, background] = bg
    return out
