"""A superpixel map written where the worker caches it, and a superpixel region made from one of its ids."""

import io

import numpy as np
from sqlalchemy.orm import Session

from service.db import session_factory
from service.models import Project, Region
from service.schemas.project import RegionSettings
from service.storage import storage_for, superpixel_key


def slanted_ids(w: int, h: int) -> np.ndarray:
    """Superpixel-like ids of an image: slanted blocks (not boxes), ~9x12 px each."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x + y // 2) // 9 + 20 * (y // 12)).astype(np.uint16)


def write_superpixels(settings, project_id: int, image_id: int, ids: np.ndarray) -> None:
    """Cache `ids` as the worker does, at the project's superpixel size."""
    with session_factory(settings.sqlalchemy_url)() as session:
        size = RegionSettings.model_validate(session.get(Project, project_id).region or {}).size
    buf = io.BytesIO()
    np.save(buf, ids)
    storage_for(settings).write_bytes(superpixel_key(project_id, image_id, size), buf.getvalue())


def make_superpixel_region(session: Session, region_id: int, ids: np.ndarray,
                           sp: int) -> tuple[int, int, int, int]:
    """Turn region `region_id` into superpixel `sp` of `ids` (its box is the superpixel's bounding box)."""
    ys, xs = np.nonzero(ids == sp)
    box = int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    region = session.get(Region, region_id)
    region.kind, region.superpixel_id = "superpixel", sp
    region.x, region.y, region.w, region.h = box
    region.prelabel_path = None  # a pre-label of the old box would not fit
    session.commit()
    return box
