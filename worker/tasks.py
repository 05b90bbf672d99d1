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
