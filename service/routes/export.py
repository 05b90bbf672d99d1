"""Download a project's labels as a zip in the dataset folder layout (service/export.py)."""

import re
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.auth import AdminToken, SessionDep
from service.db import session_factory
from service.export import export_entries, zip_stream
from service.models import Project
from service.routes.deps import project_or_404
from service.schemas.common import ProjectId
from service.storage import storage_for

router = APIRouter(prefix="/api/projects", tags=["export"])


@router.get("/{project_id}/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}}})
def export_project(project_id: ProjectId, request: Request, session: SessionDep,
                   _: AdminToken) -> StreamingResponse:
    """Stream images, assembled masks (255 = unlabeled), classes.json and splits as a zip."""
    name = project_or_404(session, project_id).name
    settings = request.app.state.settings

    def body() -> Iterator[bytes]:
        # Its own session: the request's session is closed once the response starts streaming.
        with session_factory(settings.sqlalchemy_url)() as s:
            project = s.get(Project, project_id)
            yield from zip_stream(export_entries(s, storage_for(settings), project))

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"project-{project_id}"
    return StreamingResponse(body(), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{safe}.zip"'})
