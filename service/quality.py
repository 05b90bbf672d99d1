"""Label quality on submission: which annotations await review, effort against the pre-label, consensus.

A project's QualitySettings are read on every lease (the gold draw) and every submission, so each API
worker keeps them for QUALITY_CACHE_SECONDS; a PATCH through this worker applies at once.

What feeds training and exports is `Annotation.in_labels` (service/labels.assemble_labels reads only
those): an annotation awaiting review, a rejected or fixed one, a gold submission and a consensus vote
do not; the consensus region's majority is an annotation of its own (source `consensus`).
"""

import random
import threading
import time

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.masks import IGNORE
from service.models import CURRENT, Annotation, Lease, Project, Region
from service.schemas.project import QualitySettings

QUALITY_CACHE_SECONDS = 10.0
_cache: dict[tuple[str, int], tuple[float, QualitySettings]] = {}  # (database, project id)
_cache_lock = threading.Lock()


def quality_of(session: Session, project_id: int) -> QualitySettings | None:
    """The project's quality settings (cached a few seconds per worker); None if there is no project."""
    key = (str(session.get_bind().url), project_id)
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    stored = session.scalar(select(Project.quality).where(Project.id == project_id))
    exists = stored is not None or session.scalar(select(Project.id).where(Project.id == project_id))
    if not exists:
        return None
    quality = QualitySettings.model_validate(stored or {})
    with _cache_lock:
        _cache[key] = (time.monotonic() + QUALITY_CACHE_SECONDS, quality)
    return quality


def forget_quality(project_id: int) -> None:
    with _cache_lock:
        for key in [k for k in _cache if k[1] == project_id]:
            del _cache[key]


def draw_gold(quality: QualitySettings | None, rng: random.Random = random) -> bool:  # type: ignore[assignment]
    return quality is not None and quality.gold_rate > 0 and rng.random() < quality.gold_rate


def prelabel_diff(mask: np.ndarray, prelabel: np.ndarray | None) -> tuple[int, int | None, bool | None]:
    """(labeled pixels, pixels that differ from the pre-label shown, unchanged?); None without one."""
    labeled = int((mask != IGNORE).sum())
    if prelabel is None or prelabel.shape != mask.shape:
        return labeled, None, None
    changed = int((mask != prelabel).sum())
    return labeled, changed, changed == 0


def mean_gold_miou(session: Session, project_id: int, token_id: int) -> float | None:
    return session.scalar(select(func.avg(Annotation.gold_miou))
                          .join(Region, Region.id == Annotation.region_id)
                          .where(Region.project_id == project_id, Annotation.token_id == token_id,
                                 Annotation.gold_miou.is_not(None), CURRENT))


def needs_review(session: Session, quality: QualitySettings, project_id: int, token_id: int | None,
                 rng: random.Random = random) -> bool:  # type: ignore[assignment]
    """Whether a new annotation waits for a reviewer before it counts."""
    if quality.review == "all":
        return True
    if quality.review == "sample" and rng.random() < quality.review_rate:
        return True
    if quality.review_flagged and token_id is not None:
        score = mean_gold_miou(session, project_id, token_id)
        return score is not None and score < quality.min_gold_miou
    return False


def wants_overlap(session: Session, quality: QualitySettings, region: Region, ann: Annotation,
                  rng: random.Random = random) -> int:  # type: ignore[assignment]
    """The number of annotators this region wants: drawn once, at its first annotation `ann`."""
    if region.overlap > 1 or quality.overlap <= 1:
        return region.overlap
    others = session.scalar(select(func.count()).select_from(Annotation)
                            .where(Annotation.region_id == region.id, Annotation.id != ann.id))
    if others == 0 and rng.random() < quality.overlap_rate:
        region.overlap = quality.overlap
    return region.overlap


def consensus_votes(session: Session, region_id: int) -> list[Annotation]:
    return list(session.scalars(select(Annotation).where(Annotation.region_id == region_id,
                                                         Annotation.source == "human", CURRENT)
                                .order_by(Annotation.id)))


def majority(masks: list[np.ndarray]) -> np.ndarray:
    """Per pixel, the class most votes gave (unlabeled votes abstain); a tie, or no vote, is unlabeled."""
    stack = np.stack(masks)
    classes = [int(c) for c in np.unique(stack) if c != IGNORE]
    out = np.full(stack.shape[1:], IGNORE, dtype=np.uint8)
    if not classes:
        return out
    counts = np.stack([(stack == c).sum(axis=0) for c in classes])
    best = counts.max(axis=0)
    winners = (counts == best).sum(axis=0)
    pick = np.asarray(classes, dtype=np.uint8)[counts.argmax(axis=0)]
    keep = (best > 0) & (winners == 1)
    out[keep] = pick[keep]
    return out


def agreement_iou(masks: list[np.ndarray], num_classes: int) -> dict[int, float]:
    """Per class, the mean IoU over every pair of votes (classes no vote of a pair has are left out)."""
    sums: dict[int, list[float]] = {}
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            a, b = masks[i], masks[j]
            for c in range(num_classes):
                union = int(((a == c) | (b == c)).sum())
                if union:
                    sums.setdefault(c, []).append(int(((a == c) & (b == c)).sum()) / union)
    return {c: float(np.mean(v)) for c, v in sorted(sums.items())}


def end_vote(lease: Lease) -> None:
    """A consensus vote keeps the region from its annotator for good, as a skip does."""
    lease.state = "consensus"
