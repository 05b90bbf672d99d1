"""Going back: an annotator reopens one of their last submissions and submits it again.

A revision is a new annotation row (annotations stay append-only); the one it replaces is marked
`review_state = 'superseded'` and leaves the labels (`in_labels = False`). So the latest wins everywhere:
label assembly and the materialized label files (one annotation left the labels, which is not a mere
addition, so the file is rebuilt: a pixel the revision leaves unlabeled does not keep the replaced mask's
class), exports, the review queue (a superseded annotation is no longer pending), gold scores, consensus
votes, queue and quality counts and the auto-cycle count. Effort figures (active hours, strokes) keep
every submission: each one is work that was done.

The revision takes the replaced annotation's place: a label when that one was, awaiting review when that
one was, a gold submission scored again, a consensus vote replaced by a new vote.

When a submission can no longer be edited (`why_not_editable`):
- a cycle has used it: a cycle of the project that started (`Cycle.started_at`) at or after the
  annotation was created, and is running or succeeded. The worker reads the labels when it starts a
  cycle, so such a cycle trained on the submission as it was; a cycle that failed or was cancelled
  left no model or regions behind, so it does not count. Clocks: `started_at` is the worker's clock,
  `created_at` the API's; a revision racing a cycle's start by less than their skew is a race either
  way (the cycle then trained on the earlier mask, and the next one reads the revision).
- a reviewer accepted, rejected or fixed it: the reviewer's verdict is on that mask.
- its region's consensus majority is already written from it and the other votes.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.annotations import Effort, SubmitError, check_mask_upload
from service.gold import read_mask, score_submission
from service.labels import add_annotation
from service.masks import IGNORE
from service.models import CURRENT, SUPERSEDED, Annotation, Cycle, Image, Lease, Project, Region
from service.quality import prelabel_diff
from service.queue import LeaseConflict, LeaseNotFound, write_tx
from service.schemas.token import TokenPublic
from service.storage import Storage, storage_for

RECENT_LIMIT = 5  # how many submissions the page offers to reopen
MAX_RECENT = 20
MAX_KEY_LENGTH = 200
USING = ("running", "succeeded")  # cycle states that mean a cycle read the labels and kept the result


def recent_submissions(session: Session, project_id: int, token_id: int,
                       limit: int = RECENT_LIMIT) -> list[Annotation]:
    """The caller's current submission on each of their most recently submitted regions, newest first."""
    latest = (select(func.max(Annotation.id).label("id"))
              .join(Region, Region.id == Annotation.region_id)
              .where(Annotation.token_id == token_id, Region.project_id == project_id, CURRENT)
              .group_by(Annotation.region_id).order_by(func.max(Annotation.id).desc()).limit(limit)
              .subquery())
    return list(session.scalars(select(Annotation).join(latest, latest.c.id == Annotation.id)
                                .order_by(Annotation.id.desc())))


def own_submission(session: Session, region_id: int, token_id: int) -> Annotation | None:
    """The caller's current submission on a region (the newest, should there be several)."""
    return session.scalar(select(Annotation).where(Annotation.region_id == region_id,
                                                   Annotation.token_id == token_id, CURRENT)
                          .order_by(Annotation.id.desc()).limit(1))


def using_cycle(session: Session, project_id: int, created_at: datetime) -> Cycle | None:
    """The first cycle that used an annotation created at `created_at` (see the module docstring)."""
    return session.scalar(select(Cycle).where(Cycle.project_id == project_id, Cycle.status.in_(USING),
                                              Cycle.started_at >= created_at)
                          .order_by(Cycle.started_at).limit(1))


def _majority_written(session: Session, region: Region) -> bool:
    return region.overlap > 1 and session.scalar(
        select(func.count()).select_from(Annotation)
        .where(Annotation.region_id == region.id, Annotation.source == "consensus")) > 0


def why_not_editable(session: Session, ann: Annotation, region: Region) -> str | None:
    """Why this submission can no longer be edited, or None while it can."""
    if ann.review_state in ("accepted", "rejected", "fixed"):
        return f"a reviewer already {ann.review_state} it"
    if _majority_written(session, region):
        return "its region's label is already the majority of several annotators' votes"
    cycle = using_cycle(session, region.project_id, ann.created_at)
    if cycle is not None:
        return f"cycle {cycle.number} has already used it (it started after this was submitted)"
    return None


@dataclass(frozen=True)
class Revision:
    """A revision as the routes send it."""

    mask_png: bytes
    idempotency_key: str | None = None
    effort: Effort = Effort()


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(mask.tobytes()).hexdigest()


def _replay(session: Session, token_id: int, key: str, region_id: int, digest: str) -> Annotation | None:
    first = session.scalar(select(Annotation).where(Annotation.token_id == token_id,
                                                    Annotation.idempotency_key == key))
    if first is None:
        return None
    if first.region_id != region_id:
        raise LeaseConflict("this Idempotency-Key was already used for another submission")
    if first.mask_sha256 is not None and first.mask_sha256 != digest:
        raise LeaseConflict("this Idempotency-Key was already used with a different mask: a retry must send "
                            "the same mask, a new mask needs a new key")
    return first


def _locked_own(session: Session, region_id: int, token_id: int) -> Annotation | None:
    return session.scalar(select(Annotation).where(Annotation.region_id == region_id,
                                                   Annotation.token_id == token_id, CURRENT)
                          .order_by(Annotation.id.desc()).limit(1)
                          .with_for_update().execution_options(populate_existing=True))


def _prelabel(storage: Storage, region: Region, image: Image) -> np.ndarray | None:
    if region.prelabel_path is None or not storage.exists(region.prelabel_path):
        return None
    arr = read_mask(storage, region.prelabel_path)
    if arr.shape == (image.height, image.width):
        arr = arr[region.y:region.y + region.h, region.x:region.x + region.w]
    return arr


def _take_place(session: Session, storage: Storage, old: Annotation, new: Annotation, region: Region,
                mask: np.ndarray) -> None:
    """The revision stands where the replaced annotation stood; the replaced one leaves the labels."""
    lease = session.get(Lease, old.lease_id) if old.lease_id else None
    if region.status == "gold":
        score_submission(storage, region, new, mask)
    elif lease is not None and lease.state == "consensus":
        new.in_labels = False  # a vote again; the majority is written by the k-th vote
    elif old.review_state == "pending":
        new.in_labels, new.review_state = False, "pending"
    else:
        new.in_labels = old.in_labels
    old.in_labels, old.review_state = False, SUPERSEDED


def revise(session: Session, settings, region: Region, token: TokenPublic,
           revision: Revision) -> tuple[Annotation, bool]:
    """Store a new mask for the caller's submission on `region`; returns (annotation, replayed).

    404: no submission of the caller on the region; 409: no longer editable (the message says why), or
    an Idempotency-Key reused otherwise; 413/415/422: the mask, as for a lease's submission.
    """
    key = revision.idempotency_key
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise SubmitError(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    if own_submission(session, region.id, token.id) is None:
        raise LeaseNotFound(f"you have no submission on region {region.id} to edit")
    project = session.get(Project, region.project_id)
    mask = check_mask_upload(revision.mask_png, region.w, region.h, len(project.classes), settings)
    digest = _digest(mask)
    if key is not None and (first := _replay(session, token.id, key, region.id, digest)):
        return first, True
    if not (mask != IGNORE).any():
        raise SubmitError(422, "the mask labels no pixel: a submission cannot be taken back, only changed")
    storage = storage_for(settings)
    image = session.get(Image, region.image_id)
    labeled, changed, unchanged = prelabel_diff(mask, _prelabel(storage, region, image))
    with write_tx(session):
        old = _locked_own(session, region.id, token.id)
        if old is None:
            raise LeaseNotFound(f"you have no submission on region {region.id} to edit")
        why = why_not_editable(session, old, region)
        if why:
            raise LeaseConflict(f"this submission can no longer be edited: {why}")
        new = add_annotation(session, storage, image=image, x=region.x, y=region.y, w=region.w, h=region.h,
                             mask=mask, source="human", token_id=token.id, region_id=region.id,
                             lease_id=old.lease_id, idempotency_key=key)
        new.mask_sha256, new.labeled_pixels, new.pixels_changed, new.unchanged = (
            digest, labeled, changed, unchanged)
        new.active_seconds, new.strokes = revision.effort.active_seconds, revision.effort.strokes
        _take_place(session, storage, old, new, region, mask)
    return new, False

