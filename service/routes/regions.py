"""A region's pixels: the image crop around it (with context), the model's pre-label, and the crop's
superpixel ids (from the map the engine caches per image)."""

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response, status
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from service.auth import CurrentToken, SessionDep
from service.dominant import region_annotation
from service.masks import encode_mask_png
from service.models import Image, Project, Region
from service.routes.deps import region_or_404
from service.routes.queue import crop_box, region_public
from service.schemas.common import RegionId
from service.schemas.project import RegionSettings
from service.schemas.queue import RegionPublic
from service.storage import Storage, StorageDep, superpixel_key

router = APIRouter(prefix="/api/regions", tags=["regions"])
MAX_CONTEXT = 1024
# Crops, pre-labels and superpixel maps of a region never change once written; let the page cache them
# privately, and never let a browser guess another type than the PNG they are.
CACHE = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}




@router.get("/{region_id}", response_model=RegionPublic)
def read_region(region_id: RegionId, session: SessionDep, token: CurrentToken) -> RegionPublic:
    region = region_or_404(session, region_id, token)
    out = region_public(region)
    out.annotation = region_annotation(session, region)
    return out


def _png(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # speed over size: this is a local, per-region crop
    return buf.getvalue()


@router.get("/{region_id}/crop", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def crop(region_id: RegionId, session: SessionDep, storage: StorageDep, token: CurrentToken,
         context: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = 0) -> Response:
    """The region plus `context` pixels on each side (clipped to the image), as PNG.

    `X-Crop-Box: x,y,w,h` says where the crop lies in the image.
    """
    region = region_or_404(session, region_id, token)
    image = session.get(Image, region.image_id)
    x, y, w, h = crop_box(region, image, context)
    with PILImage.open(storage.path(image.path)) as img:
        part = img.crop((x, y, x + w, y + h))
    if part.mode not in ("L", "RGB"):
        part = part.convert("RGB")
    headers = {**CACHE, "X-Crop-Box": f"{x},{y},{w},{h}"}
    return Response(_png(part), media_type="image/png", headers=headers)


def _prelabel_array(storage: Storage, region: Region, image: Image) -> np.ndarray:
    with PILImage.open(storage.path(region.prelabel_path)) as img:
        arr = np.array(img, dtype=np.uint8)
    if arr.shape == (region.h, region.w):
        return arr
    if arr.shape == (image.height, image.width):  # a whole-image prediction: cut the region out
        return arr[region.y:region.y + region.h, region.x:region.x + region.w]
    raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR,
                        f"pre-label of region {region.id} is {arr.shape}: neither region nor image size")


@router.get("/{region_id}/prelabel", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "No pre-label."}})
def prelabel(region_id: RegionId, session: SessionDep, storage: StorageDep,
             token: CurrentToken) -> Response:
    """The model's prediction for the region: an 8-bit PNG of class ids, exactly the region's size.

    404 when the region has no pre-label (e.g. the first cycle before any model): the page starts from
    an all-unlabeled (255) mask then.
    """
    region = region_or_404(session, region_id, token)
    if region.prelabel_path is None or not storage.exists(region.prelabel_path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"region {region_id} has no pre-label")
    image = session.get(Image, region.image_id)
    return Response(encode_mask_png(np.ascontiguousarray(_prelabel_array(storage, region, image))),
                    media_type="image/png", headers=CACHE)


def _superpixel_map_key(session: Session, image: Image) -> str:
    """Where the worker caches the image's SLIC map at the project's superpixel size."""
    project = session.get(Project, image.project_id)
    size = RegionSettings.model_validate(project.region or {}).size
    return superpixel_key(image.project_id, image.id, size)


def _superpixel_crop(storage: Storage, key: str, region: Region, image: Image,
                     context: int) -> tuple[np.ndarray, int]:
    """The crop's ids renumbered 0..n-1 in order of first appearance (few enough for 8 or 16 bits), and
    the region's own superpixel in that numbering (-1 for a grid region)."""
    ids = np.load(storage.path(key), mmap_mode="r", allow_pickle=False)
    if ids.shape != (image.height, image.width):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"superpixel map of image {image.id} is {ids.shape}, the image "
                            f"{(image.height, image.width)}")
    x, y, w, h = crop_box(region, image, context)
    part = np.asarray(ids[y:y + h, x:x + w])
    values, first, local = np.unique(part, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    local = rank[local.reshape(part.shape)]
    own = -1
    if region.kind == "superpixel":
        hit = np.flatnonzero(values == region.superpixel_id)
        own = int(rank[hit[0]]) if len(hit) else -1
    return local, own


@router.get("/{region_id}/superpixels", response_class=Response,
            responses={200: {"content": {"image/png": {}}},
                       204: {"description": "No superpixel map is cached for this image yet."},
                       409: {"description": "The cached map does not match the image's size."}})
def superpixels(region_id: RegionId, session: SessionDep, storage: StorageDep, token: CurrentToken,
                context: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = 0) -> Response:
    """The superpixel ids of the crop `…/crop?context=` returns: an 8-bit grey PNG, or 16-bit when the
    crop holds more than 256 superpixels; ids are local to the crop.

    `X-Superpixel-Region` is the region's own superpixel in those ids (-1 for a grid region), so the page
    can keep a superpixel region's mask to its exact shape. The worker writes the map the first time it
    computes an image's superpixels; until then this answers 204 and the page's superpixel tools stay off.
    """
    region = region_or_404(session, region_id, token)
    image = session.get(Image, region.image_id)
    key = _superpixel_map_key(session, image)
    if not storage.exists(key):
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers=CACHE)
    local, own = _superpixel_crop(storage, key, region, image, context)
    img = PILImage.fromarray(local.astype(np.uint8 if local.max(initial=0) < 256 else np.uint16))  # L or I;16
    x, y, w, h = crop_box(region, image, context)
    headers = {**CACHE, "X-Crop-Box": f"{x},{y},{w},{h}", "X-Superpixel-Region": str(own)}
    return Response(_png(img), media_type="image/png", headers=headers)
