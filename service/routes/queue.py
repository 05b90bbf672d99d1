"""The queue of a project: lease the next region, and the queue's statistics."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from sqlalchemy import and_, case, func, select

from service.auth import CurrentToken, SessionDep
from service.dominant import region_annotation
from service.gold import claim_gold
from service.models import CURRENT, Annotation, Image, Region, Token
from service.quality import draw_gold, quality_of
from service.queue import ImageRef, LeasedRegion, QueueError, lease_next, request_now
from service.routes.deps import in_scope, project_or_404
from service.schemas.common import ProjectId
from service.schemas.queue import (
    AnnotatorStats,
    CropBox,
    ImageBrief,
    LeasePublic,
    LeaseRequest,
    QueueStats,
    RegionPublic,
)

router = APIRouter(prefix="/api/projects", tags=["queue"])


async def _now(request: Request) -> datetime:  # async: no I/O, so no hop to the thread pool
    return request_now(request)


NowDep = Annotated[datetime, Depends(_now)]


def http_error(exc: QueueError) -> HTTPException:
    return HTTPException(exc.status, exc.message)




def default_context(region: Region | LeasedRegion) -> int:
    """Context shown around a region: one region's side, within [16, 256] pixels."""
    return max(16, min(256, max(region.w, region.h)))


def crop_box(region: Region | LeasedRegion, image: Image | ImageRef,
             context: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the region plus `context` pixels on each side, clipped to the image."""
    x0, y0 = max(0, region.x - context), max(0, region.y - context)
    x1 = min(image.width, region.x + region.w + context)
    y1 = min(image.height, region.y + region.h + context)
    return x0, y0, x1 - x0, y1 - y0


def region_public(region: Region | LeasedRegion) -> RegionPublic:
    out = RegionPublic.model_validate(region)
    if out.status == "gold":  # never tell: a gold region reads as a leased one
        out.status = "leased"
    out.has_prelabel = region.prelabel_path is not None
    return out


def lease_public(region: LeasedRegion, ttl: int, annotation: str = "exact") -> LeasePublic:
    image = region.image
    context = default_context(region)
    x, y, w, h = crop_box(region, image, context)
    public = region_public(region)
    public.annotation = annotation  # what the page submits: a mask, or one class (service/dominant.py)
    return LeasePublic(
        lease_id=region.lease_id, expires_at=region.lease_expires_at, ttl_seconds=ttl,
        region=public,
        image=ImageBrief(id=image.id, stem=image.stem, width=image.width, height=image.height),
        crop=CropBox(url=f"/api/regions/{region.id}/crop?context={context}", context=context,
                     x=x, y=y, w=w, h=h),
        prelabel_url=f"/api/regions/{region.id}/prelabel" if region.prelabel_path else None,
    )


@router.post("/{project_id}/queue/lease", response_model=LeasePublic,
             responses={204: {"description": "The queue is empty."}})
def lease(project_id: ProjectId, request: Request, session: SessionDep, token: CurrentToken, now: NowDep,
          body: Annotated[LeaseRequest | None, Body()] = None) -> LeasePublic | Response:
    """Lease the best queued region, or get back the live lease the caller already holds."""
    in_scope(token, project_id)  # no database read: the hot path stays one statement
    settings = request.app.state.settings
    holding, page = (body.holding, body.page) if body else ([], None)
    try:
        region = None
        if draw_gold(quality_of(session, project_id)):  # a gold region, if this page may claim one now
            region = claim_gold(session, settings, project_id, token.id, page, set(holding), now)
        if region is None:
            region = lease_next(session, settings, project_id, token, holding=holding, page=page, now=now)
    except QueueError as exc:
        raise http_error(exc) from exc
    if region is None:
        project_or_404(session, project_id)  # only now: the hot path skips this read
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return lease_public(region, settings.lease_ttl_seconds, region_annotation(session, region))


@router.get("/{project_id}/queue/stats", response_model=QueueStats)
def queue_stats(project_id: ProjectId, session: SessionDep, token: CurrentToken, now: NowDep) -> QueueStats:
    """The queue's counts; per annotator for an admin, only the caller's own line for an annotator."""
    project_or_404(session, project_id, token)
    in_project = Region.project_id == project_id
    told = Region.status != "gold"  # gold regions are never told apart
    counts = dict(session.execute(select(Region.status, func.count()).where(in_project, told)
                                  .group_by(Region.status)).all())
    live = and_(Region.status == "leased", Region.lease_expires_at > now)
    leased_by = dict(session.execute(select(Region.lease_token_id, func.count()).where(in_project, live)
                                     .group_by(Region.lease_token_id)).all())
    leased = sum(leased_by.values())
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = session.execute(
        select(Annotation.token_id, func.count(), func.sum(case((Annotation.created_at >= day, 1), else_=0)))
        .join(Region, Region.id == Annotation.region_id).where(in_project, CURRENT)
        .group_by(Annotation.token_id)).all()
    done = {tid: (int(total), int(today or 0)) for tid, total, today in rows}
    ids = set(done) | set(leased_by)
    names = dict(session.execute(select(Token.id, Token.name).where(Token.id.in_([i for i in ids if i])))
                 .all())
    annotators = [AnnotatorStats(token_id=tid, name=names.get(tid, "(deleted token)"),
                                 leased=leased_by.get(tid, 0), labeled_total=done.get(tid, (0, 0))[0],
                                 labeled_today=done.get(tid, (0, 0))[1])
                  for tid in sorted(ids, key=lambda i: (i is None, i or 0))]
    return QueueStats(
        project_id=project_id, total=sum(counts.values()),
        queued=counts.get("queued", 0) + counts.get("leased", 0) - leased, leased=leased,
        labeled=counts.get("labeled", 0), skipped=counts.get("skipped", 0),
        labeled_today=sum(a.labeled_today for a in annotators),
        annotators=annotators if token.role == "admin" else [a for a in annotators if a.token_id == token.id])
