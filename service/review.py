"""Review of annotations: accept, reject (with a reason) or fix, by a reviewer or an admin.

An annotation awaits review when service/quality.needs_review said so at submission (`review_state =
'pending'`, not in the labels). Accept puts it in the labels. Reject keeps it out, sends its region back
to the queue with the rejected mask as the pre-label the next annotator starts from, and marks the
annotator's lease `rejected`, so the claim never gives the region to that annotator again. Fix stores
the reviewer's mask as a new annotation (source `review`) that counts instead. Each action is one
transaction that first re-reads the annotation locked: an annotation no longer pending is a 409.
"""

from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.labels import add_annotation
from service.models import Annotation, Image, Lease, Region
from service.queue import LeaseConflict, LeaseNotFound, write_tx
from service.storage import Storage


def next_pending(session: Session, project_id: int, after: int = 0) -> Annotation | None:
    """The oldest annotation of the project awaiting review, with an id above `after`."""
    return session.scalar(select(Annotation).join(Image, Image.id == Annotation.image_id)
                          .where(Image.project_id == project_id, Annotation.review_state == "pending",
                                 Annotation.id > after)
                          .order_by(Annotation.id).limit(1))


def _locked_pending(session: Session, annotation_id: int) -> Annotation:
    ann = session.scalar(select(Annotation).where(Annotation.id == annotation_id)
                         .with_for_update().execution_options(populate_existing=True))
    if ann is None:
        raise LeaseNotFound(f"annotation {annotation_id} not found")
    if ann.review_state != "pending":
        raise LeaseConflict(f"annotation {annotation_id} is not awaiting review "
                            f"({ann.review_state or 'never sent to review'})")
    return ann


def _mark(ann: Annotation, state: str, reviewer_id: int, now: datetime, reason: str | None = None) -> None:
    ann.review_state, ann.reviewed_by, ann.reviewed_at, ann.review_reason = state, reviewer_id, now, reason


def accept(session: Session, annotation_id: int, reviewer_id: int, now: datetime) -> Annotation:
    with write_tx(session):
        ann = _locked_pending(session, annotation_id)
        _mark(ann, "accepted", reviewer_id, now)
        ann.in_labels = True
    return ann


def reject(session: Session, annotation_id: int, reviewer_id: int, reason: str, now: datetime) -> Annotation:
    with write_tx(session):
        ann = _locked_pending(session, annotation_id)
        _mark(ann, "rejected", reviewer_id, now, reason)
        region = session.get(Region, ann.region_id) if ann.region_id else None
        if region is not None and region.status == "labeled":
            region.status = "queued"
            region.prelabel_path = ann.mask_path  # the next annotator corrects this mask
        if ann.lease_id:
            lease = session.get(Lease, ann.lease_id)
            if lease is not None:
                lease.state = "rejected"  # keeps the region from this annotator (queue's claim)
    return ann


def fix(session: Session, storage: Storage, annotation_id: int, reviewer_id: int, mask: np.ndarray,
        now: datetime) -> tuple[Annotation, Annotation]:
    """The reviewer's mask becomes the label; returns (the reviewed annotation, the fix)."""
    with write_tx(session):
        ann = _locked_pending(session, annotation_id)
        _mark(ann, "fixed", reviewer_id, now)
        image = session.get(Image, ann.image_id)
        fixed = add_annotation(session, storage, image=image, x=ann.x, y=ann.y, w=ann.w, h=ann.h, mask=mask,
                               source="review", token_id=reviewer_id, region_id=ann.region_id)
        fixed.review_state, fixed.reviewed_by, fixed.reviewed_at = "accepted", reviewer_id, now
    return ann, fixed
