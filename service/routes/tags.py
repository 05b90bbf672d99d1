"""Image-level tags (PseudoSeg): set and read an image's tags, and the tagging queue's next image."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from service.auth import CurrentToken, SessionDep
from service.models import ImageTag
from service.routes.deps import image_or_404, project_or_404
from service.schemas.common import IdItem, ImageId, ProjectId
from service.schemas.image import ImagePublic
from service.schemas.tag import ImageTagsPublic, TaggingNext, TagPublic, TagUpdate
from service.tags import UnknownClasses, next_to_tag, set_tags, tag_history, tagging_counts

router = APIRouter(tags=["tags"])


def _public(tag: ImageTag, token_name: str | None) -> TagPublic:
    return TagPublic(id=tag.id, image_id=tag.image_id, class_ids=list(tag.class_ids), token_name=token_name,
                     created_at=tag.created_at)


@router.put("/api/images/{image_id}/tags", response_model=TagPublic)
def put_tags(image_id: ImageId, body: TagUpdate, session: SessionDep, token: CurrentToken) -> TagPublic:
    """Replace the image's tags (a new row; the history keeps the old ones). Any token may tag."""
    image = image_or_404(session, image_id, token)
    try:
        tag = set_tags(session, image, body.class_ids, token)
    except UnknownClasses as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _public(tag, token.name)


@router.get("/api/images/{image_id}/tags", response_model=ImageTagsPublic)
def get_tags(image_id: ImageId, session: SessionDep, token: CurrentToken,
             history: Annotated[bool, Query(description="Include every earlier tag row.")] = False
             ) -> ImageTagsPublic:
    image_or_404(session, image_id, token)
    rows = [_public(tag, name) for tag, name in tag_history(session, image_id)]
    return ImageTagsPublic(image_id=image_id, latest=rows[0] if rows else None,
                           history=rows if history else [])


@router.get("/api/projects/{project_id}/tagging/next", response_model=TaggingNext)
def tagging_next(project_id: ProjectId, session: SessionDep, token: CurrentToken,
                 exclude: Annotated[list[IdItem], Query(max_length=1000, description="Image ids to pass over "
                                                     "(e.g. skipped on this page).")] = []  # noqa: B006
                 ) -> TaggingNext:
    """The untagged train image the image classifier is least sure about (unscored ones last)."""
    project_or_404(session, project_id, token)
    image = next_to_tag(session, project_id, exclude)
    tagged, untagged = tagging_counts(session, project_id)
    return TaggingNext(image=ImagePublic.model_validate(image) if image else None,
                       uncertainty=image.tag_uncertainty if image else None, tagged=tagged, untagged=untagged)
