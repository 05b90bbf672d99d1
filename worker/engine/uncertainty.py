"""Per-pixel uncertainty of a model's softmax output, the acquisition metrics (DESIGN §1, step 4).

`uncertainty_from_logits` is the fast route the scorer takes; `pixel_uncertainty` the plain definition
on probabilities that tests compare it with.
"""

from __future__ import annotations

import torch

METRICS = ("random", "least_confidence", "entropy", "margin")


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown acquisition metric {metric!r}; expected one of {', '.join(METRICS)}")


def pixel_uncertainty(probs: torch.Tensor, metric: str,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """`probs` `[B,K,H,W]` (softmax over K) -> `[B,H,W]`; higher = more worth labeling.

    entropy: -sum p ln p (0 ln 0 = 0); least_confidence: 1 - p1; margin: 1 - (p1 - p2) with p1 >= p2 the
    two largest probabilities; random: uniform [0, 1) from `generator` (same device as `probs`).
    """
    check_metric(metric)
    if probs.dim() != 4:
        raise ValueError(f"probs must be [B,K,H,W], got shape {tuple(probs.shape)}")
    if metric == "random":
        b, _, h, w = probs.shape
        return torch.rand((b, h, w), generator=generator, device=probs.device, dtype=torch.float32)
    p = probs.float()
    if metric == "entropy":
        return -torch.xlogy(p, p).sum(1)
    if metric == "least_confidence":
        return 1.0 - p.amax(1)
    if p.shape[1] < 2:  # margin with one class: p1 = 1, p2 = 0
        return torch.zeros_like(p[:, 0])
    # Two max-reductions instead of topk (several times faster on CPU); a tie for the top gives p2 = p1.
    p1 = p.amax(1, keepdim=True)
    top = p == p1
    p2 = p.masked_fill(top, -1.0).amax(1, keepdim=True)
    p2 = torch.where(top.sum(1, keepdim=True) > 1, p1, p2)
    return (1.0 - (p1 - p2)).squeeze(1)


def uncertainty_from_logits(logits: torch.Tensor, metric: str,
                            buffers: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`pixel_uncertainty(logits.softmax(1), metric)` for the model metrics, computed from the logits in
    fewer passes (one exp, no log of K planes), and the per-pixel max logit (`[B,1,H,W]`, for
    `channel_argmax`). `buffers`: a dict kept across batches to reuse the two K-plane work buffers
    (on CPU, fresh multi-MB allocations each batch cost page faults comparable to the arithmetic).
    With m the max logit, e_k = exp(l_k - m) and Z = sum e_k:
    entropy = ln Z - sum e_k (l_k - m) / Z; least_confidence = 1 - 1/Z; margin = 1 - (1 - e_2) / Z.
    """
    check_metric(metric)
    if metric == "random":
        raise ValueError("random uncertainty does not come from logits")
    # Convolutions on CPU hand back channels-last logits, on which these K-plane passes run ~2x slower
    # than on one contiguous copy (measured on unet_small's output: the copy pays for itself).
    lg = logits.float().contiguous()
    peak = lg.amax(1, keepdim=True)
    shifted = torch.sub(lg, peak, out=_buffer(buffers, "shifted", lg))
    exp = torch.exp(shifted, out=_buffer(buffers, "exp", lg))
    z = exp.sum(1)
    if metric == "entropy":  # in place: no third K-plane buffer
        return z.log() - shifted.mul_(exp).sum(1) / z, peak
    if metric == "least_confidence":
        return 1.0 - 1.0 / z, peak
    if lg.shape[1] < 2:
        return torch.zeros_like(z), peak
    top = shifted == 0
    second = shifted.masked_fill(top, float("-inf")).amax(1)
    second = torch.where(top.sum(1) > 1, torch.zeros_like(second), second)  # a tie for the top
    return 1.0 - (1.0 - second.exp()) / z, peak


def _buffer(buffers: dict | None, name: str, like: torch.Tensor) -> torch.Tensor:
    if buffers is None:
        return torch.empty_like(like)
    buf = buffers.get(name)
    if buf is None or buf.shape != like.shape or buf.device != like.device or buf.dtype != like.dtype:
        buf = buffers[name] = torch.empty_like(like)
    return buf


def channel_argmax(x: torch.Tensor, peak: torch.Tensor | None = None) -> torch.Tensor:
    """`x.argmax(1)` as uint8 for `[B,K,H,W]` (K <= 255), first index on ties; `peak` = x.amax(1, keepdim).

    On CPU, torch's argmax over the channel dimension of a contiguous tensor is slow (a strided
    reduction); K compares of contiguous planes against the max, from the last class down, are several
    times faster. On channels-last memory the channel is the contiguous dimension and argmax is fastest.
    """
    if x.is_cuda or x.shape[1] > 64 or (x.shape[1] > 1 and x.stride(1) == 1):
        return x.argmax(1).to(torch.uint8)
    peak = x.amax(1, keepdim=True) if peak is None else peak
    index = torch.zeros((x.shape[0],) + x.shape[2:], dtype=torch.uint8, device=x.device)
    for k in range(x.shape[1] - 1, -1, -1):  # the smallest tying class writes last
        index.masked_fill_(x[:, k] == peak[:, 0], k)
    return index
