"""Image-level tags (PseudoSeg): the classes an annotator says an image contains.

Tags are append-only rows (`ImageTag`); an image's tags are its newest row (highest id: ids grow with
insertion on every backend, and two rows may share a timestamp). The engine reads them through
`tags_by_image` (the worker's cycle input), the export through `tags_by_stem`, the tagging page through
`next_to_tag`, which orders untagged train images by the image classifier's uncertainty at the last
cycle (`Image.tag_uncertainty`, written by the worker with `store_tag_uncertainty`; images never scored
come after the scored ones, in upload order).
"""

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.models import Image, ImageTag, Project, Token
from service.schemas.token import TokenPublic


class UnknownClasses(ValueError):
    """Class ids that are not in the project's class list."""


def validate_class_ids(project: Project, class_ids: Iterable[int]) -> list[int]:
    """Sorted, de-duplicated ids; UnknownClasses names those outside the project's classes."""
    known = {int(c["id"]) for c in project.classes}
    ids = sorted(set(class_ids))
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UnknownClasses(f"unknown class ids {unknown}; this project's ids are 0..{len(known) - 1}")
    return ids


def set_tags(session: Session, image: Image, class_ids: Iterable[int],
             token: Token | TokenPublic | None) -> ImageTag:
    """Validate and append a tag row for `image`; committed."""
    ids = validate_class_ids(session.get(Project, image.project_id), class_ids)
    row = ImageTag(image_id=image.id, class_ids=ids, token_id=token.id if token else None)
    session.add(row)
    session.commit()
    return row


def tag_history(session: Session, image_id: int) -> list[tuple[ImageTag, str | None]]:
    """Every tag row of an image with its author's token name, newest first."""
    rows = session.execute(select(ImageTag, Token.name).outerjoin(Token, Token.id == ImageTag.token_id)
                           .where(ImageTag.image_id == image_id).order_by(ImageTag.id.desc()))
    return [(tag, name) for tag, name in rows.all()]


def _latest_ids(project_id: int):
    return (select(func.max(ImageTag.id)).join(Image, Image.id == ImageTag.image_id)
            .where(Image.project_id == project_id).group_by(ImageTag.image_id))


def tags_by_image(session: Session, project_id: int) -> dict[int, list[int]]:
    """{image id: class ids} of every tagged image of the project (newest row per image)."""
    rows = session.execute(select(ImageTag.image_id, ImageTag.class_ids)
                           .where(ImageTag.id.in_(_latest_ids(project_id))))
    return {image_id: list(ids) for image_id, ids in rows.all()}


def tags_by_stem(session: Session, project_id: int) -> dict[str, list[int]]:
    """{image stem: class ids}: the export's tags.json."""
    rows = session.execute(select(Image.stem, ImageTag.class_ids).join(Image, Image.id == ImageTag.image_id)
                           .where(ImageTag.id.in_(_latest_ids(project_id))).order_by(Image.stem))
    return {stem: list(ids) for stem, ids in rows.all()}


def _untagged_train(project_id: int):
    tagged = select(ImageTag.image_id)
    return [Image.project_id == project_id, Image.split == "train", Image.id.not_in(tagged)]


def next_to_tag(session: Session, project_id: int, exclude: Iterable[int] = ()) -> Image | None:
    """The untagged train image the classifier is least sure about (see the module docstring)."""
    where = _untagged_train(project_id)
    exclude = list(exclude)
    if exclude:
        where.append(Image.id.not_in(exclude))
    # NULLS LAST, written portably: SQLite and PostgreSQL sort NULLs differently by default.
    q = (select(Image).where(*where)
         .order_by(Image.tag_uncertainty.is_(None), Image.tag_uncertainty.desc(), Image.id).limit(1))
    return session.scalar(q)


def tagging_counts(session: Session, project_id: int) -> tuple[int, int]:
    """(tagged train images, untagged train images)."""
    untagged = session.scalar(select(func.count()).select_from(Image)
                              .where(*_untagged_train(project_id))) or 0
    train = session.scalar(select(func.count()).select_from(Image)
                           .where(Image.project_id == project_id, Image.split == "train")) or 0
    return train - untagged, untagged


def store_tag_uncertainty(session: Session, values: Mapping[int, float | None]) -> None:
    """Write the classifier's per-image uncertainty (image id -> value); the caller commits."""
    if values:
        session.execute(update(Image), [{"id": i, "tag_uncertainty": v} for i, v in values.items()])
