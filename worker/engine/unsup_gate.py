"""The unsupervised term's safeguard: the teacher's confidence, measured instead of self-reported.

S4AL weights each pseudo-labeled pixel by the teacher's max probability p and each mixed image by
eta = share of its pixels with p > tau. A teacher trained on few labels is often confidently wrong:
p > tau on most pixels, so eta is near 1 and the student is pulled toward the teacher's errors
(minority classes drift to the majority one, and the teacher, an average of the student, follows).

The gate holds back a share of the labeled pixels (whole blocks, so that a held pixel's neighbours are
not in the training set either) from training, and measures on them, every few steps, how often the
teacher's pseudo-label is right for each predicted class and confidence level: `precision[c, bin]`.
Each pseudo-labeled pixel's confidence becomes that measured precision, so both the per-pixel weight
and eta follow the teacher's real accuracy: while it is poor the unsupervised term is small (the model
trains as supervised-only would), and it opens class by class as the teacher earns it. With `tau`, a
pseudo-label whose measured precision is not above tau counts for nothing rather than for its
precision: with few labels the majority class is predicted right 85-95% of the time even on the
minority classes' pixels it swallows, and a weight of 0.9 on those pixels taught the student to
swallow them too (fashion-scenes at 2% labeled: 10.5 mIoU with the soft weight, 11.2 with the cut,
11.6 supervised-only; 6 seeds). Human labels keep confidence 1. With no held-back pixel there is
nothing to measure and the term stays closed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from service.masks import IGNORE
from worker.engine.batching import same_size_runs
from worker.engine.pool import Pool
from worker.engine.resample import nearest_index, resize_image, resize_label, training_size

GATES = ("measured", "off")
# Confidence bins: finer near 1, where tau sits.
EDGES = torch.tensor([0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.999])
PRIOR = 4.0  # pseudo-count of wrong pixels added to every bin: few measurements cannot open a bin


def hold_out(labels: Sequence[np.ndarray], fraction: float, block: int,
             seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split labeled pixels into (train labels, held labels), both full-size with 255 elsewhere.

    The unit is a `block`x`block` grid cell of an image that holds a label; a share `fraction` of
    those cells (rounded, at least one when there are two or more) is held back, chosen by `seed`.
    """
    rng = np.random.default_rng(seed)
    cells = []
    for i, lab in enumerate(labels):
        h, w = lab.shape
        for y in range(0, h, block):
            for x in range(0, w, block):
                if (lab[y:y + block, x:x + block] != IGNORE).any():
                    cells.append((i, y, x))
    n = round(fraction * len(cells)) if len(cells) >= 2 else 0
    n = min(max(n, 1 if len(cells) >= 2 and fraction > 0 else 0), len(cells) - 1) if cells else 0
    train = [lab.copy() for lab in labels]
    held = [np.full(lab.shape, IGNORE, np.uint8) for lab in labels]
    for j in rng.permutation(len(cells))[:n]:
        i, y, x = cells[j]
        held[i][y:y + block, x:x + block] = labels[i][y:y + block, x:x + block]
        train[i][y:y + block, x:x + block] = IGNORE
    return train, held


def held_cells(label: np.ndarray, fraction: float, block: int, seed: int, index: int) -> np.ndarray:
    """`[ceil(H/block), ceil(W/block)]` bool: the cells of image `index` held back. Each `block`x`block`
    cell holding a label is held with probability `fraction`, drawn from (seed, index), so any process
    gets the same cells without seeing the others. An image may lose all its labeled cells: with sparse
    labels (one labeled cell in most images) sparing one cell per image would hold back almost nothing,
    and the gate would measure on a few hundred pixels (`HeldOutPool.split` tells the trainer which
    images still have training labels)."""
    h, w = label.shape
    gh, gw = -(-h // block), -(-w // block)
    padded = np.full((gh * block, gw * block), IGNORE, np.uint8)
    padded[:h, :w] = label
    labeled = (padded.reshape(gh, block, gw, block) != IGNORE).any(axis=(1, 3))
    return (np.random.default_rng([seed, index]).random((gh, gw)) < fraction) & labeled


def _in_cells(cells: np.ndarray, block: int, label: np.ndarray) -> np.ndarray:
    """HxW bool: the labeled pixels inside the held cells."""
    h, w = label.shape
    return np.repeat(np.repeat(cells, block, axis=0), block, axis=1)[:h, :w] & (label != IGNORE)


class HeldOutPool(Pool):
    """A pool whose labels lack the held-back blocks (`label`, `window`); `held` gives those blocks
    alone. Read image by image, so nothing of the pool is kept but each image's held cells (1 bit per
    cell), computed from its whole label the first time a process needs them; picklable for loader
    processes."""

    def __init__(self, pool: Pool, fraction: float, block: int = 16, seed: int = 0) -> None:
        self.pool, self.fraction, self.block, self.seed = pool, fraction, block, seed
        self._cells: dict[int, tuple[tuple[int, int], np.ndarray]] = {}  # index -> (shape, packed bits)

    def __len__(self) -> int:
        return len(self.pool)

    def image(self, i: int) -> np.ndarray:
        return self.pool.image(i)

    def size(self, i: int) -> tuple[int, int]:
        return self.pool.size(i)

    def name(self, i: int) -> str:
        return self.pool.name(i)

    def has_label(self, i: int) -> bool:
        return self.pool.has_label(i)

    def superpixel_cache(self, i: int) -> str | None:
        return self.pool.superpixel_cache(i)

    def label(self, i: int) -> np.ndarray:
        label = self.pool.label(i)
        out = label.copy()
        out[self._held(i, label)] = IGNORE
        return out

    def held(self, i: int) -> np.ndarray:
        label = self.pool.label(i)
        out = np.full(label.shape, IGNORE, np.uint8)
        mask = self._held(i, label)
        out[mask] = label[mask]
        return out

    def window(self, i: int, size: tuple[int, int], rows: slice,
               cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """The inner pool's window with the held pixels blanked: each pixel of the resized label is
        held when the original pixel it was taken from is (nearest neighbour maps one to the other)."""
        image, label = self.pool.window(i, size, rows, cols)
        if not self.pool.has_label(i):
            return image, label
        (h, w), cells = self.pool.size(i), self._held_cells(i)
        ys = nearest_index(h, size[0], rows.start, rows.stop) // self.block
        xs = nearest_index(w, size[1], cols.start, cols.stop) // self.block
        return image, np.where(cells[np.ix_(ys, xs)] & (label != IGNORE), np.uint8(IGNORE), label)

    def split(self, i: int) -> tuple[bool, bool]:
        """(training keeps a labeled pixel of image `i`, the gate has a held pixel of it): one read of its
        label, whose held cells are then remembered (and travel with the pool to loader processes)."""
        if not self.pool.has_label(i):
            return False, False
        label = self.pool.label(i)
        held = self._held(i, label)
        return bool(((label != IGNORE) & ~held).any()), bool(held.any())

    def _held_cells(self, i: int, label: np.ndarray | None = None) -> np.ndarray:
        if i not in self._cells:
            label = self.pool.label(i) if label is None else label
            cells = held_cells(label, self.fraction, self.block, self.seed, i)
            self._cells[i] = (cells.shape, np.packbits(cells, axis=None))
        shape, bits = self._cells[i]
        return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)

    def _held(self, i: int, label: np.ndarray) -> np.ndarray:
        return _in_cells(self._held_cells(i, label), self.block, label)


def gate_sample(pool: HeldOutPool, candidates: Sequence[int], max_images: int, base: int | None,
                window: int | None = None,
                max_pixels: int | None = None) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Up to `max_images` images with held pixels (and, past the first, `max_pixels` pixels in all), in
    candidate order, as uint8 `[3,H,W]` tensors with
    their held labels, resized so that the long side is at most `base` (the resolution the model trains
    at), then cut to a `window`x`window` tile centred on the held pixels (None: whole images). The tile
    keeps the measurement's cost that of a training batch whatever the image size: a 2048x1024 image
    measured whole costs as much as hundreds of 64 px training crops, every time the gate measures."""
    images, held, pixels = [], [], 0
    for i in candidates:
        label = pool.held(i)
        if not (label != IGNORE).any():
            continue
        image = pool.image(i)
        size = training_size(*label.shape, base)
        image, label = resize_image(image, size), resize_label(label, size)
        if window is not None:
            top, left = held_window(label, window)
            image = image[top:top + window, left:left + window]
            label = label[top:top + window, left:left + window]
            if not (label != IGNORE).any():
                continue
        images.append(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous())
        held.append(np.array(label, dtype=np.uint8))  # a writable copy (torch.from_numpy needs one)
        pixels += label.size
        if len(images) >= max_images or (max_pixels is not None and pixels >= max_pixels):
            break
    return images, held


def held_window(label: np.ndarray, window: int) -> tuple[int, int]:
    """(top, left) of the `window`x`window` tile (clipped to the image) centred on the held pixels' box."""
    ys, xs = np.nonzero(label != IGNORE)
    h, w = label.shape

    def start(lo: int, hi: int, size: int) -> int:
        return int(min(max((lo + hi + 1) // 2 - window // 2, 0), max(size - window, 0)))

    return start(ys.min(), ys.max(), h), start(xs.min(), xs.max(), w)


def bin_of(confidence: torch.Tensor) -> torch.Tensor:
    """Index 0..len(EDGES) of each confidence: bin b holds EDGES[b-1] < p <= EDGES[b]."""
    return torch.bucketize(confidence, EDGES.to(confidence.device))


def precision_table(pred: torch.Tensor, confidence: torch.Tensor, truth: torch.Tensor, num_classes: int,
                    prior: float = PRIOR) -> torch.Tensor:
    """`[K, bins]` share of right pseudo-labels among held pixels predicted c at each confidence level,
    counting `prior` extra wrong pixels per bin (an unmeasured bin is 0)."""
    keep = truth != IGNORE
    pred, b, truth = pred[keep].long(), bin_of(confidence[keep]), truth[keep].long()
    bins = len(EDGES) + 1
    index = pred * bins + b
    total = torch.bincount(index, minlength=num_classes * bins).float()
    right = torch.bincount(index[pred == truth], minlength=num_classes * bins).float()
    return (right / (total + prior)).view(num_classes, bins)


class UnsupGate:
    """Measures the teacher on held-back labeled pixels; `confidence()` maps its pseudo-labels' confidence
    to the measured precision. `measure` every `every` steps from `start` (the end of the warm-up)."""

    def __init__(self, images: Sequence[torch.Tensor], held: Sequence[np.ndarray], num_classes: int, *,
                 start: int, every: int, max_images: int = 128, batch_size: int = 32,
                 tau: float | None = None) -> None:
        counts = [int((h != IGNORE).sum()) for h in held]
        order = sorted((i for i, c in enumerate(counts) if c), key=lambda i: -counts[i])[:max_images]
        self.images = [images[i] for i in order]  # uint8 [3,H,W]
        self.held = [torch.from_numpy(held[i]) for i in order]
        self.pixels = sum(counts[i] for i in order)
        self.num_classes, self.batch_size = num_classes, batch_size
        self.start, self.every = start, max(1, every)
        self.tau = tau  # None: every pseudo-label weighs its measured precision
        self.table = torch.zeros(num_classes, len(EDGES) + 1)

    def due(self, step: int) -> bool:
        return bool(self.images) and step >= self.start and (step - self.start) % self.every == 0

    @torch.no_grad()
    def measure(self, teacher: nn.Module, device: torch.device) -> torch.Tensor:
        """Run the teacher on the held images (same-size runs batched) and refresh the table."""
        preds, confs, truths = [], [], []
        for i, j in same_size_runs([im.shape for im in self.images], self.batch_size):
            x = torch.stack(self.images[i:j]).to(device).float().div_(255.0)
            conf, pred = teacher(x).float().softmax(1).max(1)
            preds.append(pred.cpu().flatten())
            confs.append(conf.cpu().flatten())
            truths.append(torch.stack(self.held[i:j]).flatten())
        self.table = precision_table(torch.cat(preds), torch.cat(confs), torch.cat(truths), self.num_classes)
        return self.table

    def confidence(self, target: torch.Tensor, confidence: torch.Tensor, human: torch.Tensor) -> torch.Tensor:
        """The measured precision of each pixel's (class, confidence level); human-labeled pixels keep 1."""
        table = self.table.to(confidence.device)
        measured = table[target.long().clamp(0, self.num_classes - 1), bin_of(confidence)]
        if self.tau is not None:
            measured = torch.where(measured > self.tau, measured, torch.zeros_like(measured))
        return torch.where(human, torch.ones_like(confidence), measured)

    def summary(self) -> dict[str, float]:
        """The share of the top bin's precision per class, for the training record."""
        return {"gate_top": float(self.table[:, -1].mean()), "gate_pixels": float(self.pixels)}
