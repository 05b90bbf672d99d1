"""Training crops drawn from a `Pool` by a torch `DataLoader`: decoded lazily, in worker processes.

Each step the sampler draws `batch_size` labeled images and, once mixing starts, `unlabeled_batch_size`
pool images, each with its own crop seed; a draw is `(image index, seed)`. All randomness of a crop comes
from its seed, and the loader returns batches in sampler order, so the same config seed gives the same
crops whatever the number of loader workers (0 = in the training process).

A crop is cut first and only then rescaled: the window that becomes a `crop`x`crop` tile after scaling by
`f = base factor x s` (s ~ U(scale); the base factor brings a long side above `base_size` down to it) is
taken from the original image and resized alone, so a 2048x1024 image is never rescaled whole. An image
smaller than the crop (after scaling) is padded at the bottom/right: label 255, `inside` False, pixels
the fill colour (ImageNet mean). Crops travel as uint8; the trainer makes floats on its device.
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader, Dataset

from worker.engine.pool import IGNORE, Pool

FILL_RGB = (124, 116, 104)  # ImageNet mean x 255: what the models' normalisation maps to 0


def default_loader_workers() -> int:
    """Cores - 1, at most 8 (setting S4AL_LOADER_WORKERS overrides it in the worker)."""
    return max(0, min((os.cpu_count() or 1) - 1, 8))


def usable_workers(requested: int) -> int:
    """`requested`, or 0 in a daemonic process (which may not start the loader's processes): the data
    is then read in the training process itself, slower but the same."""
    return 0 if multiprocessing.current_process().daemon else requested


def base_factor(height: int, width: int, base_size: int | None) -> float:
    """The resize that brings the long side down to `base_size` (never up); 1 without a base size."""
    long = max(height, width)
    return 1.0 if base_size is None or long <= base_size else base_size / long


def crop_sample(image: np.ndarray | PILImage.Image, label: np.ndarray, *, crop: int, factor: float,
                u: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop. `u`: 3 uniforms in [0, 1) (top, left, flip). Returns uint8 `[c,c,3]`, uint8 `[c,c]`,
    bool `[c,c]` (False on padding)."""
    h, w = label.shape
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))  # the image's size after scaling
    top = int(u[0] * (max(sh, crop) - crop + 1))
    left = int(u[1] * (max(sw, crop) - crop + 1))
    ih, iw = min(top + crop, sh) - top, min(left + crop, sw) - left  # the part inside the image
    if (sh, sw) == (h, w):  # no scaling: a plain slice
        img = np.asarray(image)[top:top + ih, left:left + iw]
        lab = label[top:top + ih, left:left + iw]
    else:
        box = (left * w / sw, top * h / sh, (left + iw) * w / sw, (top + ih) * h / sh)
        pil = image if isinstance(image, PILImage.Image) else PILImage.fromarray(image)
        img = np.asarray(pil.resize((iw, ih), PILImage.BILINEAR, box=box))
        lab = np.asarray(PILImage.fromarray(label).resize((iw, ih), PILImage.NEAREST, box=box))
    out_img = np.empty((crop, crop, 3), np.uint8)
    out_img[:] = FILL_RGB
    out_lab = np.full((crop, crop), IGNORE, np.uint8)
    inside = np.zeros((crop, crop), bool)
    out_img[:ih, :iw], out_lab[:ih, :iw], inside[:ih, :iw] = img, lab, True
    if flip and u[2] < 0.5:
        out_img, out_lab, inside = out_img[:, ::-1], out_lab[:, ::-1], inside[:, ::-1]
    return out_img, out_lab, inside


class CropDataset(Dataset):
    """`dataset[(index, seed)]` -> (uint8 image `[3,c,c]`, uint8 label `[c,c]`, bool inside, index)."""

    def __init__(self, pool: Pool, *, crop: int, scale: tuple[float, float], flip: bool,
                 base_size: int | None) -> None:
        self.pool, self.crop, self.scale, self.flip, self.base_size = pool, crop, scale, flip, base_size

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, draw: tuple[int, int]):
        index, seed = draw
        rng = np.random.default_rng(seed)
        u = rng.random(4)
        image, label = self.pool.image(index), self.pool.label(index)
        h, w = label.shape
        s = self.scale[0] + u[3] * (self.scale[1] - self.scale[0])
        factor = base_factor(h, w, self.base_size) * s
        img, lab, inside = crop_sample(image, label, crop=self.crop, factor=factor, u=u[:3], flip=self.flip)
        return (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(lab)), torch.from_numpy(np.ascontiguousarray(inside)),
                index)


class StepDraws:
    """Batch sampler: per step, `batch_size` labeled draws then (from `warmup` on, when mixing)
    `unlabeled_batch_size` draws from the whole pool; `iterations` steps from one seeded generator."""

    def __init__(self, labeled: list[int], pool_size: int, *, batch_size: int, unlabeled_batch_size: int,
                 iterations: int, warmup: int, mixing: bool, seed: int) -> None:
        self.labeled, self.pool_size = labeled, pool_size
        self.batch_size, self.unlabeled_batch_size = batch_size, unlabeled_batch_size
        self.iterations, self.warmup, self.mixing, self.seed = iterations, warmup, mixing, seed

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        for step in range(self.iterations):
            picks = [self.labeled[int(i)] for i in torch.randint(len(self.labeled), (self.batch_size,),
                                                                   generator=gen)]
            if self.mixing and step >= self.warmup:
                picks += torch.randint(self.pool_size, (self.unlabeled_batch_size,), generator=gen).tolist()
            seeds = torch.randint(2**62, (len(picks),), generator=gen).tolist()
            yield list(zip(picks, seeds, strict=True))


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    images, labels, inside, index = zip(*items, strict=True)
    return torch.stack(images), torch.stack(labels), torch.stack(inside), list(index)


def crop_loader(pool: Pool, draws: StepDraws, *, crop: int, scale: tuple[float, float], flip: bool,
                base_size: int | None, workers: int, device: torch.device) -> DataLoader:
    dataset = CropDataset(pool, crop=crop, scale=scale, flip=flip, base_size=base_size)
    workers = usable_workers(workers)
    extra = {"prefetch_factor": 4, "persistent_workers": False} if workers > 0 else {}
    return DataLoader(dataset, batch_sampler=draws, num_workers=workers, collate_fn=collate,
                      pin_memory=device.type == "cuda", **extra)


def to_device(batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """uint8 crops -> float images in [0, 1], long labels, bool inside, on `device` (async from pinned)."""
    images, labels, inside, index = batch
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, labels.to(device, non_blocking=True).long(), inside.to(device, non_blocking=True), index
