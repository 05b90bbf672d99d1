"""A region's pixels: the image crop around it (with context) and the model's pre-label."""

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response, status
from PIL import Image as PILImage

from service.auth import CurrentToken, SessionDep
from service.masks import encode_mask_png
from service.models import Image, Region
from service.routes.deps import region_or_404
from service.routes.queue import crop_box, region_public
from service.schemas.common import RegionId
from service.schemas.queue import RegionPublic
from service.storage import Storage, StorageDep

router = APIRouter(prefix="/api/regions", tags=["regions"])
MAX_CONTEXT = 1024
# Crops and pre-labels of a region never change once written; let the page cache them privately.
CACHE = {"Cache-Control": "private, max-age=3600"}




@router.get("/{region_id}", response_model=RegionPublic)
def read_region(region_id: RegionId, session: SessionDep, token: CurrentToken) -> RegionPublic:
    return region_public(region_or_404(session, region_id, token))


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
