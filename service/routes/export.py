"""Download a project's labels as a zip in the dataset folder layout (service/export.py), optionally
filled with a cycle's confident predictions (service/fill.py)."""

import re
from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from service.auth import AdminToken, SessionDep
from service.db import session_factory
from service.export import EXPORT_FORMATS, zip_stream
from service.fill import Fill
from service.model_files import NoModel, best_cycle, missing_predictions, require_model, send_predict_images
from service.models import Cycle, Project
from service.routes.deps import ask_a_worker, cycle_or_404, project_or_404
from service.schemas.common import INT32_MAX, ProjectId
from service.storage import storage_for

router = APIRouter(prefix="/api/projects", tags=["export"])


def fill_cycle(session: Session, project: Project, cycle_id: int | None) -> Cycle:
    """The cycle whose predictions fill the export: the one asked for (of this project, with a model),
    else the project's best; 409 when there is none."""
    if cycle_id is None:
        cycle = best_cycle(session, project.id)
        if cycle is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"project {project.name!r} has no cycle with a "
                                                          "model yet: nothing to fill with")
        return cycle
    cycle = cycle_or_404(session, cycle_id)
    if cycle.project_id != project.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"cycle {cycle_id} is not a cycle of this project")
    try:
        require_model(cycle)
    except NoModel as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return cycle


@router.get("/{project_id}/export", response_class=StreamingResponse, responses={
    200: {"content": {"application/zip": {}}},
    202: {"description": "fill=model: a worker is predicting the images; ask again after Retry-After"}})
def export_project(
    project_id: ProjectId, request: Request, session: SessionDep, _: AdminToken,
    format: Literal["dataset", "coco"] = Query(
        "dataset", description="dataset: the folder layout s4al imports; coco: COCO JSON with RLE masks"),
    fill: Literal["none", "model"] = Query("none", description="model: fill unlabeled pixels with a "
                                                               "cycle's confident predictions"),
    cycle_id: int | None = Query(None, ge=1, le=INT32_MAX,
                                 description="fill=model: the cycle (default the best by val mIoU)"),
    min_confidence: float = Query(0.9, gt=0, le=1, description="fill=model: lowest confidence kept"),
) -> Response:
    """Stream images, assembled masks (255 = unlabeled), classes.json and splits as a zip (format=coco:
    images and annotations.json); with fill=model also sources/ (0 unlabeled, 1 human, 2 model) and
    report.json."""
    project = project_or_404(session, project_id)
    name = project.name
    settings = request.app.state.settings
    fill_id = None
    if fill == "model":
        cycle = fill_cycle(session, project, cycle_id)
        fill_id = cycle.id
        missing = missing_predictions(session, storage_for(settings), cycle)
        if missing:
            return ask_a_worker(lambda: send_predict_images(settings, cycle.id, missing), "the prediction",
                                {"detail": f"a worker is predicting {len(missing)} images with cycle "
                                           f"{cycle.number}; ask again in a few seconds",
                                 "status": "predicting", "cycle_id": cycle.id, "missing": len(missing)})

    def body() -> Iterator[bytes]:
        # Its own session: the request's session is closed once the response starts streaming.
        with session_factory(settings.sqlalchemy_url)() as s:
            row = s.get(Project, project_id)
            spec = Fill(s.get(Cycle, fill_id), min_confidence) if fill_id is not None else None
            yield from zip_stream(EXPORT_FORMATS[format](s, storage_for(settings), row, spec))

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"project-{project_id}"
    suffix = ("-coco" if format == "coco" else "") + ("-filled" if fill_id is not None else "")
    return StreamingResponse(body(), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{safe}{suffix}.zip"'})
