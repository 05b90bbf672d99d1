"""Training crops drawn from a `Pool` by a torch `DataLoader`: decoded lazily, in worker processes.

Each step the sampler draws `batch_size` labeled images and, once mixing starts, `unlabeled_batch_size`
pool images, each with its own crop seed; a draw is `(image index, seed)`. All randomness of a crop comes
from its seed, and the loader returns batches in sampler order, so the same config seed gives the same
crops whatever the number of loader workers (0 = in the training process).

A crop is cut first and only then rescaled. Its geometry: the image's training resolution is the whole
image resized to `base_factor` b (a long side above `base_size` comes down to it; resample.py), and the
crop is a `crop`x`crop` tile of the image scaled by `f = b x s` (s ~ U(scale)), i.e. of `round(H f)` x
`round(W f)` pixels. Its window (`CropPlan`) is read from the image at training resolution, rows and
columns only (`Pool.window`: from a decoded copy on disk when the pool has one, so a 2048x1024 PNG is
decoded once, not once per crop), and resized alone when s != 1. Labels are resized by nearest
neighbour in exact integers, so a window equals the same window of the whole label resized. With b < 1
and s != 1 the pixels are resampled twice (to b, then by s) where they used to be resampled once from
the original; where s = 1, or b = 1, a crop is the window of the same image as before (pixel values may
differ by 1/255 from an older version: PIL takes a resize box in float32). An image smaller than the
crop (after scaling) is padded at the bottom/right: label 255, `inside` False, pixels the fill colour
(ImageNet mean). Crops travel as uint8; the trainer makes floats on its device.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader, Dataset

from worker.engine.pool import IGNORE, Pool
from worker.engine.resample import base_factor, nearest_index, training_size

FILL_RGB = (124, 116, 104)  # ImageNet mean x 255: what the models' normalisation maps to 0


def default_loader_workers() -> int:
    """Cores - 1, at most 8 (setting S4AL_LOADER_WORKERS overrides it in the worker)."""
    return max(0, min((os.cpu_count() or 1) - 1, 8))


def usable_workers(requested: int) -> int:
    """`requested`, or 0 in a daemonic process (which may not start the loader's processes): the data
    is then read in the training process itself, slower but the same."""
    return 0 if multiprocessing.current_process().daemon else requested


@dataclass(frozen=True)
class CropPlan:
    """Where one crop comes from. The image at its training resolution (`size`, resample.py) is scaled
    to `scaled`; the crop's corner there is (`top`, `left`) and `ih` x `iw` of it lies inside the image."""

    size: tuple[int, int]
    scaled: tuple[int, int]
    top: int
    left: int
    ih: int
    iw: int

    @property
    def resampled(self) -> bool:
        return self.scaled != self.size

    def box(self) -> tuple[float, float, float, float]:
        """The crop's window in training-resolution pixels (left, top, right, bottom)."""
        (h, w), (sh, sw) = self.size, self.scaled
        return (self.left * w / sw, self.top * h / sh, (self.left + self.iw) * w / sw,
                (self.top + self.ih) * h / sh)

    def band(self) -> tuple[slice, slice]:
        """The rows and columns the crop reads: its window, plus the bilinear filter's reach when
        resampled (PIL widens the filter by the shrink factor)."""
        if not self.resampled:
            return slice(self.top, self.top + self.ih), slice(self.left, self.left + self.iw)
        (h, w), (sh, sw) = self.size, self.scaled
        x0, y0, x1, y1 = self.box()
        return _span(y0, y1, h, h / sh), _span(x0, x1, w, w / sw)


def _span(lo: float, hi: float, n: int, shrink: float) -> slice:
    reach = max(1.0, shrink) + 1.0  # + 1: the filter's rounding to whole pixels
    return slice(max(0, math.floor(lo - reach)), min(n, math.ceil(hi + reach)))


def plan_crop(size: tuple[int, int], scaled: tuple[int, int], crop: int, u: np.ndarray) -> CropPlan:
    """`u`: uniforms in [0, 1) for the crop's top and left."""
    sh, sw = scaled
    top = int(u[0] * (max(sh, crop) - crop + 1))
    left = int(u[1] * (max(sw, crop) - crop + 1))
    return CropPlan(tuple(size), (sh, sw), top, left, min(top + crop, sh) - top, min(left + crop, sw) - left)


def cut_crop(plan: CropPlan, image: np.ndarray, label: np.ndarray, *, crop: int, flip: bool,
             u_flip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crop from `image`/`label`: the plan's `band()` of the image at its training resolution.
    Returns uint8 `[c,c,3]`, uint8 `[c,c]`, bool `[c,c]` (False on padding); flipped when `flip` and
    `u_flip` < 0.5."""
    ih, iw = plan.ih, plan.iw
    if plan.resampled:
        rows, cols = plan.band()
        x0, y0, x1, y1 = plan.box()
        box = (x0 - cols.start, y0 - rows.start, x1 - cols.start, y1 - rows.start)
        pil = PILImage.fromarray(np.ascontiguousarray(image))
        image = np.asarray(pil.resize((iw, ih), PILImage.BILINEAR, box=box))
        (h, w), (sh, sw) = plan.size, plan.scaled
        label = label[np.ix_(nearest_index(h, sh, plan.top, plan.top + ih) - rows.start,
                             nearest_index(w, sw, plan.left, plan.left + iw) - cols.start)]
    out_img = np.empty((crop, crop, 3), np.uint8)
    out_img[:] = FILL_RGB
    out_lab = np.full((crop, crop), IGNORE, np.uint8)
    inside = np.zeros((crop, crop), bool)
    out_img[:ih, :iw], out_lab[:ih, :iw], inside[:ih, :iw] = image, label, True
    if flip and u_flip < 0.5:
        out_img, out_lab, inside = out_img[:, ::-1], out_lab[:, ::-1], inside[:, ::-1]
    return out_img, out_lab, inside


def crop_sample(image: np.ndarray, label: np.ndarray, *, crop: int, factor: float, u: np.ndarray,
                flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop of whole arrays scaled by `factor`. `u`: 3 uniforms in [0, 1) (top, left, flip)."""
    h, w = label.shape
    plan = plan_crop((h, w), (max(1, round(h * factor)), max(1, round(w * factor))), crop, u)
    rows, cols = plan.band()
    return cut_crop(plan, image[rows, cols], label[rows, cols], crop=crop, flip=flip, u_flip=u[2])


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
        h, w = self.pool.size(index)
        s = self.scale[0] + u[3] * (self.scale[1] - self.scale[0])
        factor = base_factor(h, w, self.base_size) * s
        size = training_size(h, w, self.base_size)
        plan = plan_crop(size, (max(1, round(h * factor)), max(1, round(w * factor))), self.crop, u)
        image, label = self.pool.window(index, size, *plan.band())
        img, lab, inside = cut_crop(plan, image, label, crop=self.crop, flip=self.flip, u_flip=u[2])
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
