"""Cycles: start (admin), list, read, cancel (admin), and a project's learning curve."""

from fastapi import APIRouter, HTTPException, Request, status

from service.auth import AdminToken, CurrentToken, SessionDep
from service.auto_cycle import rule_of, state_of
from service.cycles import CycleConflict, create_cycle, dispatch_cycle, project_cycles, request_cancel
from service.models import Cycle
from service.routes.deps import cycle_or_404, project_or_404
from service.schemas.cycle import AutoCycleStatus, CyclePublic, MetricsPoint, ProjectMetrics

router = APIRouter(prefix="/api", tags=["cycles"])






@router.post("/projects/{project_id}/cycles", status_code=status.HTTP_202_ACCEPTED,
             response_model=CyclePublic)
def start_cycle(project_id: int, request: Request, session: SessionDep, _: AdminToken) -> Cycle:
    """Queue the project's next cycle; a worker on the `gpu` queue runs it. 409 while one is active."""
    project = project_or_404(session, project_id)
    try:
        cycle = create_cycle(session, project)
    except CycleConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    error = dispatch_cycle(session, request.app.state.settings, cycle)
    if error is not None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"cycle {cycle.id}: {error}")
    return cycle


@router.get("/projects/{project_id}/cycles", response_model=list[CyclePublic])
def list_cycles(project_id: int, session: SessionDep, _: CurrentToken) -> list[Cycle]:
    project_or_404(session, project_id)
    return list(project_cycles(session, project_id))


@router.get("/projects/{project_id}/auto-cycle", response_model=AutoCycleStatus)
def auto_cycle_status(project_id: int, session: SessionDep, _: CurrentToken) -> AutoCycleStatus:
    """The project's auto-cycle rule (set with PATCH /api/projects/{id}, `auto_cycle`) and its progress:
    labels since the latest cycle started, regions waiting, whether a cycle is active."""
    project = project_or_404(session, project_id)
    state = state_of(session, project.id, rule_of(project.auto_cycle))
    last = state.last_cycle
    return AutoCycleStatus(project_id=project.id, **state.rule.model_dump(),
                           last_cycle=last.number if last else None, active=state.active,
                           labeled_since=state.labeled_since, waiting=state.waiting)


@router.get("/cycles/{cycle_id}", response_model=CyclePublic)
def read_cycle(cycle_id: int, session: SessionDep, _: CurrentToken) -> Cycle:
    return cycle_or_404(session, cycle_id)


@router.post("/cycles/{cycle_id}/cancel", response_model=CyclePublic)
def cancel_cycle(cycle_id: int, session: SessionDep, _: AdminToken) -> Cycle:
    """A queued cycle is cancelled now; a running one stops at its next training step (then its
    status turns `cancelled`, with no regions written). 409 if it has already finished."""
    cycle = cycle_or_404(session, cycle_id)
    try:
        return request_cancel(session, cycle)
    except CycleConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("/projects/{project_id}/metrics", response_model=ProjectMetrics)
def project_metrics(project_id: int, session: SessionDep, _: CurrentToken) -> ProjectMetrics:
    """The learning curve: for every cycle, the labeled share of train pixels it trained on and the
    validation mIoU it reached (null until it succeeds, or without validation images)."""
    project = project_or_404(session, project_id)
    points = []
    for c in project_cycles(session, project_id):
        m = c.metrics or {}
        points.append(MetricsPoint(cycle_id=c.id, number=c.number, status=c.status,
                                   labeled_fraction=m.get("labeled_fraction"), miou=m.get("miou"),
                                   per_class_iou=m.get("per_class_iou")))
    names = [c["name"] for c in sorted(project.classes, key=lambda c: c["id"])]
    return ProjectMetrics(project_id=project.id, class_names=names, cycles=points)

