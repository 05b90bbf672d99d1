"""A lease's lifecycle: renew, release, skip, and submitting its annotation."""

import json
from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.annotations import Effort, submit
from service.auth import CurrentToken, SessionDep
from service.auto_cycle import maybe_start_auto_cycle
from service.queue import QueueError, release, renew, skip
from service.routes.queue import NowDep, http_error
from service.schemas.common import LeaseId
from service.schemas.queue import AnnotationPublic, ClassAnswer, LeaseState, SkipRequest

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


async def _class_answer(request: Request) -> ClassAnswer | None:
    """A JSON body (a dominant-class region's answer), or None for a multipart upload. Read here, on the
    event loop, because the route's own body is the form; BodyLimitMiddleware has bounded it already."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return None
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": f"the body is not valid JSON: {exc}"}]) from None
    try:
        return ClassAnswer.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None


# The form is the route's declared body; the JSON one is read by _class_answer, so documented here.
ANSWER_BODIES = {"requestBody": {"content": {"application/json": {
    "schema": ClassAnswer.model_json_schema()}}}}


@router.post("/{lease_id}/annotation", status_code=status.HTTP_201_CREATED, response_model=AnnotationPublic,
             openapi_extra=ANSWER_BODIES)
def submit_mask(lease_id: LeaseId, request: Request, response: Response, session: SessionDep,
                token: CurrentToken, now: NowDep,
                answer: Annotated[ClassAnswer | None, Depends(_class_answer)],
                mask: Annotated[UploadFile | None, File()] = None,
                idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                                              pattern=r"^[\x20-\x7e]+$")] = None,
                active_seconds: Annotated[float | None, Form(ge=0, le=86_400)] = None,
                strokes: Annotated[int | None, Form(ge=0, le=1_000_000)] = None,
                ) -> AnnotationPublic:
    """Store the region's answer. A region whose lease says `annotation: exact` takes its mask, a
    multipart upload: an 8-bit PNG of class ids (255 = unlabeled), exactly the region's size. A region
    with `annotation: dominant` takes one class for its whole superpixel, a JSON body
    `{"class_id": 3, "active_seconds": 4.5}`; the stored mask is that class inside the superpixel and 255
    in the rest of its box, and its effort is one stroke.

    `active_seconds` (time the page had focus with input in the last seconds) and `strokes` are the
    effort the page measured; the server counts labeled pixels and pixels changed from the pre-label.
    """
    settings = request.app.state.settings
    if mask is None and answer is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "send the region's mask as a PNG upload (multipart field `mask`), or for a "
                            'region labeled with its dominant class a JSON body {"class_id": …}')
    data = mask.file.read(settings.max_upload_bytes + 1) if mask is not None else None
    if answer is not None:
        effort, class_id = Effort(active_seconds=answer.active_seconds), answer.class_id
    else:
        effort, class_id = Effort(active_seconds=active_seconds, strokes=strokes), None
    try:
        ann, replayed = submit(session, settings, lease_id, token, data, idempotency_key, class_id=class_id,
                               now=now, effort=effort)
    except QueueError as exc:
        raise http_error(exc) from exc
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        maybe_start_auto_cycle(session, settings, region_id=ann.region_id, now=now)
    out = AnnotationPublic.model_validate(ann)
    out.replayed = replayed
    return out

