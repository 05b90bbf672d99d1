"""Submitting a mask for a lease: the one path that human annotators and the simulated oracle use.

Order of checks, so that bad input stores nothing: the lease exists (404) and is the caller's (403); an
Idempotency-Key already used by this token returns its first annotation; the upload is a PNG (415), not
too large or a decompression bomb (413, from the header alone), and decodes to exactly the region's size
with class ids or 255 (422). Only then is the mask written (temp file, fsync, rename) and its row
committed; the 2xx goes out after the commit, so an acknowledged annotation survives a crash.

A submission after the lease expired or ended is still stored (annotations are append-only) with
`late=True`. The region becomes `labeled` when this lease still holds it or it went back to the queue;
a region that meanwhile went to another annotator keeps that lease, whose own submission will be newer.
"""

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.imaging import PNG_MAGIC, ImageError, open_header
from service.labels import add_annotation
from service.masks import MaskError, decode_mask_png
from service.models import Annotation, Lease, Region, Token, utcnow
from service.queue import LeaseConflict, QueueError, lease_context, lock_lease, write_tx
from service.schemas.token import TokenPublic
from service.storage import storage_for

MAX_KEY_LENGTH = 200


class SubmitError(QueueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_mask_upload(data: bytes, w: int, h: int, num_classes: int, settings) -> np.ndarray:
    """Decode an uploaded mask or raise SubmitError with the right 4xx."""
    if len(data) > settings.max_upload_bytes:
        raise SubmitError(413, f"mask upload is {len(data)} bytes, over the limit of "
                                f"{settings.max_upload_bytes}")
    if not data.startswith(PNG_MAGIC):
        raise SubmitError(415, "the mask must be a PNG file (8-bit, one channel of class ids)")
    try:
        with open_header(data, "PNG") as img:
            dw, dh = img.size
    except ImageError as exc:
        raise SubmitError(exc.status, exc.message) from exc
    if dw * dh > settings.max_image_pixels:
        raise SubmitError(413, f"mask declares {dw}x{dh} pixels, over the cap of {settings.max_image_pixels}")
    try:
        return decode_mask_png(data, w, h, num_classes)
    except MaskError as exc:
        raise SubmitError(422, str(exc)) from exc


def _by_key(session: Session, token_id: int, key: str) -> Annotation | None:
    return session.scalars(select(Annotation).where(Annotation.token_id == token_id,
                                                    Annotation.idempotency_key == key)).first()


def _checked_replay(first: Annotation, lease_id: str) -> Annotation:
    if first.lease_id != lease_id:
        raise LeaseConflict("this Idempotency-Key was already used for another lease")
    return first


def submit(session: Session, settings, lease_id: str, token: Token | TokenPublic, mask_png: bytes,
           idempotency_key: str | None = None, *, source: str = "human", now=None) -> tuple[Annotation, bool]:
    """Store a mask for a lease; returns (annotation, replayed). Raises QueueError subclasses (4xx)."""
    now = now or utcnow()
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
        raise SubmitError(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    token_id = token.id
    lease, region, image, project, first = lease_context(session, lease_id, token_id, idempotency_key)
    if first is not None:
        return _checked_replay(first, lease_id), True
    mask = check_mask_upload(mask_png, region.w, region.h, len(project.classes), settings)

    try:
        with write_tx(session):
            lease, region, first = lock_lease(session, lease_id, token_id, idempotency_key)
            if first is not None:
                return _checked_replay(first, lease_id), True
            late = now >= lease.expires_at or lease.state in ("released", "skipped", "expired")
            ann = add_annotation(session, storage_for(settings), image=image, x=region.x, y=region.y,
                                 w=region.w, h=region.h, mask=mask, source=source, token_id=token_id,
                                 region_id=region.id, lease_id=lease.id, late=late,
                                 idempotency_key=idempotency_key)
            _after_submit(lease, region, now)
    except IntegrityError:  # the same key on two leases at once: the first one won (its file is removed)
        if idempotency_key is not None and (first := _by_key(session, token_id, idempotency_key)):
            return _checked_replay(first, lease_id), True
        raise
    return ann, False


def _after_submit(lease: Lease, region: Region, now) -> None:
    if lease.state == "active":
        lease.state, lease.ended_at = "submitted", now
    if region.lease_id == lease.id or region.status in ("queued", "skipped"):
        region.status = "labeled"
        region.lease_id = None
        region.lease_token_id = None
        region.lease_expires_at = None


def submit_annotation(session: Session, settings, lease_id: str, token: Token | TokenPublic, mask_png: bytes,
                      idempotency_key: str | None = None, *, source: str = "human", now=None) -> Annotation:
    """The contract entry point (SERVICE_CONTRACT.md): `submit` without the replay flag."""
    return submit(session, settings, lease_id, token, mask_png, idempotency_key, source=source, now=now)[0]
