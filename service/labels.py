"""Label masks: PNG encode/decode with strict checks, appending annotations, assembling an image's labels.

A mask is an 8-bit image of class ids, exactly the size of its box, with 255 = unlabeled (DESIGN §4).

Assembly rule (what training reads): the annotations that count (`in_labels`: not awaiting review,
rejected, a gold submission, a consensus vote, see service/quality.py, nor replaced by its annotator's
revision, see service/revisions.py) are applied oldest → newest
(by id, i.e. insertion order, which does not depend on clocks), and each one writes only its pixels
that are not 255. So a newer annotation overrides older labels where it labels a pixel, and a 255
inside a newer box means "no opinion", not "erase": an annotator who paints part of a region does
not wipe labels that an earlier annotation (an initial mask, another region overlapping this one) put
there. Unlabeling is not a thing annotators can do; a wrong label is fixed by labeling the pixel again.
"""

import io
import uuid
from collections.abc import Iterator

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
    rows = session.scalars(select(Annotation).where(Annotation.image_id == image.id, Annotation.in_labels)
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


def _materialized(storage: Storage, project_id: int) -> dict[int, tuple[int, int, str]]:
    """image id -> (last annotation id applied, annotations applied, key) of the label files present."""
    folder = storage.path(label_key(project_id, 0, 0, 0)).parent
    found: dict[int, tuple[int, int, str]] = {}
    if not folder.is_dir():
        return found
    for name in (e.name for e in folder.iterdir()):
        parts = name.removesuffix(".png").split("-")
        if name.endswith(".png") and len(parts) == 3 and all(p.isdigit() for p in parts):
            image_id, last, count = (int(p) for p in parts)
            if image_id not in found or last > found[image_id][0]:
                found[image_id] = (last, count, label_key(project_id, image_id, last, count))
    return found


def materialize_labels(session: Session, storage: Storage, images: list[Image]) -> dict[int, str | None]:
    """The key of each image's current label file (None: nothing labeled), brought up to date first.

    One file per image, named by the last annotation it includes and how many it includes (the
    annotations `in_labels`, as `assemble_labels`). A current file costs nothing; when only newer
    annotations were added they are applied on top of the file (the same result as `assemble_labels`,
    since annotations apply in id order); any other change (a review took one out or let an older one
    in) rebuilds the file from all of them. The older file is removed.
    """
    if not images:
        return {}
    project_id = images[0].project_id
    ids = {im.id for im in images}
    state = {image_id: (last, count) for image_id, last, count in session.execute(
        select(Annotation.image_id, func.max(Annotation.id), func.count(Annotation.id)).join(Image)
        .where(Image.project_id == project_id, Annotation.in_labels).group_by(Annotation.image_id)).all()
        if image_id in ids}
    present = _materialized(storage, project_id)
    out: dict[int, str | None] = {}
    for im in images:
        if im.id not in state:
            out[im.id] = None
            continue
        have = present.get(im.id)
        if have is not None and have[:2] == state[im.id]:
            out[im.id] = have[2]
            continue
        out[im.id] = _rebuild(session, storage, im, *state[im.id], have)
    return out


def _rebuild(session: Session, storage: Storage, image: Image, through: int, count: int,
             have: tuple[int, int, str] | None) -> str:
    counted = select(Annotation).where(Annotation.image_id == image.id, Annotation.in_labels)
    since, labels = 0, None
    if have is not None and have[0] < through:
        newer = session.scalar(select(func.count()).select_from(
            counted.where(Annotation.id > have[0], Annotation.id <= through).subquery()))
        if have[1] + newer == count:  # only additions since the file was written
            try:
                with PILImage.open(storage.path(have[2])) as img:
                    labels = np.array(img, dtype=np.uint8)
                if labels.shape == (image.height, image.width):
                    since = have[0]
            except (OSError, ValueError):  # removed meanwhile by another process's update, or damaged
                since = 0
    if since == 0:
        labels = np.full((image.height, image.width), IGNORE, dtype=np.uint8)
    for ann in session.scalars(counted.where(Annotation.id > since, Annotation.id <= through)
                               .order_by(Annotation.id)):
        _apply(labels, storage, ann)
    key = label_key(image.project_id, image.id, through, count)
    storage.write_bytes(key, encode_mask_png(labels))
    if have is not None and have[2] != key:
        storage.delete(have[2])
    return key


def current_labels(session: Session, storage: Storage, images: list[Image],
                   chunk: int = 256) -> Iterator[tuple[Image, np.ndarray | None]]:
    """(image, its labels or None when nothing is labeled), one at a time, read from the materialized label
    files (brought up to date `chunk` images at a time, as a cycle does), so an export reads one file per
    image, not every annotation PNG. A file replaced meanwhile by a concurrent update is assembled instead."""
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        keys = materialize_labels(session, storage, part)
        for image in part:
            key = keys.get(image.id)
            if key is None:
                yield image, None
                continue
            try:
                with PILImage.open(storage.path(key)) as img:
                    labels = np.array(img, dtype=np.uint8)
            except OSError:
                labels = assemble_labels(session, storage, image)
            yield image, labels
