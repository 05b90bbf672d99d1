"""Review: the next annotation awaiting review, its mask, and accept / reject / fix (reviewer or admin).
Gold regions: made from oracle masks or from an annotation an admin vouches for (admin)."""

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Path, Request, Response, UploadFile, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.annotations import check_mask_upload
from service.auth import AdminToken, ReviewerToken, SessionDep
from service.gold import gold_from_annotation, gold_from_oracle
from service.models import Annotation, Image, Project, Region, Token
from service.queue import QueueError, request_now
from service.review import accept, fix, next_pending, reject
from service.routes.deps import project_or_404
from service.routes.queue import crop_box, default_context, http_error
from service.routes.regions import CACHE
from service.schemas.common import INT32_MAX, Offset, ProjectId
from service.schemas.queue import CropBox, ImageBrief
from service.schemas.review import (
    GoldCreated,
    GoldRequest,
    RejectRequest,
    ReviewItem,
    ReviewResult,
)
from service.storage import StorageDep

AnnotationId = Annotated[int, Path(ge=1, le=INT32_MAX, description="The annotation's id.")]
router = APIRouter(prefix="/api", tags=["review"])


def _annotation_or_404(session: Session, annotation_id: int) -> Annotation:
    ann = session.get(Annotation, annotation_id)
    if ann is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"annotation {annotation_id} not found")
    return ann


def _item(session: Session, ann: Annotation, pending: int) -> ReviewItem:
    image = session.get(Image, ann.image_id)
    region = session.get(Region, ann.region_id) if ann.region_id else None
    context = default_context(ann)
    x, y, w, h = crop_box(ann, image, context)
    crop_url = f"/api/regions/{region.id}/crop?context={context}" if region else None
    name = session.scalar(select(Token.name).where(Token.id == ann.token_id)) if ann.token_id else None
    return ReviewItem(
        annotation_id=ann.id, region_id=ann.region_id, x=ann.x, y=ann.y, w=ann.w, h=ann.h,
        image=ImageBrief(id=image.id, stem=image.stem, width=image.width, height=image.height),
        crop=CropBox(url=crop_url or "", context=context, x=x, y=y, w=w, h=h),
        mask_url=f"/api/annotations/{ann.id}/mask",
        prelabel_url=f"/api/regions/{region.id}/prelabel" if region and region.prelabel_path else None,
        annotator=name or "(deleted token)", created_at=ann.created_at, active_seconds=ann.active_seconds,
        unchanged=ann.unchanged, pending=pending)


@router.get("/projects/{project_id}/review/next", response_model=ReviewItem,
            responses={204: {"description": "Nothing awaits review."}})
def review_next(project_id: ProjectId, session: SessionDep, reviewer: ReviewerToken,
                after: Offset = 0) -> ReviewItem | Response:
    """The oldest annotation awaiting review (with an id above `after`, to pass over one)."""
    project_or_404(session, project_id, reviewer)
    ann = next_pending(session, project_id, after)
    if ann is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    pending = session.scalar(select(func.count()).select_from(Annotation).join(Image)
                             .where(Image.project_id == project_id, Annotation.review_state == "pending"))
    return _item(session, ann, pending or 0)


@router.get("/annotations/{annotation_id}/mask", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def annotation_mask(annotation_id: AnnotationId, session: SessionDep, storage: StorageDep,
                    _: ReviewerToken) -> Response:
    """An annotation's mask as submitted (8-bit class ids, 255 = unlabeled)."""
    ann = _annotation_or_404(session, annotation_id)
    return Response(storage.read_bytes(ann.mask_path), media_type="image/png", headers=CACHE)


@router.post("/annotations/{annotation_id}/accept", response_model=ReviewResult)
def accept_annotation(annotation_id: AnnotationId, request: Request, session: SessionDep,
                      reviewer: ReviewerToken) -> ReviewResult:
    try:
        return ReviewResult.model_validate(accept(session, annotation_id, reviewer.id, request_now(request)))
    except QueueError as exc:
        raise http_error(exc) from exc


@router.post("/annotations/{annotation_id}/reject", response_model=ReviewResult)
def reject_annotation(annotation_id: AnnotationId, body: RejectRequest, request: Request, session: SessionDep,
                      reviewer: ReviewerToken) -> ReviewResult:
    """Back to the queue with this mask as the pre-label; never to the same annotator."""
    try:
        ann = reject(session, annotation_id, reviewer.id, body.reason.strip() or "-", request_now(request))
    except QueueError as exc:
        raise http_error(exc) from exc
    return ReviewResult.model_validate(ann)


@router.post("/annotations/{annotation_id}/fix", response_model=ReviewResult)
def fix_annotation(annotation_id: AnnotationId, request: Request, session: SessionDep, storage: StorageDep,
                   reviewer: ReviewerToken, mask: Annotated[UploadFile, File()]) -> ReviewResult:
    """The reviewer's mask (a PNG as for a submission) becomes the label."""
    settings = request.app.state.settings
    ann = _annotation_or_404(session, annotation_id)
    project = session.scalar(select(Project).join(Image, Image.project_id == Project.id)
                             .where(Image.id == ann.image_id))
    try:
        arr = check_mask_upload(mask.file.read(settings.max_upload_bytes + 1), ann.w, ann.h,
                                len(project.classes), settings)
        ann, fixed = fix(session, storage, annotation_id, reviewer.id, arr, request_now(request))
    except QueueError as exc:
        raise http_error(exc) from exc
    out = ReviewResult.model_validate(ann)
    out.fixed_by_annotation = fixed.id
    return out


@router.post("/projects/{project_id}/gold", response_model=GoldCreated, status_code=status.HTTP_201_CREATED)
def make_gold(project_id: ProjectId, body: GoldRequest, session: SessionDep, storage: StorageDep,
              _: AdminToken) -> GoldCreated:
    """Turn queued regions whose image has an oracle mask into gold regions."""
    project_or_404(session, project_id)
    created = gold_from_oracle(session, storage, project_id, body.count)
    total = session.scalar(select(func.count()).select_from(Region).where(Region.project_id == project_id,
                                                                          Region.status == "gold"))
    return GoldCreated(created=created, total=total or 0)


@router.post("/annotations/{annotation_id}/gold", response_model=GoldCreated,
             status_code=status.HTTP_201_CREATED)
def mark_gold(annotation_id: AnnotationId, session: SessionDep, storage: StorageDep,
              _: AdminToken) -> GoldCreated:
    """A new gold region whose answer is this annotation."""
    ann = _annotation_or_404(session, annotation_id)
    region = gold_from_annotation(session, storage, ann)
    total = session.scalar(select(func.count()).select_from(Region)
                           .where(Region.project_id == region.project_id, Region.status == "gold"))
    return GoldCreated(created=1, total=total or 0)
