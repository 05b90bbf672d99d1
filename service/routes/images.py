"""Images: multipart upload (per-file results), paginated listing, metadata, the bytes.

Upload status codes: 201 when every file was stored; 207 (Multi-Status) when some were and some were
not; when none was, the refusing status itself if all files share it (415 not PNG/JPEG, 413 over the
pixel cap or the size limit, 422 corrupt, 409 stem taken), else 422. The body is always an
`UploadResponse` listing each file's own status, so a client never has to guess which file failed.
"""

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import AdminToken, CurrentToken, SessionDep
from service.imaging import ImageError, probe
from service.importer import ImportFailed, import_dataset
from service.model_files import prelabel_new_images
from service.models import Image, Project
from service.routes.deps import image_or_404, project_or_404
from service.schemas.common import ImageId, Offset, ProjectId
from service.schemas.image import (
    ImagePage,
    ImagePublic,
    ImportRequest,
    ImportSummary,
    UploadResponse,
    UploadResult,
)
from service.storage import Storage, StorageDep, image_key

router = APIRouter(tags=["images"])


def stem_of(filename: str | None) -> str:
    """A safe, non-empty stem from a client's file name (directories dropped, odd characters → _)."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = re.sub(r"[^\w.\- ]", "_", stem).strip(" .")[:200]
    return stem or "image"


def store_image(session: Session, storage: Storage, project: Project, stem: str, data: bytes,
                max_pixels: int, split: str = "train") -> Image:
    """Check and store one image, committed. Raises ImageError (with an HTTP status) and writes nothing."""
    info = probe(data, max_pixels)
    if session.scalar(select(Image.id).where(Image.project_id == project.id, Image.stem == stem)):
        raise ImageError(409, f"an image with stem {stem!r} exists in this project")
    image = Image(project_id=project.id, stem=stem, path="", content_type=info.content_type,
                  width=info.width, height=info.height, split=split)
    session.add(image)
    try:
        session.flush()  # the id names the file
    except IntegrityError as exc:
        session.rollback()
        raise ImageError(409, f"an image with stem {stem!r} exists in this project") from exc
    image.path = image_key(project.id, image.id, info.ext)
    try:
        storage.write_bytes(image.path, data)
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete(image.path)
        raise
    return image


def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ImageError(413, f"file is larger than the limit of {limit} bytes")
    return data


@router.post("/api/projects/{project_id}/images", response_model=UploadResponse,
             status_code=status.HTTP_201_CREATED,
             responses={207: {"model": UploadResponse, "description": "Some files stored, some refused"},
                        409: {"model": UploadResponse}, 413: {"model": UploadResponse},
                        415: {"model": UploadResponse}, 422: {"model": UploadResponse}})
def upload_images(
    project_id: ProjectId,
    files: Annotated[list[UploadFile], File(description="One or many PNG/JPEG files.")],
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    _: AdminToken,
    split: Annotated[Literal["train", "val"], Form()] = "train",
) -> JSONResponse:
    """Upload PNG/JPEG files (checked by content); each file gets its own result (see module doc).
    A plain `def`: decoding and database work run in the thread pool, not on the event loop."""
    project = project_or_404(session, project_id)
    settings = request.app.state.settings
    results: list[UploadResult] = []
    for upload in files:
        name = upload.filename or ""
        try:
            data = _read_limited(upload, settings.max_upload_bytes)
            image = store_image(session, storage, project, stem_of(name), data,
                                settings.max_image_pixels, split)
        except ImageError as exc:
            results.append(UploadResult(filename=name, status=exc.status, error=exc.message))
            continue
        results.append(UploadResult(filename=name, status=201, image=ImagePublic.model_validate(image)))
    created = [r.image.id for r in results if r.image is not None]
    cycle = prelabel_new_images(settings, session, project.id, created)
    body = UploadResponse(created=len(created), failed=sum(r.status != 201 for r in results), results=results,
                          prelabel_cycle_id=cycle.id if cycle else None)
    return JSONResponse(body.model_dump(mode="json"), status_code=_overall_status(results))


def _overall_status(results: list[UploadResult]) -> int:
    codes = {r.status for r in results}
    if codes == {201}:
        return 201
    if 201 in codes:
        return 207
    return codes.pop() if len(codes) == 1 else 422


@router.get("/api/projects/{project_id}/images", response_model=ImagePage)
def list_images(
    project_id: ProjectId,
    session: SessionDep,
    token: CurrentToken,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    split: Literal["train", "val"] | None = None,
) -> ImagePage:
    """A page of the project's images in upload order, with the total count."""
    project_or_404(session, project_id, token)
    where = [Image.project_id == project_id]
    if split is not None:
        where.append(Image.split == split)
    total = session.scalar(select(func.count()).select_from(Image).where(*where)) or 0
    rows = session.scalars(select(Image).where(*where).order_by(Image.id).limit(limit).offset(offset))
    return ImagePage(items=[ImagePublic.model_validate(r) for r in rows], total=total, limit=limit,
                     offset=offset)




@router.get("/api/images/{image_id}", response_model=ImagePublic)
def read_image(image_id: ImageId, session: SessionDep, token: CurrentToken) -> ImagePublic:
    return ImagePublic.model_validate(image_or_404(session, image_id, token))


@router.get("/api/images/{image_id}/file", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
def image_file(image_id: ImageId, session: SessionDep, storage: StorageDep,
               token: CurrentToken) -> FileResponse:
    """The stored bytes, with the type found by content at upload, and `nosniff`."""
    image = image_or_404(session, image_id, token)
    path = storage.path(image.path)
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the file of image {image_id} is missing")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    return FileResponse(path, media_type=image.content_type, headers=headers)


@router.post("/api/projects/{project_id}/import", response_model=ImportSummary,
             status_code=status.HTTP_201_CREATED)
def import_folder(project_id: ProjectId, body: ImportRequest, request: Request, session: SessionDep,
                  _: AdminToken) -> ImportSummary:
    """Import a dataset folder on the server (DESIGN §3) into this project. A relative path is taken
    under the import root; the folder must lie under it (403). All checked first; nothing written on
    any error (422 listing every problem, each naming its file; 409 stems already in the project)."""
    project = project_or_404(session, project_id)
    settings = request.app.state.settings
    path = Path(body.path)
    if not path.is_absolute():
        path = Path(settings.import_root) / path
    try:
        summary = import_dataset(session, settings, path, project.name, body.masks, create=False)
    except ImportFailed as exc:
        raise HTTPException(exc.status, {"message": "import refused, nothing was written",
                                         "errors": exc.errors}) from exc
    return ImportSummary(**summary)
