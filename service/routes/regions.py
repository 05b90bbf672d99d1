"""A region's pixels: the image crop around it (with context), the model's pre-label, and the crop's
superpixel ids (from the map the engine caches per image, or computed for the crop of a grid region)."""

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response, status
from PIL import Image as PILImage

from service.auth import CurrentToken, SessionDep
from service.dominant import region_annotation
from service.masks import encode_mask_png
from service.models import Image, Project, Region
from service.routes.deps import region_or_404
from service.routes.queue import crop_box, region_public
from service.schemas.common import RegionId
from service.schemas.queue import RegionPublic
from service.storage import Storage, StorageDep
from service.superpixels import MapMismatch, available, cached_map, crop_superpixels, superpixel_side

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


def _renumber(part: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids renumbered 0..n-1 in order of first appearance (few enough for 8 or 16 bits); with the ids
    found (sorted) and each one's new number."""
    values, first, local = np.unique(part, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[local.reshape(part.shape)], values, rank


def _computed_crop(storage: Storage, region: Region, image: Image, context: int) -> np.ndarray:
    """SLIC of the crop itself (service/superpixels.py), renumbered as a cached map's crop."""
    x, y, w, h = crop_box(region, image, context)
    with PILImage.open(storage.path(image.path)) as img:
        rgb = np.asarray(img.crop((x, y, x + w, y + h)).convert("RGB"))
    return _renumber(crop_superpixels(rgb, superpixel_side(region.w, region.h)))[0]


def _superpixel_crop(ids: np.ndarray, region: Region, image: Image, context: int) -> tuple[np.ndarray, int]:
    """The cached map's ids in the crop, renumbered (`_renumber`), and the region's own superpixel in that
    numbering (-1 for a grid region)."""
    x, y, w, h = crop_box(region, image, context)
    local, values, rank = _renumber(np.asarray(ids[y:y + h, x:x + w]))
    own = -1
    if region.kind == "superpixel":
        hit = np.flatnonzero(values == region.superpixel_id)
        own = int(rank[hit[0]]) if len(hit) else -1
    return local, own


@router.get("/{region_id}/superpixels", response_class=Response,
            responses={200: {"content": {"image/png": {}}},
                       204: {"description": "A superpixel region whose image has no cached map yet."},
                       409: {"description": "The cached map does not match the image's size."}})
def superpixels(region_id: RegionId, session: SessionDep, storage: StorageDep, token: CurrentToken,
                context: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = 0) -> Response:
    """The superpixel ids of the crop `…/crop?context=` returns: an 8-bit grey PNG, or 16-bit when the
    crop holds more than 256 superpixels; ids are local to the crop.

    `X-Superpixel-Region` is the region's own superpixel in those ids (-1 for a grid region), so the page
    can keep a superpixel region's mask to its exact shape. The ids come from the map the worker caches
    per image (`X-Superpixel-Source: cached`); a grid region whose image has none gets the crop's own
    SLIC, computed now (`computed`, service/superpixels.py). A superpixel region's shape is only known
    from its image's map: until the worker wrote it this answers 204 and the page's superpixel tools stay
    off, as they do where scikit-image is not installed.
    """
    region = region_or_404(session, region_id, token)
    image = session.get(Image, region.image_id)
    try:
        ids = cached_map(storage, session.get(Project, image.project_id), image)
    except MapMismatch as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if ids is not None:
        (local, own), source = _superpixel_crop(ids, region, image, context), "cached"
    elif region.kind == "grid" and available():
        local, own, source = _computed_crop(storage, region, image, context), -1, "computed"
    else:
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers=CACHE)
    img = PILImage.fromarray(local.astype(np.uint8 if local.max(initial=0) < 256 else np.uint16))  # L or I;16
    x, y, w, h = crop_box(region, image, context)
    headers = {**CACHE, "X-Crop-Box": f"{x},{y},{w},{h}", "X-Superpixel-Region": str(own),
               "X-Superpixel-Source": source}
    return Response(_png(img), media_type="image/png", headers=headers)
