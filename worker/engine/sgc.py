"""Self-attention Grad-CAM (SGC, PseudoSeg §3.2): propagate the CAM seed over hypercolumn features.

    m_hat_i = (m_i + sum_j softmax_j(<W_q h_i, W_k h_j> / sqrt(d)) m_j) . W_c

`h` is the hypercolumn (several encoder feature maps resized to the seed's resolution and stacked),
`m` the Grad-CAM seed, `W_q`/`W_k` 1x1 convolutions to a d-dimensional space (the issue's W_k/W_v),
`W_c` a 1x1 convolution that turns the propagated scores into class logits. As in the official code
(googleinterns/wss, `compute_self_att_v2`) the hypercolumn and the seed are detached, so this loss
trains only W_q, W_k and W_c; with a background class, only the foreground channels are propagated
and the background score is set to `2 - max(foreground)` (scores lie in [0, 2] after the skip
connection). The official code normalises the W_c output with batch norm; a biased 1x1 conv is used
here (batch statistics of a K-channel map from a few images are noisy, and the fusion rescales the
logits anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.gradcam import with_background


def hypercolumn(features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Resize each `[B, C_i, h_i, w_i]` map to `size` (bilinear) and stack the channels; detached."""
    maps = [f.detach() if f.shape[-2:] == size else
            F.interpolate(f.detach(), size=size, mode="bilinear", align_corners=False) for f in features]
    return torch.cat(maps, dim=1)


class SelfAttentionCAM(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, attention_dim: int = 64,
                 background: int | None = None) -> None:
        super().__init__()
        self.query = nn.Conv2d(in_channels, attention_dim, 1, bias=False)
        self.key = nn.Conv2d(in_channels, attention_dim, 1, bias=False)
        self.classify = nn.Conv2d(num_classes, num_classes, 1)  # W_c
        self.attention_dim = attention_dim
        self.background = background

    def attention(self, hyper: torch.Tensor) -> torch.Tensor:
        """`[B, N, N]` row-stochastic affinities between the N = h*w positions."""
        q = self.query(hyper).flatten(2).transpose(1, 2)  # [B, N, d]
        k = self.key(hyper).flatten(2)  # [B, d, N]
        return torch.softmax(q @ k / math.sqrt(self.attention_dim), dim=-1)

    def forward(self, hyper: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        """`hyper` `[B, C, h, w]`, `seed` `[B, K, h, w]` (CAM in [0, 1]) -> SGC logits `[B, K, h, w]`."""
        hyper, seed = hyper.detach(), seed.detach()
        b, k, h, w = seed.shape
        if hyper.shape[-2:] != (h, w):
            raise ValueError(f"hypercolumn is {tuple(hyper.shape[-2:])}, seed is {(h, w)}")
        propagated = (self.attention(hyper) @ seed.flatten(2).transpose(1, 2)).transpose(1, 2)
        score = seed + propagated.reshape(b, k, h, w)
        score = with_background(score, self.background, ceiling=2.0)
        return self.classify(score)


def sgc_loss(sgc_logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of the SGC map (upsampled to the labels' size) on the labeled pixels only."""
    logits = F.interpolate(sgc_logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore_index)
