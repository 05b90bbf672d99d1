"""Label quality and effort figures of a project, overall and per annotator (any token may read them).

Gold answers never appear here: only scores of submissions against them.
"""

from collections import defaultdict

from fastapi import APIRouter
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.auth import CurrentToken, SessionDep
from service.gold import read_mask
from service.models import CURRENT, Annotation, Cycle, Image, Project, Region, Token
from service.quality import agreement_iou, quality_of
from service.routes.deps import project_or_404
from service.schemas.common import ProjectId
from service.schemas.review import (
    AnnotatorEffort,
    AnnotatorQuality,
    EffortPoint,
    EffortStats,
    QualityStats,
)
from service.storage import StorageDep

router = APIRouter(prefix="/api/projects", tags=["quality"])
HUMAN = Annotation.source == "human"


def _in_project(project_id: int):
    return Annotation.image_id.in_(select(Image.id).where(Image.project_id == project_id))


def _names(session: Session, ids) -> dict[int, str]:
    ids = [i for i in ids if i is not None]
    return dict(session.execute(select(Token.id, Token.name).where(Token.id.in_(ids))).all()) if ids else {}


def _own_lines(token, rows: list) -> list:
    """Per-annotator lines: all of them for an admin or reviewer, only the caller's own otherwise."""
    return rows if token.role != "annotator" else [r for r in rows if r.token_id == token.id]


def _ratio(a, b) -> float | None:
    return None if not b else float(a) / float(b)


@router.get("/{project_id}/quality", response_model=QualityStats)
def quality_stats(project_id: ProjectId, session: SessionDep, storage: StorageDep,
                  token: CurrentToken) -> QualityStats:
    project = project_or_404(session, project_id, token)
    quality = quality_of(session, project_id)
    state = Annotation.review_state

    def count(value):
        return func.sum(case((state == value, 1), else_=0))

    rows = session.execute(
        select(Annotation.token_id, func.count(), count("accepted"), count("rejected"), count("fixed"),
               func.count(Annotation.gold_miou), func.avg(Annotation.gold_accuracy),
               func.avg(Annotation.gold_miou))
        .where(_in_project(project_id), HUMAN, CURRENT).group_by(Annotation.token_id)).all()
    names = _names(session, [r[0] for r in rows])
    annotators = []
    for tid, n, acc, rej, fixed, gold_n, gold_acc, gold_miou in rows:
        reviewed = int(acc or 0) + int(rej or 0) + int(fixed or 0)
        annotators.append(AnnotatorQuality(
            token_id=tid, name=names.get(tid, "(deleted token)"), annotations=n, reviewed=reviewed,
            accepted=int(acc or 0), rejected=int(rej or 0), fixed=int(fixed or 0),
            acceptance=_ratio(acc or 0, reviewed), gold_scored=gold_n,
            gold_accuracy=gold_acc, gold_miou=gold_miou,
            flagged=gold_miou is not None and gold_miou < quality.min_gold_miou))
    pending = session.scalar(select(func.count()).select_from(Annotation)
                             .where(_in_project(project_id), state == "pending"))
    gold = session.scalar(select(func.count()).select_from(Region).where(Region.project_id == project_id,
                                                                         Region.status == "gold"))
    consensus = session.scalars(select(Region).where(Region.project_id == project_id,
                                                     Region.overlap > 1)).all()
    complete, agreement = _agreement(session, storage, project, consensus)
    return QualityStats(project_id=project_id, review=quality.review, review_pending=pending or 0,
                        gold_regions=gold or 0, consensus_regions=len(consensus), consensus_complete=complete,
                        agreement_iou=agreement, annotators=_own_lines(token, annotators))


def _agreement(session: Session, storage, project: Project, regions: list[Region]) -> tuple[int, dict]:
    """Complete consensus regions, and per class name the mean of their pairwise vote IoUs."""
    per_class: dict[int, list[float]] = defaultdict(list)
    complete = 0
    for region in regions:
        votes = session.scalars(select(Annotation.mask_path).where(Annotation.region_id == region.id, HUMAN,
                                                                   CURRENT)
                                .order_by(Annotation.id)).all()
        if len(votes) < region.overlap:
            continue
        complete += 1
        for c, iou in agreement_iou([read_mask(storage, v) for v in votes], len(project.classes)).items():
            per_class[c].append(iou)
    names = {c["id"]: c["name"] for c in project.classes}
    return complete, {names[c]: sum(v) / len(v) for c, v in sorted(per_class.items())}


def _effort_row(tid, name, n, seconds, timed, unchanged, with_prelabel, strokes, stroked, changed):
    return AnnotatorEffort(
        token_id=tid, name=name, annotations=n, active_hours=float(seconds or 0) / 3600,
        seconds_per_region=_ratio(seconds or 0, timed), unchanged_share=_ratio(unchanged or 0, with_prelabel),
        strokes_per_region=_ratio(strokes or 0, stroked), pixels_changed=int(changed or 0))


@router.get("/{project_id}/effort", response_model=EffortStats)
def effort_stats(project_id: ProjectId, session: SessionDep, token: CurrentToken) -> EffortStats:
    """Annotation effort: active hours, seconds per region, share accepted unchanged, strokes, pixels
    changed from the pre-label; and the learning curve against annotation hours."""
    project_or_404(session, project_id, token)
    figures = (func.count(), func.sum(Annotation.active_seconds), func.count(Annotation.active_seconds),
               func.sum(case((Annotation.unchanged.is_(True), 1), else_=0)), func.count(Annotation.unchanged),
               func.sum(Annotation.strokes), func.count(Annotation.strokes),
               func.sum(Annotation.pixels_changed))
    where = (_in_project(project_id), HUMAN)
    rows = session.execute(select(Annotation.token_id, *figures).where(*where)
                           .group_by(Annotation.token_id)).all()
    names = _names(session, [r[0] for r in rows])
    total = session.execute(select(*figures).where(*where)).one()
    curve = []
    for c in session.scalars(select(Cycle).where(Cycle.project_id == project_id).order_by(Cycle.number)):
        seconds = session.scalar(select(func.sum(Annotation.active_seconds))
                                 .where(*where, Annotation.created_at < c.created_at))
        m = c.metrics or {}
        curve.append(EffortPoint(number=c.number, miou=m.get("miou"),
                                 labeled_fraction=m.get("labeled_fraction"),
                                 hours=float(seconds or 0) / 3600))
    return EffortStats(project_id=project_id, total=_effort_row(None, "all", *total),
                       annotators=_own_lines(token, [_effort_row(r[0], names.get(r[0], "(deleted token)"),
                                                                 *r[1:]) for r in rows]),
                       curve=curve)
