"""Label masks: PNG encode/decode with strict checks, appending annotations, assembling an image's labels.

A mask is an 8-bit image of class ids, exactly the size of its box, with 255 = unlabeled (DESIGN §4).

Assembly rule (what training reads): the annotations that count (`in_labels`: not awaiting review,
rejected, a gold submission or a consensus vote, see service/quality.py) are applied oldest → newest
(by id, i.e. insertion order, which does not depend on clocks), and each one writes only its pixels
that are not 255. So a newer annotation overrides older labels where it labels a pixel, and a 255
inside a newer box means "no opinion", not "erase": an annotator who paints part of a region does
not wipe labels that an earlier annotation (an initial mask, another region overlapping this one) put
there. Unlabeling is not a thing annotators can do; a wrong label is fixed by labeling the pixel again.
"""

import io
import uuid

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.masks import IGNORE, MaskError, check_mask_values, encode_mask_png
from service.models import Annotation, Image
from service.storage import Storage, mask_key


def add_annotation(
    session: Session,
    storage: Storage,
    *,
    image: Image,
    x: int,
    y: int,
    w: int,
    h: int,
    mask: np.ndarray,
    source: str,
    token_id: int | None = None,
    region_id: int | None = None,
    lease_id: str | None = None,
    late: bool = False,
    idempotency_key: str | None = None,
) -> Annotation:
    """Write the mask PNG durably, then add (and flush) its row; the caller commits.

    If the flush fails (e.g. a duplicate idempotency key) the PNG is removed and the error re-raised.
    """
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > image.width or y + h > image.height:
        raise MaskError(f"box x={x} y={y} w={w} h={h} is not inside the {image.width}x{image.height} image")
    if mask.shape != (h, w) or mask.dtype != np.uint8:
        raise MaskError(f"mask must be uint8 of shape ({h}, {w}), got {mask.dtype} {mask.shape}")
    check_mask_values(mask, len(image.project.classes))
    key = mask_key(image.project_id, f"{image.id}-{uuid.uuid4().hex}")
    storage.write_bytes(key, encode_mask_png(mask))
    row = Annotation(image_id=image.id, region_id=region_id, lease_id=lease_id, token_id=token_id,
                     source=source, x=x, y=y, w=w, h=h, mask_path=key, late=late,
                     idempotency_key=idempotency_key)
    session.add(row)
    try:
        session.flush()
    except Exception:
        storage.delete(key)
        raise
    return row


def assemble_labels(session: Session, storage: Storage, image: Image) -> np.ndarray:
    """The image's labeled mask (H×W uint8, 255 = unlabeled): see the module docstring for the rule."""
    labels = np.full((image.height, image.width), IGNORE, dtype=np.uint8)
    rows = session.scalars(select(Annotation).where(Annotation.image_id == image.id, Annotation.in_labels)
                           .order_by(Annotation.id))
    for ann in rows:
        data = storage.read_bytes(ann.mask_path)
        with PILImage.open(io.BytesIO(data), formats=["PNG"]) as img:
            patch = np.array(img, dtype=np.uint8)
        if patch.shape != (ann.h, ann.w):
            raise MaskError(f"stored mask {ann.mask_path} is {patch.shape}, expected ({ann.h}, {ann.w})")
        view = labels[ann.y:ann.y + ann.h, ann.x:ann.x + ann.w]
        keep = patch != IGNORE
        view[keep] = patch[keep]
    return labels
