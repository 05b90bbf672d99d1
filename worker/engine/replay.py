"""Balanced ClassMix's replay buffer (S4AL, DESIGN §1 step 3) and inverse-frequency class weights.

The buffer keeps the most recent `capacity` unlabeled crops (weak view, as uint8) with their human
labels and the classes the teacher saw in them when they were pushed. The replay term draws pairs
(A, B): A with probability proportional to the largest class weight among its classes (crops showing
a tail class are pasted more often), B uniformly. The classes to paste from A are then drawn by
`classmix_mask(..., class_weights=...)`, biased toward tail classes the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

Crops = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images float [0,1], labels long, inside bool


def class_weights(labels: Iterable[np.ndarray], num_classes: int) -> torch.Tensor:
    """Inverse labeled-pixel frequency, add-one smoothed, normalised to sum 1: `w_k ∝ 1 / (n_k + 1)`.

    A class with no labeled pixel gets the largest weight; 255 (unlabeled) is not counted.
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for lab in labels:
        counts += np.bincount(np.asarray(lab).reshape(-1), minlength=256)[:num_classes]
    w = 1.0 / (counts + 1.0)
    return torch.from_numpy(w / w.sum()).float()


def weights_from_counts(counts: np.ndarray) -> torch.Tensor:
    """`class_weights` from per-class labeled pixel counts `[K]` (one pass over the pool gives them)."""
    w = 1.0 / (np.asarray(counts, dtype=np.float64) + 1.0)
    return torch.from_numpy(w / w.sum()).float()


class ReplayBuffer:
    """Ring buffer of crops on the device of the crops pushed; memory is fixed by `capacity` and the crop
    size, not by the pool. Push and sample are whole-tensor operations: no host sync."""

    def __init__(self, capacity: int, num_classes: int) -> None:
        if capacity < 2:
            raise ValueError(f"replay capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self.num_classes = num_classes
        self.size = 0
        self._next = 0
        self._images: torch.Tensor | None = None  # uint8 [N,3,H,W]
        self._labels: torch.Tensor | None = None  # uint8 [N,H,W], 255 = unlabeled
        self._inside: torch.Tensor | None = None  # bool [N,H,W], False on padding
        self._classes: torch.Tensor | None = None  # bool [N,K]: classes the teacher saw in the crop

    def __len__(self) -> int:
        return self.size

    def push(self, images: torch.Tensor, labels: torch.Tensor, inside: torch.Tensor,
             targets: torch.Tensor) -> None:
        """`images` float `[B,3,H,W]` in [0,1]; `labels`/`targets` `[B,H,W]` (human / teacher classes)."""
        images, labels, inside, targets = (t.detach() for t in (images, labels, inside, targets))
        device = images.device
        if self._images is None:
            self._images = torch.zeros(self.capacity, *images.shape[1:], dtype=torch.uint8, device=device)
            self._labels = torch.zeros(self.capacity, *labels.shape[1:], dtype=torch.uint8, device=device)
            self._inside = torch.zeros(self.capacity, *labels.shape[1:], dtype=torch.bool, device=device)
            self._classes = torch.zeros(self.capacity, self.num_classes, dtype=torch.bool, device=device)
        b = images.shape[0]
        # The last `capacity` of the batch, at the ring positions they would take one by one.
        keep = min(b, self.capacity)
        slots = torch.arange(self._next + b - keep, self._next + b, device=device) % self.capacity
        images, labels, inside, targets = (t[b - keep:] for t in (images, labels, inside, targets))
        self._images[slots] = (images * 255.0).round().clamp(0, 255).to(torch.uint8)
        self._labels[slots] = labels.to(torch.uint8)
        self._inside[slots] = inside
        flat = targets.reshape(keep, -1).long().clamp(0, self.num_classes - 1)
        present = torch.zeros(keep, self.num_classes, dtype=torch.bool, device=device)
        self._classes[slots] = present.scatter_(1, flat, True)
        self._next = (self._next + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def sample(self, n: int, weights: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Crops, Crops]:
        """n pairs -> ((x_a, y_a, inside_a), (x_b, y_b, inside_b)); x float [0,1], y long."""
        if self.size < 2:
            raise ValueError("replay buffer needs at least 2 crops to sample pairs")
        device = self._images.device
        if weights is None:
            score = torch.ones(self.size, dtype=torch.float64, device=device)
        else:
            w = weights.detach().to(device).double()
            score = (self._classes[:self.size].double() * w).amax(1).clamp_min(1e-12)
        gdev = generator.device if generator is not None else device
        a = torch.multinomial(score.to(gdev), n, replacement=True, generator=generator).to(device)
        b = torch.randint(0, self.size, (n,), generator=generator, device=gdev).to(device)
        return self._get(a), self._get(b)

    def _get(self, idx: torch.Tensor) -> Crops:
        assert self._images is not None and self._labels is not None and self._inside is not None
        return self._images[idx].float() / 255.0, self._labels[idx].long(), self._inside[idx]
