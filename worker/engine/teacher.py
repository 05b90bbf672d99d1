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
        self._params: tuple[list, list] | None = None
        self._buffers: tuple[list, list] = ([], [])

    @torch.no_grad()
    def update(self, step: int) -> float:
        m = min(1.0 - 1.0 / (step + 1), self.momentum)
        if self._params is None:
            self._params = ([p for p in self.module.parameters()], [p for p in self.student.parameters()])
            self._buffers = ([b for b in self.module.buffers()], [b for b in self.student.buffers()])
        teacher, student = self._params
        # t := m t + (1 - m) s in one fused kernel per dtype/device group, with no host sync.
        torch._foreach_lerp_(teacher, student, 1.0 - m)
        if self._buffers[0]:
            torch._foreach_copy_(self._buffers[0], self._buffers[1])
        return m
