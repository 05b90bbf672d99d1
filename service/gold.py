"""Gold regions: regions whose answer is known, mixed into the leases to score each annotator.

A gold region is a Region row with `status='gold'` and its answer in `gold_mask_path`. It is made from
a queued region whose image has an oracle mask (it keeps the model's pre-label, so it looks like any
other region) or from an annotation an admin vouches for. Many annotators may hold leases on it at
once, so its leases are not mirrored on the row; each annotator gets it at most once.

What an annotator sees of a lease on it is what a lease on any region shows (status `leased`); no
endpoint serves `gold_mask_path`, and a submission on it is scored (pixel accuracy, mIoU over the
classes either side has) and kept out of the labels.
"""

import dataclasses
import io
import secrets
from datetime import datetime, timedelta

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.masks import IGNORE, encode_mask_png
from service.models import Annotation, Image, Lease, Region
from service.queue import MAX_LIVE_LEASES, LeasedRegion, write_tx
from service.storage import Storage, mask_key


def claim_gold(session: Session, settings, project_id: int, token_id: int, page: str | None,
               holding: set[str], now: datetime) -> LeasedRegion | None:
    """A lease on a gold region this token never had, when the page would claim a new region anyway
    (it holds no live lease outside `holding`, and fewer than the maximum); else None."""
    lease_id = secrets.token_urlsafe(18)
    expires = now + timedelta(seconds=settings.lease_ttl_seconds)
    with write_tx(session, durable=False):
        live = session.scalars(select(Lease.id).join(Region, Region.id == Lease.region_id).where(
            Region.project_id == project_id, Lease.token_id == token_id,
            Lease.page.is_not_distinct_from(page), Lease.state == "active", Lease.expires_at > now)).all()
        if any(lid not in holding for lid in live) or len(live) >= MAX_LIVE_LEASES:
            return None
        seen = select(Lease.region_id).where(Lease.token_id == token_id)
        region = session.scalar(select(Region).where(Region.project_id == project_id, Region.status == "gold",
                                                     Region.id.not_in(seen))
                                .order_by(func.random()).limit(1))
        if region is None:
            return None
        session.add(Lease(id=lease_id, region_id=region.id, token_id=token_id, state="active", created_at=now,
                          expires_at=expires, page=page))
        image = session.get(Image, region.image_id)
        leased = LeasedRegion.of(region, image)
    return dataclasses.replace(leased, status="leased", lease_id=lease_id, lease_expires_at=expires)


def read_mask(storage: Storage, key: str) -> np.ndarray:
    with PILImage.open(io.BytesIO(storage.read_bytes(key)), formats=["PNG"]) as img:
        return np.array(img, dtype=np.uint8)


def score(mask: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(pixel accuracy over the gold's labeled pixels, mIoU over classes either side labels there)."""
    known = gold != IGNORE
    if not known.any():
        return 1.0, 1.0
    m, g = mask[known], gold[known]
    accuracy = float((m == g).mean())
    ious = []
    for c in np.union1d(np.unique(g), np.unique(m[m != IGNORE])):
        union = int(((m == c) | (g == c)).sum())
        ious.append(int(((m == c) & (g == c)).sum()) / union)
    return accuracy, float(np.mean(ious))


def score_submission(storage: Storage, region: Region, ann: Annotation, mask: np.ndarray) -> None:
    ann.in_labels = False
    ann.gold_accuracy, ann.gold_miou = score(mask, read_mask(storage, region.gold_mask_path))


def gold_from_oracle(session: Session, storage: Storage, project_id: int, count: int) -> int:
    """Turn up to `count` queued regions whose image has an oracle mask into gold regions; how many."""
    made = 0
    with write_tx(session):
        regions = session.scalars(select(Region).join(Image, Image.id == Region.image_id).where(
            Region.project_id == project_id, Region.status == "queued", Image.oracle_mask_path.is_not(None))
            .order_by(func.random()).limit(count)
            .with_for_update(of=Region.__table__, skip_locked=True)).all()
        truths: dict[int, np.ndarray] = {}
        for region in regions:
            image = session.get(Image, region.image_id)
            if image.id not in truths:
                truths[image.id] = read_mask(storage, image.oracle_mask_path)
            answer = truths[image.id][region.y:region.y + region.h, region.x:region.x + region.w]
            if not (answer != IGNORE).any():
                continue
            _make_gold(storage, region, np.ascontiguousarray(answer))
            made += 1
    return made


def gold_from_annotation(session: Session, storage: Storage, ann: Annotation) -> Region:
    """A new gold region with this annotation's box and mask as its answer (the admin vouches for it)."""
    with write_tx(session):
        source = session.get(Region, ann.region_id) if ann.region_id else None
        image = session.get(Image, ann.image_id)
        region = Region(project_id=image.project_id, image_id=image.id, cycle_id=None, kind="grid",
                        x=ann.x, y=ann.y, w=ann.w, h=ann.h, superpixel_id=-1, score=0.0,
                        status="gold", prelabel_path=source.prelabel_path if source else None,
                        model_version=source.model_version if source else None)
        session.add(region)
        session.flush()
        _make_gold(storage, region, read_mask(storage, ann.mask_path))
    return region


def _make_gold(storage: Storage, region: Region, answer: np.ndarray) -> None:
    key = mask_key(region.project_id, f"gold-{region.id}")
    storage.write_bytes(key, encode_mask_png(answer))
    region.status, region.gold_mask_path = "gold", key
