"""A lease's lifecycle: renew, release, skip, and submitting its annotation."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, Response, UploadFile, status

from service.annotations import Effort, submit
from service.auth import CurrentToken, SessionDep
from service.auto_cycle import maybe_start_auto_cycle
from service.queue import QueueError, release, renew, skip
from service.routes.queue import NowDep, http_error
from service.schemas.common import LeaseId
from service.schemas.queue import AnnotationPublic, LeaseState, SkipRequest

router = APIRouter(prefix="/api/leases", tags=["leases"])


@router.post("/{lease_id}/renew", response_model=LeaseState)
def renew_lease(lease_id: LeaseId, request: Request, session: SessionDep, token: CurrentToken,
                now: NowDep) -> LeaseState:
    """Extend a live lease by the lease TTL from now; 409 once it expired."""
    try:
        return renew(session, request.app.state.settings, lease_id, token, now)
    except QueueError as exc:
        raise http_error(exc) from exc


@router.post("/{lease_id}/release", response_model=LeaseState)
def release_lease(lease_id: LeaseId, session: SessionDep, token: CurrentToken, now: NowDep) -> LeaseState:
    """Give the region back to the queue, unlabeled."""
    try:
        return release(session, lease_id, token, now)
    except QueueError as exc:
        raise http_error(exc) from exc


@router.post("/{lease_id}/skip", response_model=LeaseState)
def skip_lease(lease_id: LeaseId, body: SkipRequest, request: Request, session: SessionDep,
               token: CurrentToken, now: NowDep) -> LeaseState:
    """Give the region back and never get it again; it leaves the queue after enough skips."""
    settings = request.app.state.settings
    try:
        lease = skip(session, settings, lease_id, token, body.reason.strip() or "-", now)
    except QueueError as exc:
        raise http_error(exc) from exc
    maybe_start_auto_cycle(session, settings, region_id=lease.region_id, now=now)
    return lease


@router.post("/{lease_id}/annotation", status_code=status.HTTP_201_CREATED, response_model=AnnotationPublic)
def submit_mask(lease_id: LeaseId, request: Request, response: Response, session: SessionDep,
                token: CurrentToken, now: NowDep, mask: Annotated[UploadFile, File()],
                idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                                              pattern=r"^[\x20-\x7e]+$")] = None,
                active_seconds: Annotated[float | None, Form(ge=0, le=86_400)] = None,
                strokes: Annotated[int | None, Form(ge=0, le=1_000_000)] = None,
                ) -> AnnotationPublic:
    """Store the region's mask: an 8-bit PNG of class ids (255 = unlabeled), exactly the region's size.

    `active_seconds` (time the page had focus with input in the last seconds) and `strokes` are the
    effort the page measured; the server counts labeled pixels and pixels changed from the pre-label.
    """
    settings = request.app.state.settings
    data = mask.file.read(settings.max_upload_bytes + 1)
    effort = Effort(active_seconds=active_seconds, strokes=strokes)
    try:
        ann, replayed = submit(session, settings, lease_id, token, data, idempotency_key, now=now,
                               effort=effort)
    except QueueError as exc:
        raise http_error(exc) from exc
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        maybe_start_auto_cycle(session, settings, region_id=ann.region_id, now=now)
    out = AnnotationPublic.model_validate(ann)
    out.replayed = replayed
    return out

