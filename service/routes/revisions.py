"""Going back (service/revisions.py): the caller's recent submissions, a submission's mask, and a
revision of it. Every route is the caller's own work only: another annotator's submission on the same
region is a 404 like a region without one."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, Request, Response, UploadFile, status
from sqlalchemy.orm import Session

from service.annotations import Effort
from service.auth import CurrentToken, SessionDep
from service.models import Annotation, Image, Region
from service.queue import QueueError
from service.revisions import (
    MAX_RECENT,
    RECENT_LIMIT,
    Revision,
    own_submission,
    recent_submissions,
    revise,
    why_not_editable,
)
from service.routes.deps import project_or_404, region_or_404
from service.routes.queue import crop_box, default_context, http_error, region_public
from service.schemas.common import ProjectId, RegionId
from service.schemas.queue import AnnotationPublic, CropBox, ImageBrief
from service.schemas.revision import RecentSubmission
from service.schemas.token import TokenPublic
from service.storage import StorageDep

router = APIRouter(prefix="/api", tags=["revisions"])
# A submission's mask changes when it is revised, under the same address: the page must ask each time.
NO_STORE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def _recent(session: Session, ann: Annotation) -> RecentSubmission:
    region = session.get(Region, ann.region_id)
    image = session.get(Image, ann.image_id)
    context = default_context(region)
    x, y, w, h = crop_box(region, image, context)
    why = why_not_editable(session, ann, region)
    return RecentSubmission(
        annotation_id=ann.id, created_at=ann.created_at, region=region_public(region),
        image=ImageBrief(id=image.id, stem=image.stem, width=image.width, height=image.height),
        crop=CropBox(url=f"/api/regions/{region.id}/crop?context={context}", context=context,
                     x=x, y=y, w=w, h=h),
        prelabel_url=f"/api/regions/{region.id}/prelabel" if region.prelabel_path else None,
        mask_url=f"/api/regions/{region.id}/my-annotation",
        editable=why is None, reason=why)


@router.get("/projects/{project_id}/my-recent", response_model=list[RecentSubmission])
def my_recent(project_id: ProjectId, session: SessionDep, token: CurrentToken,
              limit: Annotated[int, Query(ge=1, le=MAX_RECENT)] = RECENT_LIMIT) -> list[RecentSubmission]:
    """The caller's last submissions in the project (one per region, the current one), newest first,
    each saying whether it can still be edited and, if not, why."""
    project_or_404(session, project_id, token)
    return [_recent(session, ann) for ann in recent_submissions(session, project_id, token.id, limit)]


def _own_or_404(session: Session, region_id: int, token: TokenPublic) -> tuple[Region, Annotation]:
    region = region_or_404(session, region_id, token)
    ann = own_submission(session, region.id, token.id)
    if ann is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"you have no submission on region {region_id}")
    return region, ann


@router.get("/regions/{region_id}/my-annotation", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def my_annotation(region_id: RegionId, session: SessionDep, storage: StorageDep,
                  token: CurrentToken) -> Response:
    """The caller's current mask for the region, as submitted (8-bit class ids, 255 = unlabeled).

    `X-Annotation-Id` names it; `X-Editable` says whether it can still be revised."""
    region, ann = _own_or_404(session, region_id, token)
    headers = {**NO_STORE, "X-Annotation-Id": str(ann.id),
               "X-Editable": "false" if why_not_editable(session, ann, region) else "true"}
    return Response(storage.read_bytes(ann.mask_path), media_type="image/png", headers=headers)


@router.post("/regions/{region_id}/my-annotation", status_code=status.HTTP_201_CREATED,
             response_model=AnnotationPublic)
def revise_annotation(region_id: RegionId, request: Request, response: Response, session: SessionDep,
                      token: CurrentToken, mask: Annotated[UploadFile, File()],
                      idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                                                    pattern=r"^[\x20-\x7e]+$")] = None,
                      active_seconds: Annotated[float | None, Form(ge=0, le=86_400)] = None,
                      strokes: Annotated[int | None, Form(ge=0, le=1_000_000)] = None) -> AnnotationPublic:
    """Replace the caller's submission on the region with a new mask (the same format as a lease's
    submission). The earlier one stays stored but no longer counts; this one counts in its place.

    409 when it can no longer be edited: a cycle has used it, a reviewer judged it, or its consensus
    majority is written; the message says which."""
    settings = request.app.state.settings
    region = region_or_404(session, region_id, token)
    data = mask.file.read(settings.max_upload_bytes + 1)
    revision = Revision(mask_png=data, idempotency_key=idempotency_key,
                        effort=Effort(active_seconds=active_seconds, strokes=strokes))
    try:
        ann, replayed = revise(session, settings, region, token, revision)
    except QueueError as exc:
        raise http_error(exc) from exc
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    out = AnnotationPublic.model_validate(ann)
    out.replayed = replayed
    return out
