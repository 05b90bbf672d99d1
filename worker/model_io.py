"""A cycle's model out of the worker: its exported files, and its prediction of the project's images.

Read the database, call worker/export_model.py or the checkpoint's teacher, write files under keys fixed
by the cycle (service/storage.py), so a task re-run overwrites instead of piling up. No rows are written:
the files are the result, and the service finds them by their keys.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.masks import encode_mask_png
from service.model_files import best_cycle, export_files, missing_predictions, require_model
from service.models import Cycle, Image, Project
from service.storage import Storage, model_export_key, prediction_keys
from worker.engine import checkpoint
from worker.predict import batches

CONF_SCALE = 65535  # confidence files are 16-bit: p × 65535, rounded


def cycle_or_error(session: Session, cycle_id: int) -> Cycle:
    cycle = session.get(Cycle, cycle_id)
    if cycle is None:
        raise LookupError(f"no cycle {cycle_id}")
    require_model(cycle)
    return cycle


def export_cycle_model(session: Session, storage: Storage, cycle_id: int, fmt: str,
                       out: str | Path | None = None, reuse: bool = False) -> Path:
    """Export the cycle's teacher as `fmt` to `out`, or by default beside its checkpoint in storage
    (with `reuse`, an export already there is kept: a request repeated while the first was queued)."""
    from worker.export_model import export_checkpoint

    cycle = cycle_or_error(session, cycle_id)
    if out is None and reuse:
        done = export_files(storage, cycle, fmt)
        if done is not None:
            return storage.path(done[0])
    project = session.get(Project, cycle.project_id)
    ckpt = checkpoint.load(storage.path(cycle.checkpoint_path))
    best = best_cycle(session, project.id)
    info = {"id": cycle.id, "number": cycle.number, "project": project.name, "project_id": project.id,
            "finished_at": cycle.finished_at.isoformat() if cycle.finished_at else None,
            "best_of_project_at_export": best is not None and best.id == cycle.id}
    target = Path(out) if out is not None else storage.path(model_export_key(project.id, cycle.number, fmt))
    return export_checkpoint(ckpt, fmt, target, classes=project.classes, metrics=cycle.metrics or {},
                             cycle=info)


def _read_rgb(storage: Storage, image: Image) -> np.ndarray:
    with PILImage.open(storage.path(image.path)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _png16(conf: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.rint(conf * CONF_SCALE).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def predict_cycle_images(session: Session, storage: Storage, cycle_id: int,
                         image_ids: list[int] | None = None, device: str = "cpu", batch_size: int = 8,
                         max_pixels: int = 4 * 1024 * 1024, progress=None,
                         only_missing: bool = False) -> dict:
    """Write the cycle's prediction (class ids, confidence) of the given images, default all of the
    project's; with `only_missing`, of those that have none on disk yet. Memory: one batch.
    Returns {"cycle_id", "predicted": n, "failed": [(image stem, error)]}."""
    cycle = cycle_or_error(session, cycle_id)
    if only_missing:  # a request repeated while the first was queued finds the work done
        wanted = set(missing_predictions(session, storage, cycle))
        image_ids = sorted(wanted if image_ids is None else wanted & set(image_ids))
        if not image_ids:
            return {"cycle_id": cycle.id, "predicted": 0, "failed": []}
    model = checkpoint.load_model(checkpoint.load(storage.path(cycle.checkpoint_path))).to(device)
    query = select(Image).where(Image.project_id == cycle.project_id).order_by(Image.id)
    if image_ids is not None:
        query = query.where(Image.id.in_(image_ids))
    images = session.scalars(query).all()
    failed: list[tuple[str, str]] = []
    done = 0
    for group, stack in batches(images, lambda im: _read_rgb(storage, im), failed, batch_size, max_pixels):
        with torch.inference_mode():
            x = torch.from_numpy(stack).to(device).permute(0, 3, 1, 2).float().div_(255)
            conf, cls = torch.softmax(model(x).float(), dim=1).max(dim=1)
        cls_np, conf_np = cls.to(torch.uint8).cpu().numpy(), conf.cpu().numpy()
        for i, image in enumerate(group):
            cls_key, conf_key = prediction_keys(cycle.project_id, cycle.id, image.id)
            storage.write_bytes(conf_key, _png16(conf_np[i]))
            storage.write_bytes(cls_key, encode_mask_png(cls_np[i]))
        done += len(group)
        if progress is not None:
            progress(done, len(images))
    return {"cycle_id": cycle.id, "predicted": done, "failed": failed}
