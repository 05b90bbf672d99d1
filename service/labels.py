"""Label masks: PNG encode/decode with strict checks, appending annotations, assembling an image's labels.

A mask is an 8-bit image of class ids, exactly the size of its box, with 255 = unlabeled (DESIGN §4).

Assembly rule (what training reads): annotations are applied oldest → newest (by id, i.e. insertion
order, which does not depend on clocks), and each one writes only its pixels that are not 255. So a newer
annotation overrides older labels where it labels a pixel, and a 255 inside a newer box means "no
opinion", not "erase": an annotator who paints part of a region does not wipe labels that an earlier
annotation (an initial mask, another region overlapping this one) put there. Unlabeling is not a thing
annotators can do; a wrong label is fixed by labeling the pixel again.
"""

import io
import uuid

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.masks import IGNORE, MaskError, check_mask_values, encode_mask_png
from service.models import Annotation, Image
from service.storage import Storage, label_key, mask_key


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
    rows = session.scalars(select(Annotation).where(Annotation.image_id == image.id)
                           .order_by(Annotation.id))
    for ann in rows:
        _apply(labels, storage, ann)
    return labels


def _apply(labels: np.ndarray, storage: Storage, ann: Annotation) -> None:
    data = storage.read_bytes(ann.mask_path)
    with PILImage.open(io.BytesIO(data), formats=["PNG"]) as img:
        patch = np.array(img, dtype=np.uint8)
    if patch.shape != (ann.h, ann.w):
        raise MaskError(f"stored mask {ann.mask_path} is {patch.shape}, expected ({ann.h}, {ann.w})")
    view = labels[ann.y:ann.y + ann.h, ann.x:ann.x + ann.w]
    keep = patch != IGNORE
    view[keep] = patch[keep]


def _materialized(storage: Storage, project_id: int) -> dict[int, tuple[int, str]]:
    """image id -> (annotation id applied through, key) of the label files present."""
    folder = storage.path(label_key(project_id, 0, 0)).parent
    found: dict[int, tuple[int, str]] = {}
    if not folder.is_dir():
        return found
    for name in (e.name for e in folder.iterdir()):
        stem, _, through = name.removesuffix(".png").partition("-")
        if name.endswith(".png") and stem.isdigit() and through.isdigit():
            image_id, last = int(stem), int(through)
            if image_id not in found or last > found[image_id][0]:
                found[image_id] = (last, label_key(project_id, image_id, last))
    return found


def materialize_labels(session: Session, storage: Storage, images: list[Image]) -> dict[int, str | None]:
    """The key of each image's current label file (None: nothing labeled), brought up to date first.

    One file per image, named by the last annotation it includes. An image whose file is current costs
    nothing; one with newer annotations gets only those applied on top of its file (the same result as
    `assemble_labels`, since annotations apply in id order), written, and the older file removed.
    """
    if not images:
        return {}
    project_id = images[0].project_id
    ids = [im.id for im in images]
    last = dict(session.execute(select(Annotation.image_id, func.max(Annotation.id))
                                .where(Annotation.image_id.in_(ids)).group_by(Annotation.image_id)).all()) \
        if len(ids) < 30_000 else dict(session.execute(
            select(Annotation.image_id, func.max(Annotation.id)).join(Image)
            .where(Image.project_id == project_id).group_by(Annotation.image_id)).all())
    present = _materialized(storage, project_id)
    out: dict[int, str | None] = {}
    for im in images:
        through = last.get(im.id)
        if through is None:
            out[im.id] = None
            continue
        have = present.get(im.id)
        if have is not None and have[0] == through:
            out[im.id] = have[1]
            continue
        out[im.id] = _rebuild(session, storage, im, through, have)
    return out


def _rebuild(session: Session, storage: Storage, image: Image, through: int,
             have: tuple[int, str] | None) -> str:
    labels = None
    since = 0
    if have is not None and have[0] < through:
        try:
            with PILImage.open(storage.path(have[1])) as img:
                labels = np.array(img, dtype=np.uint8)
            since = have[0] if labels.shape == (image.height, image.width) else 0
        except (OSError, ValueError):  # removed meanwhile by another process's update, or damaged
            since = 0
    if since == 0:
        labels = np.full((image.height, image.width), IGNORE, dtype=np.uint8)
    newer = select(Annotation).where(Annotation.image_id == image.id, Annotation.id > since,
                                     Annotation.id <= through).order_by(Annotation.id)
    for ann in session.scalars(newer):
        _apply(labels, storage, ann)
    key = label_key(image.project_id, image.id, through)
    storage.write_bytes(key, encode_mask_png(labels))
    if have is not None and have[1] != key:
        storage.delete(have[1])
    return key


def current_labels(session: Session, storage: Storage, image: Image) -> np.ndarray:
    """The image's labeled mask read from its materialized file (what training and export read)."""
    key = materialize_labels(session, storage, [image])[image.id]
    if key is None:
        return np.full((image.height, image.width), IGNORE, dtype=np.uint8)
    with PILImage.open(storage.path(key)) as img:
        return np.array(img, dtype=np.uint8)
