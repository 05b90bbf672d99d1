"""Dominant-class annotation: a superpixel region labeled with one class for all its pixels (one click), the
cheaper annotation kind of Cai et al. (CVPR 2021) that `s4al simulate --annotation dominant` measures.

A project chooses it with `region.annotation = "dominant"` (superpixel regions only). Its superpixel
regions are then answered with a class id, never a mask; the service turns that class into the mask an
exact annotation would have sent, the class on the superpixel's own pixels and 255 on the rest of its box,
so labels, exports, review and quality read it like any other annotation. The superpixel's shape comes
from the map the worker caches per image (the same one GET /api/regions/{id}/superpixels serves).
"""

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.masks import class_in_shape
from service.models import Image, Project
from service.schemas.project import RegionSettings
from service.storage import Storage
from service.superpixels import MapMismatch, cached_map

EXACT, DOMINANT = "exact", "dominant"


class ShapeUnknown(Exception):
    """The superpixel's pixels cannot be read: no map is cached, or it does not fit the image."""


def annotation_kind(region_settings: dict | None, region_kind: str) -> str:
    """How a region of `region_kind` is annotated under a project's region settings. A grid region left
    in the queue after the project moved to superpixels stays exact."""
    if region_kind != "superpixel":
        return EXACT
    return RegionSettings.model_validate(region_settings or {}).annotation


def region_annotation(session: Session, region) -> str:
    """The annotation kind of a region (a Region row or a leased region); reads the project only for
    superpixel regions, so that leasing grid regions costs no extra query."""
    if region.kind != "superpixel":
        return EXACT
    stored = session.scalar(select(Project.region).where(Project.id == region.project_id))
    return annotation_kind(stored, region.kind)


def superpixel_shape(storage: Storage, project: Project, region, image: Image) -> np.ndarray:
    """The region's superpixel as a bool array of its box, from the map cached at the project's size."""
    try:
        ids = cached_map(storage, project, image)
    except MapMismatch as exc:
        raise ShapeUnknown(f"the {exc}") from exc
    if ids is None:
        raise ShapeUnknown(f"no superpixel map is cached for image {image.id}: the shape of region "
                           f"{region.id} is unknown")
    box = np.asarray(ids[region.y:region.y + region.h, region.x:region.x + region.w])
    shape = box == region.superpixel_id
    if shape.shape != (region.h, region.w) or not shape.any():
        raise ShapeUnknown(f"superpixel {region.superpixel_id} does not lie in the box of region {region.id} "
                           "in the cached map (was the project's superpixel size changed?)")
    return shape


def dominant_mask(storage: Storage, project: Project, region, image: Image, class_id: int) -> np.ndarray:
    """What a class id given to a dominant region stores: the class inside its superpixel, 255 outside."""
    return class_in_shape(superpixel_shape(storage, project, region, image), class_id)
