"""A project with dominant-class annotation: a queued superpixel region over a cached superpixel map, with a
pre-label whose majority inside the superpixel differs from its majority over the whole box."""

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from service.masks import encode_mask_png
from service.models import Image, Project, Region
from service.storage import prelabel_key, storage_for
from tests.service.queue_helpers import Seeded
from tests.service.superpixel_helpers import make_superpixel_region, slanted_ids, write_superpixels

DOMINANT_REGION = {"kind": "superpixel", "size": 16, "annotation": "dominant"}


@dataclass
class DominantRegion:
    region_id: int
    box: tuple[int, int, int, int]  # x, y, w, h in the image
    shape: np.ndarray  # the superpixel's pixels in its box (bool)
    prelabel: np.ndarray | None  # the pre-label shown, box-sized


def split_prelabel(shape: np.ndarray) -> np.ndarray:
    """Class 2 on a little more than half of the superpixel, class 1 on the rest of the box: the box's
    majority (1) is not the superpixel's (2)."""
    arr = np.ones(shape.shape, np.uint8)
    inside = np.flatnonzero(shape.ravel())
    arr.ravel()[inside[: len(inside) * 3 // 5]] = 2
    return arr


def make_dominant(session: Session, settings, seeded: Seeded, region_index: int = 0, at=(20, 20),
                  prelabel: bool = True) -> DominantRegion:
    """Switch the seeded project to dominant-class superpixels and make region `region_index` the
    superpixel under pixel `at` (x, y) of the first image."""
    project = session.get(Project, seeded.project_id)
    project.region = dict(DOMINANT_REGION)
    session.commit()
    image = session.get(Image, seeded.image_ids[0])
    ids = slanted_ids(image.width, image.height)
    write_superpixels(settings, seeded.project_id, image.id, ids)
    rid = seeded.region_ids[region_index]
    sp = int(ids[at[1], at[0]])
    x, y, w, h = make_superpixel_region(session, rid, ids, sp)
    shape = ids[y:y + h, x:x + w] == sp
    shown = None
    if prelabel:
        shown = split_prelabel(shape)
        key = prelabel_key(seeded.project_id, seeded.cycle_id, 1000 + region_index)
        storage_for(settings).write_bytes(key, encode_mask_png(shown))
        session.get(Region, rid).prelabel_path = key
        session.commit()
    return DominantRegion(rid, (x, y, w, h), shape, shown)
