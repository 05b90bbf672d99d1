"""Submitting a mask for a lease: the one path that human annotators and the simulated oracle use.

Order of checks, so that bad input stores nothing: the lease exists (404) and is the caller's (403); an
Idempotency-Key already used by this token returns its first annotation; the upload is a PNG (415), not
too large or a decompression bomb (413, from the header alone), and decodes to exactly the region's size
with class ids or 255 (422). Only then is the mask written (temp file, fsync, rename) and its row
committed; the 2xx goes out after the commit, so an acknowledged annotation survives a crash.

A region of a project with dominant-class annotation (service/dominant.py) is answered with a class id
instead: 422 for a mask sent to it, for a class id sent to an exact region, and for an unknown class; 409
when its superpixel's shape cannot be read. The class becomes the mask stored (the class inside the
superpixel, 255 outside), which then goes the same way as an uploaded one, counted as one stroke.

An Idempotency-Key replayed with a different mask is a 409 (the first mask stays). A human mask that
labels no pixel is a 422: such a region is skipped, not submitted. Each annotation records its effort
(the page's active seconds and strokes; labeled pixels and pixels changed from the pre-label, counted
here) and its fate under the project's quality settings (service/quality.py, service/gold.py).

A submission after the lease expired or ended is still stored (annotations are append-only) with
`late=True`. The region becomes `labeled` when this lease still holds it or it went back to the queue;
a region that meanwhile went to another annotator keeps that lease, whose own submission will be newer.
"""

import hashlib
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.dominant import DOMINANT, ShapeUnknown, annotation_kind, dominant_mask
from service.gold import read_mask, score_submission
from service.imaging import PNG_MAGIC, ImageError, open_header
from service.labels import add_annotation
from service.masks import IGNORE, MaskError, decode_mask_png
from service.models import Annotation, Image, Lease, Project, Region, Token, utcnow
from service.quality import (
    consensus_votes,
    end_vote,
    majority,
    needs_review,
    prelabel_diff,
    quality_of,
    wants_overlap,
)
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


def mask_digest(mask: np.ndarray) -> str:
    return hashlib.sha256(mask.tobytes()).hexdigest()


def _checked_replay(first: Annotation, lease_id: str, digest: str | None) -> Annotation:
    if first.lease_id != lease_id:
        raise LeaseConflict("this Idempotency-Key was already used for another lease")
    if digest is not None and first.mask_sha256 is not None and first.mask_sha256 != digest:
        raise LeaseConflict("this Idempotency-Key was already used with a different mask: a retry must send "
                            "the same mask, a new mask needs a new key")
    return first


def answer_mask(settings, storage, project: Project, region: Region, image: Image, mask_png: bytes | None,
                class_id: int | None) -> np.ndarray:
    """The mask an answer stores: the uploaded PNG for an exact region, the class inside the superpixel for
    a dominant one. Raises SubmitError (4xx) for an answer of the wrong kind or a bad one."""
    if annotation_kind(project.region, region.kind) != DOMINANT:
        if class_id is not None:
            raise SubmitError(422, f"region {region.id} is labeled pixel by pixel: send its mask (a PNG "
                                   "upload), not a class id")
        return check_mask_upload(mask_png or b"", region.w, region.h, len(project.classes), settings)
    if class_id is None:
        raise SubmitError(422, f"region {region.id} is a superpixel labeled with its dominant class: send "
                               'the class as JSON, {"class_id": …}, not a mask')
    if not 0 <= class_id < len(project.classes):
        raise SubmitError(422, f"class {class_id} is not a class of this project (ids 0.."
                               f"{len(project.classes) - 1})")
    try:
        return dominant_mask(storage, project, region, image, class_id)
    except ShapeUnknown as exc:
        raise SubmitError(409, str(exc)) from exc


def _replay_digest(settings, storage, project, region, image, mask_png, class_id) -> str:
    try:
        return mask_digest(answer_mask(settings, storage, project, region, image, mask_png, class_id))
    except SubmitError:
        return "not a mask"


@dataclass(frozen=True)
class Effort:
    """What the page measured while the region was on screen."""

    active_seconds: float | None = None
    strokes: int | None = None


def submit(session: Session, settings, lease_id: str, token: Token | TokenPublic, mask_png: bytes | None,
           idempotency_key: str | None = None, *, class_id: int | None = None, source: str = "human",
           now=None, effort: Effort = Effort()) -> tuple[Annotation, bool]:
    """Store a mask (or, for a dominant-class region, a class id) for a lease; returns (annotation,
    replayed). Raises QueueError subclasses (4xx)."""
    now = now or utcnow()
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
        raise SubmitError(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    lease, region, image, project, first = lease_context(session, lease_id, token, idempotency_key)
    storage = storage_for(settings)
    if first is not None:
        digest = _replay_digest(settings, storage, project, region, image, mask_png, class_id)
        return _checked_replay(first, lease_id, digest), True
    mask = answer_mask(settings, storage, project, region, image, mask_png, class_id)
    if source == "human" and not (mask != IGNORE).any():
        raise SubmitError(422, "the mask labels no pixel: paint the region, or skip it "
                               f"(POST /api/leases/{lease_id}/skip) if it cannot be labeled")
    digest = mask_digest(mask)
    labeled, changed, unchanged = prelabel_diff(mask, _prelabel(storage, region, image, mask, class_id))
    if class_id is not None:  # one class for the whole superpixel: one click, whatever the page counted
        effort = Effort(active_seconds=effort.active_seconds, strokes=1)
    quality = quality_of(session, project.id)

    try:
        with write_tx(session):
            lease, region, first = lock_lease(session, lease_id, token, idempotency_key)
            if first is not None:
                return _checked_replay(first, lease_id, digest), True
            late = now >= lease.expires_at or lease.state in ("released", "skipped", "expired")
            ann = add_annotation(session, storage, image=image, x=region.x, y=region.y,
                                 w=region.w, h=region.h, mask=mask, source=source, token_id=token.id,
                                 region_id=region.id, lease_id=lease.id, late=late,
                                 idempotency_key=idempotency_key)
            ann.mask_sha256, ann.labeled_pixels, ann.pixels_changed, ann.unchanged = (
                digest, labeled, changed, unchanged)
            ann.active_seconds, ann.strokes = effort.active_seconds, effort.strokes
            _after_submit(session, storage, quality, lease, region, ann, mask, now)
    except IntegrityError:  # the same key on two leases at once: the first one won (its file is removed)
        if idempotency_key is not None and (first := _by_key(session, token.id, idempotency_key)):
            return _checked_replay(first, lease_id, digest), True
        raise
    return ann, False


def _prelabel(storage, region, image, mask: np.ndarray, class_id: int | None) -> np.ndarray | None:
    """The pre-label shown for the region; for a class id, only inside the superpixel (255 outside, as the
    stored mask), so that pixels changed count the superpixel's pixels whose class differs."""
    if region.prelabel_path is None or not storage.exists(region.prelabel_path):
        return None
    arr = read_mask(storage, region.prelabel_path)
    if arr.shape == (image.height, image.width):  # a whole-image prediction: the region's part
        arr = arr[region.y:region.y + region.h, region.x:region.x + region.w]
    if class_id is not None and arr.shape == mask.shape:
        arr = np.where(mask != IGNORE, arr, IGNORE).astype(np.uint8)
    return arr


def _after_submit(session: Session, storage, quality, lease: Lease, region: Region, ann: Annotation,
                  mask: np.ndarray, now) -> None:
    if lease.state == "active":
        lease.state, lease.ended_at = "submitted", now
    if region.status == "gold":  # scored, never a label; the region stays gold for the others
        score_submission(storage, region, ann, mask)
        return
    if quality is not None and ann.source == "human" and wants_overlap(session, quality, region, ann) > 1:
        _vote(session, storage, lease, region, ann, now)
        return
    if quality is not None and ann.source == "human" and needs_review(session, quality, region.project_id,
                                                                      ann.token_id):
        ann.in_labels, ann.review_state = False, "pending"
    _finish_region(lease, region)


def _finish_region(lease: Lease, region: Region, status: str = "labeled") -> None:
    if region.lease_id == lease.id or region.status in ("queued", "skipped"):
        region.status = status
        region.lease_id = None
        region.lease_token_id = None
        region.lease_expires_at = None


def _vote(session: Session, storage, lease: Lease, region: Region, ann: Annotation, now) -> None:
    """One of the k votes on a consensus region; the k-th writes the majority as the region's label."""
    ann.in_labels = False
    end_vote(lease)
    session.flush()
    votes = consensus_votes(session, region.id)
    if len(votes) < region.overlap:
        _finish_region(lease, region, status="queued")  # back in the queue for the next annotator
        return
    image = session.get(Image, region.image_id)
    label = majority([read_mask(storage, v.mask_path) for v in votes])
    add_annotation(session, storage, image=image, x=region.x, y=region.y, w=region.w, h=region.h,
                   mask=label, source="consensus", region_id=region.id)
    _finish_region(lease, region)


def submit_annotation(session: Session, settings, lease_id: str, token: Token | TokenPublic,
                      mask_png: bytes | None, idempotency_key: str | None = None, *,
                      class_id: int | None = None, source: str = "human", now=None) -> Annotation:
    """The contract entry point (SERVICE_CONTRACT.md): `submit` without the replay flag."""
    return submit(session, settings, lease_id, token, mask_png, idempotency_key, class_id=class_id,
                  source=source, now=now)[0]
