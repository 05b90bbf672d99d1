"""What the models made, served from the files a worker wrote (service/model_files.py): a cycle's
exported model (admin), and an image's newest prediction (its pre-label for images added after a cycle)."""

import io
import re
import zipfile
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response

from service.auth import AdminToken, CurrentToken, SessionDep
from service.model_files import NoModel, export_files, latest_prediction, require_model, send_export_model
from service.models import Project
from service.routes.deps import ask_a_worker, cycle_or_404, image_or_404
from service.schemas.common import CycleId, ImageId
from service.storage import MODEL_EXTENSIONS, StorageDep, storage_for

router = APIRouter(prefix="/api", tags=["model"])


@router.get("/images/{image_id}/prediction", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "not predicted yet"}})
def image_prediction(image_id: ImageId, session: SessionDep, storage: StorageDep,
                     token: CurrentToken) -> Response:
    """The newest model's prediction of the image (8-bit PNG of class ids); the headers say which model
    made it: `X-Model-Version: cycle-N` and `X-Cycle-Id`."""
    image = image_or_404(session, image_id, token)
    found = latest_prediction(session, storage, image)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"image {image_id} has no model prediction yet")
    cycle, key = found
    return Response(storage.read_bytes(key), media_type="image/png",
                    headers={"X-Model-Version": f"cycle-{cycle.number}", "X-Cycle-Id": str(cycle.id),
                             "Cache-Control": "no-store"})


@router.get("/cycles/{cycle_id}/model", responses={
    200: {"content": {"application/zip": {}}, "description": "a zip: the model file and its sidecar"},
    202: {"description": "a worker is exporting it; ask again after Retry-After seconds"},
    409: {"description": "the cycle has no model (running, failed, cancelled, cold start)"}})
def download_model(cycle_id: CycleId, request: Request, session: SessionDep, _: AdminToken,
                   format: Literal["torchscript", "onnx"] = Query(
                       "onnx", description="torchscript or onnx")) -> Response:
    """The cycle's teacher as TorchScript or ONNX with its JSON sidecar (classes, input, resolution,
    metrics), zipped. The first request for a format asks a worker to export it (202)."""
    cycle = cycle_or_404(session, cycle_id)
    try:
        require_model(cycle)
    except NoModel as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    settings = request.app.state.settings
    storage = storage_for(settings)
    files = export_files(storage, cycle, format)
    if files is None:
        return ask_a_worker(lambda: send_export_model(settings, cycle.id, format), "the export",
                            {"detail": f"cycle {cycle.number} is being exported as {format} by a worker; "
                                       f"ask again in a few seconds", "status": "exporting"})
    project = session.get(Project, cycle.project_id)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", project.name).strip("._") or f"project-{project.id}"
    name = f"{safe}-cycle{cycle.number}{MODEL_EXTENSIONS[format]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, storage.read_bytes(files[0]))
        zf.writestr(name + ".json", storage.read_bytes(files[1]))
    return Response(buf.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})
