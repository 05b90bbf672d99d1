"""Thin Celery tasks: everything they do lives in worker/cycle_io.py and service/cycles.py.

`run_cycle` never raises for a cycle's own failure: the outcome is written to the cycle row (failed,
cancelled, succeeded) and the message is acknowledged. Only a lost worker (the pool child killed) gives
the message back to the broker (task_reject_on_worker_lost) for another delivery.
"""

from worker.celery_app import app, reap_once


@app.task(name="worker.tasks.run_cycle")
def run_cycle(cycle_id: int) -> str:
    from service.settings import get_settings
    from worker.cycle_io import execute_cycle  # imports torch: only ever in the pool child

    return execute_cycle(get_settings(), int(cycle_id))


@app.task(name="worker.tasks.reap_stale_cycles")
def reap_stale_cycles() -> list:
    """The reaper as a task, for `celery call`; workers already run it on their timer (celery_app)."""
    return reap_once()


@app.task(name="worker.tasks.export_model")
def export_model(cycle_id: int, fmt: str) -> str:
    """Write the cycle's teacher as `fmt` (and its sidecar) beside its checkpoint, where the API serves it."""
    from service.db import session_factory
    from service.settings import get_settings
    from service.storage import storage_for
    from worker.model_io import export_cycle_model

    settings = get_settings()
    with session_factory(settings.sqlalchemy_url)() as session:
        return str(export_cycle_model(session, storage_for(settings), int(cycle_id), fmt, reuse=True))


@app.task(name="worker.tasks.predict_images")
def predict_images(cycle_id: int, image_ids: list[int] | None = None) -> dict:
    """Write the cycle's prediction of the given images (default all of its project's), for fill exports
    and pre-labels."""
    from service.db import session_factory
    from service.settings import get_settings
    from service.storage import storage_for
    from worker.model_io import predict_cycle_images

    settings = get_settings()
    with session_factory(settings.sqlalchemy_url)() as session:
        return predict_cycle_images(session, storage_for(settings), int(cycle_id), image_ids,
                                    device=settings.device, only_missing=True)
