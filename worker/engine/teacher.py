"""Mean teacher (Tarvainen & Valpola 2017) as used by S4AL, ClassMix and French et al."""

import copy

import torch
from torch import nn


class EMATeacher:
    """An exponential moving average of a student's weights.

    `update(step)` uses momentum `min(1 - 1/(step+1), momentum)`: at step 0 the teacher becomes the
    student, early steps average uniformly, and later ones settle at `momentum`. Buffers (BatchNorm
    running statistics) are copied, not averaged.
    """

    def __init__(self, student: nn.Module, momentum: float = 0.99) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1), got {momentum}")
        self.student = student
        self.momentum = momentum
        self.module = copy.deepcopy(student).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, step: int) -> float:
        m = min(1.0 - 1.0 / (step + 1), self.momentum)
        for t, s in zip(self.module.parameters(), self.student.parameters(), strict=True):
            t.mul_(m).add_(s.detach(), alpha=1.0 - m)
        for t, s in zip(self.module.buffers(), self.student.buffers(), strict=True):
            t.copy_(s)
        return m
