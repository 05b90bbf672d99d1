"""A cycle's model and predictions as files, seen from the service (which never imports torch).

A worker writes them (worker/model_io.py): the exported teacher (TorchScript or ONNX) and its sidecar
beside the checkpoint, and a cycle's prediction of every image (class ids + confidence). The service
serves those files, and asks a worker for them (a Celery task by name, on the cycles' queue) when they
are not there yet. Exports are made on demand, not at the end of every cycle: most cycles are never
exported, an exporter failure can never fail a cycle, and a cycle's time stays the training's.
"""

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.cycles import producer
from service.models import Cycle, Image
from service.settings import Settings
from service.storage import MODEL_EXTENSIONS, Storage, model_export_key, prediction_keys

EXPORT_MODEL_TASK = "worker.tasks.export_model"
PREDICT_IMAGES_TASK = "worker.tasks.predict_images"
MODEL_FORMATS = tuple(MODEL_EXTENSIONS)
log = logging.getLogger(__name__)


class NoModel(Exception):
    """The cycle has no trained model; the message says why."""


def require_model(cycle: Cycle) -> None:
    """Raise NoModel unless the cycle succeeded with a checkpoint."""
    if cycle.status in ("queued", "running"):
        raise NoModel(f"cycle {cycle.number} (id {cycle.id}) is {cycle.status}: it has a model once it "
                      "succeeds")
    if cycle.status != "succeeded":
        raise NoModel(f"cycle {cycle.number} (id {cycle.id}) {cycle.status}: it left no model")
    if not cycle.checkpoint_path:
        raise NoModel(f"cycle {cycle.number} (id {cycle.id}) was a cold start (no labels yet): it trained "
                      "no model")


def best_cycle(session: Session, project_id: int) -> Cycle | None:
    """The project's succeeded cycle with a model and the highest val mIoU; without any mIoU (no
    validation images) the latest one with a model."""
    cycles = session.scalars(select(Cycle).where(
        Cycle.project_id == project_id, Cycle.status == "succeeded", Cycle.checkpoint_path.is_not(None))
        .order_by(Cycle.number)).all()
    if not cycles:
        return None

    def key(c: Cycle) -> tuple[float, int]:
        miou = (c.metrics or {}).get("miou")
        return (float(miou) if miou is not None else float("-inf"), c.number)

    return max(cycles, key=key)


def latest_model_cycle(session: Session, project_id: int) -> Cycle | None:
    """The project's newest succeeded cycle with a model: it pre-labels images uploaded after it."""
    return session.scalar(select(Cycle).where(
        Cycle.project_id == project_id, Cycle.status == "succeeded", Cycle.checkpoint_path.is_not(None))
        .order_by(Cycle.number.desc()).limit(1))


def latest_prediction(session: Session, storage: Storage, image: Image) -> tuple[Cycle, str] | None:
    """(cycle, class-id PNG key) of the newest cycle that has predicted `image`, or None."""
    cycles = session.scalars(select(Cycle).where(
        Cycle.project_id == image.project_id, Cycle.status == "succeeded", Cycle.checkpoint_path.is_not(None))
        .order_by(Cycle.number.desc()))
    for cycle in cycles:
        key = prediction_keys(cycle.project_id, cycle.id, image.id)[0]
        if storage.exists(key):
            return cycle, key
    return None


def prelabel_new_images(settings: Settings, session: Session, project_id: int,
                        image_ids: list[int]) -> Cycle | None:
    """Ask a worker to predict images just added, with the latest model; the cycle asked, or None when
    there is no model yet. A broker that cannot be reached costs the pre-labels, never the upload."""
    cycle = latest_model_cycle(session, project_id) if image_ids else None
    if cycle is None:
        return None
    try:
        send_predict_images(settings, cycle.id, image_ids)
    except Exception:
        log.exception("could not send predict_images for %d new images of project %s", len(image_ids),
                      project_id)
        return None
    return cycle


def export_files(storage: Storage, cycle: Cycle, fmt: str) -> tuple[str, str] | None:
    """(model key, sidecar key) when the worker has written both, else None."""
    key = model_export_key(cycle.project_id, cycle.number, fmt)
    side = key + ".json"
    return (key, side) if storage.exists(key) and storage.exists(side) else None


def missing_predictions(session: Session, storage: Storage, cycle: Cycle) -> list[int]:
    """Ids of the project's images that have no prediction of `cycle` on disk yet."""
    ids = session.scalars(select(Image.id).where(Image.project_id == cycle.project_id).order_by(Image.id))
    return [i for i in ids
            if not all(storage.exists(k) for k in prediction_keys(cycle.project_id, cycle.id, i))]


def send_export_model(settings: Settings, cycle_id: int, fmt: str) -> None:
    producer(settings).send_task(EXPORT_MODEL_TASK, args=[cycle_id, fmt], queue=settings.cycle_queue)


def send_predict_images(settings: Settings, cycle_id: int, image_ids: list[int] | None = None) -> None:
    producer(settings).send_task(PREDICT_IMAGES_TASK, args=[cycle_id, image_ids], queue=settings.cycle_queue)
