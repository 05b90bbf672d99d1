"""Projects: create, list, read, update, delete. Writing needs an admin token; reading any token."""

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import AdminToken, CurrentToken, SessionDep, token_cache
from service.auto_cycle import rule_of, state_of
from service.models import Cycle, Image, Project, Token
from service.quality import forget_quality
from service.routes.deps import project_or_404
from service.schemas.common import ProjectId
from service.schemas.project import (
    AutoCycleSettings,
    AutoCycleStatus,
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
    QualitySettings,
    TrainingSettings,
)
from service.storage import StorageDep

router = APIRouter(prefix="/api/projects", tags=["projects"])


def _public(session: Session, project: Project) -> ProjectPublic:
    count = session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project.id))
    out = ProjectPublic.model_validate(project)
    out.image_count = count or 0
    return out


def _name_taken(session: Session, name: str, exclude_id: int | None = None) -> bool:
    q = select(Project.id).where(Project.name == name)
    if exclude_id is not None:
        q = q.where(Project.id != exclude_id)
    return session.scalar(q) is not None


def _commit_or_409(session: Session, name: str) -> None:
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create won the unique name
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"a project named {name!r} exists") from exc


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic)
def create_project(body: ProjectCreate, session: SessionDep, _: AdminToken) -> ProjectPublic:
    name = body.name.strip()
    if _name_taken(session, name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"a project named {name!r} exists")
    project = Project(name=name, classes=[c.model_dump() for c in body.classes],
                      region=body.region.model_dump(), ignore_index=body.ignore_index,
                      training=body.training.model_dump(), quality=body.quality.model_dump())
    session.add(project)
    project.auto_cycle = body.auto_cycle.model_dump()
    _commit_or_409(session, name)
    return _public(session, project)


@router.get("", response_model=list[ProjectPublic])
def list_projects(session: SessionDep, token: CurrentToken) -> list[ProjectPublic]:
    """The projects this token may use."""
    counts = dict(session.execute(select(Image.project_id, func.count()).group_by(Image.project_id)).all())
    out = []
    for project in session.scalars(select(Project).order_by(Project.id)):
        if not token.can_see(project.id):
            continue
        item = ProjectPublic.model_validate(project)
        item.image_count = counts.get(project.id, 0)
        out.append(item)
    return out


@router.get("/{project_id}", response_model=ProjectPublic)
def read_project(project_id: ProjectId, session: SessionDep, token: CurrentToken) -> ProjectPublic:
    return _public(session, project_or_404(session, project_id, token))


@router.patch("/{project_id}", response_model=ProjectPublic)
def update_project(project_id: ProjectId, body: ProjectUpdate, session: SessionDep,
                   _: AdminToken) -> ProjectPublic:
    project = project_or_404(session, project_id)
    if body.name is not None:
        name = body.name.strip()
        if _name_taken(session, name, exclude_id=project.id):
            raise HTTPException(status.HTTP_409_CONFLICT, f"a project named {name!r} exists")
        project.name = name
    if body.classes is not None:
        if len(body.classes) < len(project.classes):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "classes can be renamed, recolored or appended, not removed: stored "
                                "masks refer to their ids")
        project.classes = [c.model_dump() for c in body.classes]
    if body.region is not None:
        project.region = body.region.model_dump()
    if body.auto_cycle is not None:
        try:
            auto = AutoCycleSettings.model_validate({**(project.auto_cycle or {}), **body.auto_cycle})
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _errors(exc, "auto_cycle")) from exc
        project.auto_cycle = auto.model_dump()
    if body.training is not None:
        try:
            merged = TrainingSettings.model_validate({**project.training, **body.training})
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _errors(exc, "training")) from exc
        project.training = merged.model_dump()
    if body.quality is not None:
        try:
            quality = QualitySettings.model_validate({**(project.quality or {}), **body.quality})
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _errors(exc, "quality")) from exc
        project.quality = quality.model_dump()
    _commit_or_409(session, project.name)
    forget_quality(project.id)
    return _public(session, project)


def _errors(exc: ValueError, field: str) -> list | str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return [{"loc": ["body", field, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in errors()]
    return str(exc)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(project_id: ProjectId, request: Request, session: SessionDep, storage: StorageDep,
                   _: AdminToken) -> Response:
    """Delete the project, its rows (database cascades) and then its files."""
    project = project_or_404(session, project_id)
    busy = session.scalar(select(func.count()).select_from(Cycle).where(
        Cycle.project_id == project.id, Cycle.status.in_(("queued", "running"))))
    if busy:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"project {project_id} has {busy} queued or running cycle(s); cancel them first")
    session.delete(project)
    for scoped in session.scalars(select(Token).where(Token.projects.is_not(None))):
        if project_id in scoped.projects:  # a reused id (SQLite) must not inherit the old scope
            scoped.projects = [p for p in scoped.projects if p != project_id]
            token_cache(request).forget(scoped.id)
    session.commit()
    # Files go after the commit: a crash in between leaves orphan files, never rows without files.
    storage.delete_project(project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{project_id}/auto-cycle", response_model=AutoCycleStatus)
def auto_cycle_status(project_id: ProjectId, session: SessionDep, token: CurrentToken) -> AutoCycleStatus:
    """The project's auto-cycle rule (set with PATCH, `auto_cycle`) and its progress: labels since the
    latest cycle started, regions waiting, whether a cycle is queued or running."""
    project = project_or_404(session, project_id, token)
    state = state_of(session, project.id, rule_of(project.auto_cycle))
    last = state.last_cycle
    return AutoCycleStatus(project_id=project.id, **state.rule.model_dump(),
                           last_cycle=last.number if last else None, active=state.active,
                           labeled_since=state.labeled_since, waiting=state.waiting)
