"""Cycles: start (admin), list, read, cancel (admin), and a project's learning curve."""

import logging

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import update

from service.auth import AdminToken, CurrentToken, SessionDep
from service.cycles import CycleConflict, create_cycle, project_cycles, request_cancel, send_run_cycle
from service.model_files import best_cycle
from service.models import Cycle, utcnow
from service.routes.deps import cycle_or_404, project_or_404
from service.schemas.common import CycleId, ProjectId
from service.schemas.cycle import CyclePublic, MetricsPoint, ProjectMetrics

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["cycles"])






@router.post("/projects/{project_id}/cycles", status_code=status.HTTP_202_ACCEPTED,
             response_model=CyclePublic)
def start_cycle(project_id: ProjectId, request: Request, session: SessionDep, _: AdminToken) -> Cycle:
    """Queue the project's next cycle; a worker on the `gpu` queue runs it. 409 while one is active."""
    project = project_or_404(session, project_id)
    try:
        cycle = create_cycle(session, project)
    except CycleConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    try:
        send_run_cycle(request.app.state.settings, cycle.id)
    except Exception as exc:  # the row is committed but no worker will hear of it: say so, clearly
        log.exception("could not send cycle %s to the broker", cycle.id)
        session.execute(update(Cycle).where(Cycle.id == cycle.id, Cycle.status == "queued").values(
            status="failed", finished_at=utcnow(), error=f"could not reach the broker: {exc}"))
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"cycle {cycle.id} could not be sent to the broker: {exc}") from exc
    return cycle


@router.get("/projects/{project_id}/cycles", response_model=list[CyclePublic])
def list_cycles(project_id: ProjectId, session: SessionDep, token: CurrentToken) -> list[Cycle]:
    project_or_404(session, project_id, token)
    return list(project_cycles(session, project_id))


@router.get("/cycles/{cycle_id}", response_model=CyclePublic)
def read_cycle(cycle_id: CycleId, session: SessionDep, token: CurrentToken) -> Cycle:
    return cycle_or_404(session, cycle_id, token)


@router.post("/cycles/{cycle_id}/cancel", response_model=CyclePublic)
def cancel_cycle(cycle_id: CycleId, session: SessionDep, _: AdminToken) -> Cycle:
    """A queued cycle is cancelled now; a running one stops at its next training step (then its
    status turns `cancelled`, with no regions written). 409 if it has already finished."""
    cycle = cycle_or_404(session, cycle_id)
    try:
        return request_cancel(session, cycle)
    except CycleConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("/projects/{project_id}/metrics", response_model=ProjectMetrics)
def project_metrics(project_id: ProjectId, session: SessionDep, token: CurrentToken) -> ProjectMetrics:
    """The learning curve: for every cycle, the labeled share of train pixels it trained on and the
    validation mIoU it reached (null until it succeeds, or without validation images)."""
    project = project_or_404(session, project_id, token)
    points = []
    for c in project_cycles(session, project_id):
        m = c.metrics or {}
        points.append(MetricsPoint(cycle_id=c.id, number=c.number, status=c.status,
                                   labeled_fraction=m.get("labeled_fraction"), miou=m.get("miou"),
                                   per_class_iou=m.get("per_class_iou")))
    names = [c["name"] for c in sorted(project.classes, key=lambda c: c["id"])]
    best = best_cycle(session, project_id)
    return ProjectMetrics(project_id=project.id, class_names=names, cycles=points,
                          best_cycle_id=best.id if best else None)
