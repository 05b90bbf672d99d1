"""Superpixels of a crop, computed on demand for a grid region (the page's superpixel tools).

The engine caches one SLIC map per image only for projects whose regions are superpixels. A grid
project gets its painting aid here instead, for the crop the page shows, when the page asks: only the
regions annotators open pay for it, where caching maps of every image in the worker would cost every
cycle of every grid project a SLIC pass over its whole pool. The cost is bounded: the crop is bounded
by the route (region plus at most MAX_CONTEXT a side), and a crop larger than MAX_PIXELS is segmented at
a coarser stride and scaled back, so one request does at most ~MAX_PIXELS of SLIC work (~0.2 s on one
core). SLIC is deterministic, so the same crop always gets the same ids (the page may fetch it twice).

The superpixels are a fraction of the region's side (SUPERPIXELS_PER_SIDE across it), small enough to
paint inside a region with. scikit-image comes with the worker extra that the service's image installs;
without it the route answers as when nothing is cached.
"""

import math

import numpy as np

from service.schemas.project import RegionSettings
from service.storage import Storage, superpixel_key

MAX_PIXELS = 1 << 18  # 512×512: what one request may segment at full resolution
SUPERPIXELS_PER_SIDE = 4  # about 4×4 superpixels in a region
MIN_SIDE = 6  # px: smaller superpixels are no faster to paint with than the brush


class MapMismatch(ValueError):
    """A cached superpixel map whose size is not its image's."""


def cached_map(storage: Storage, project, image) -> np.ndarray | None:
    """The image's SLIC map as the worker cached it at the project's superpixel size (memory-mapped, so a
    crop reads only its rows), or None when none is cached; MapMismatch when it does not fit the image."""
    size = RegionSettings.model_validate(project.region or {}).size
    key = superpixel_key(project.id, image.id, size)
    if not storage.exists(key):
        return None
    ids = np.load(storage.path(key), mmap_mode="r", allow_pickle=False)
    if ids.shape != (image.height, image.width):
        raise MapMismatch(f"superpixel map of image {image.id} is {ids.shape}, the image "
                          f"{(image.height, image.width)}")
    return ids


def available() -> bool:
    try:
        import skimage.segmentation  # noqa: F401
    except ImportError:
        return False
    return True


def superpixel_side(region_w: int, region_h: int) -> int:
    """The mean superpixel side for a region of this size."""
    return max(MIN_SIDE, round(max(region_w, region_h) / SUPERPIXELS_PER_SIDE))


def crop_superpixels(rgb: np.ndarray, side: int) -> np.ndarray:
    """SLIC ids (0..n-1, int32) of an HxWx3 uint8 crop, superpixels of about `side` px; at most
    MAX_PIXELS are segmented (a larger crop at a stride, its ids repeated back to full size)."""
    from skimage.segmentation import relabel_sequential, slic

    h, w = rgb.shape[:2]
    stride = max(1, math.ceil(math.sqrt(h * w / MAX_PIXELS)))
    small = rgb[::stride, ::stride]
    n = max(1, math.ceil(small.shape[0] * small.shape[1] * stride * stride / (side * side)))
    ids = slic(small, n_segments=n, compactness=10.0, start_label=0, channel_axis=-1)
    if stride > 1:
        ids = np.repeat(np.repeat(ids, stride, axis=0), stride, axis=1)[:h, :w]
    return relabel_sequential(ids.astype(np.int32))[0]
