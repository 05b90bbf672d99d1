"""Which training images keep decoded copies on disk (worker/engine/decoded.py), within the disk setting.

A copy costs 3 bytes per pixel of the image at its training resolution, plus 1 per pixel of its label
when it has one. Labeled images come first, since every training step draws from them; the others
follow in upload order until `S4AL_DECODED_CACHE_BYTES` is spent, and the rest are decoded for every
crop. Copies of files no longer in use (images gone, labels superseded by newer annotations, images
past the limit) are removed before each cycle trains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service.models import Image
from service.storage import Storage, decoded_prefix

log = logging.getLogger(__name__)


def images_with_copies(images: Sequence[Image], labeled: set[int], base_size: int | None,
                       budget_bytes: int) -> set[int]:
    """Ids of the images whose copies fit in `budget_bytes`."""
    from worker.engine.resample import training_size

    chosen, used = set(), 0
    for im in sorted(images, key=lambda im: (im.id not in labeled, im.id)):
        h, w = training_size(im.height, im.width, base_size)
        need = h * w * (4 if im.id in labeled else 3)
        if used + need <= budget_bytes:
            chosen.add(im.id)
            used += need
    return chosen


def copies_folder(storage: Storage, project_id: int) -> str:
    return str(storage.path(decoded_prefix(project_id)))


def prune_copies(folder: str, pool) -> None:
    """Remove the copies that `pool` (a FilePool) no longer reads."""
    from worker.engine.decoded import prune

    removed, freed = prune(folder, pool.cache_entries())
    if removed:
        log.info("removed %d decoded copies (%.1f MiB) from %s", removed, freed / 2**20, folder)
