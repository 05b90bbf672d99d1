"""The Celery app of the workers, configured from the service's Settings (env vars S4AL_*).

Start a GPU worker with:  celery -A worker.celery_app worker -Q gpu --concurrency 1
(`gpu` is S4AL_CYCLE_QUEUE's default; the worker must consume the queue the service sends cycles to.)
The same command serves the embedded mode (SQLite broker file, no server) and the compose deployment
(Redis); only S4AL_BROKER_URL differs. This module imports no torch (the service may import it to
send tasks); a worker process imports the engine once at start, before its pool forks.

Reliability of long jobs:
- acks_late + task_reject_on_worker_lost: a message is acknowledged only when the task returns; if the
  pool child dies mid-cycle (OOM, kill -9) the message goes back to the queue and the next delivery
  takes the cycle over (worker/cycle_io.py decides whether its holder is really dead).
- prefetch multiplier 1 and concurrency 1: a worker holds exactly one cycle, never one waiting behind it.
- max tasks per child 1: every cycle runs in a fresh process, so GPU memory and any leaked state are
  returned to the system after each cycle.
- hard time limit from settings, a soft one a minute earlier so the cycle is marked failed cleanly.
- the reaper (a worker bootstep, on the worker's own timer, in its main process) recovers cycles whose
  heartbeat went stale; it never waits behind a running cycle, unlike a beat task on the same queue.
  Every worker runs it; its updates are compare-and-set, so several at once are harmless.
"""

import logging
import os
import signal
import threading
import time

from celery import Celery, bootsteps
from celery.signals import worker_init, worker_process_init

from service.cycles import RUN_CYCLE_TASK, broker_transport_options, broker_url
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)


def make_celery(settings: Settings) -> Celery:
    app = Celery("s4al", broker=broker_url(settings), include=["worker.tasks"])
    soft = max(1, settings.task_time_limit_seconds - min(60, settings.task_time_limit_seconds // 10))
    app.conf.update(
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=1,
        task_time_limit=settings.task_time_limit_seconds,
        task_soft_time_limit=soft,
        task_ignore_result=True,  # the cycle row is the result
        task_routes={RUN_CYCLE_TASK: {"queue": settings.cycle_queue}},  # "gpu" by default
        task_default_queue=settings.cycle_queue,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.steps["worker"].add(Reaper)
    app.steps["worker"].add(ParentWatch)
    return app


class Reaper(bootsteps.StartStopStep):
    """Every `reaper_interval_seconds`, fail or re-queue cycles whose worker stopped heartbeating."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        settings = get_settings()
        self.tref = worker.timer.call_repeatedly(settings.reaper_interval_seconds, reap_once, (), priority=10)
        reap_once()  # at start too: a restarted worker recovers what its previous life left behind

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


class ParentWatch(bootsteps.StartStopStep):
    """A worker started by `s4al serve` (S4AL_PARENT_PID set) ends when serve is gone, even if serve was
    killed with -9: it would otherwise run on, orphaned, holding the broker's messages."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        parent = os.environ.get("S4AL_PARENT_PID", "")
        if parent.isdigit():
            self.tref = worker.timer.call_repeatedly(1.0, _exit_if_orphaned, (int(parent),), priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


def _exit_if_orphaned(parent: int) -> None:
    if os.getppid() != parent and not _orphaned.is_set():
        _orphaned.set()
        grace = get_settings().worker_stop_grace_seconds
        log.warning("the s4al process that started this worker (pid %s) is gone; shutting down (killed "
                    "in %.0f s if still running)", parent, grace)
        # A cold shutdown can hang in the pool's termination while a child is mid-cycle; nobody is
        # left to escalate, so a daemon thread does: SIGKILL for the worker and its pool after the grace.
        threading.Thread(target=_kill_group_after, args=(grace,), name="orphan-kill", daemon=True).start()
        os.kill(os.getpid(), signal.SIGQUIT)  # cold shutdown, as serve itself would ask


_orphaned = threading.Event()


def _kill_group_after(grace: float) -> None:
    time.sleep(grace)
    log.error("still running %.0f s after the cold shutdown began; killing the worker and its pool", grace)
    if os.getpgrp() == os.getpid():  # serve starts the worker as its own process group's leader
        os.killpg(os.getpid(), signal.SIGKILL)
    for child in _children(os.getpid()):
        os.kill(child, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def reap_once() -> list:
    from service.cycles import reap_stale_cycles
    from service.db import session_factory

    settings = get_settings()
    try:
        with session_factory(settings.sqlalchemy_url)() as session:
            done = reap_stale_cycles(session, settings, send=lambda cid: app.send_task(
                RUN_CYCLE_TASK, args=[cid], queue=settings.cycle_queue))
    except Exception:  # a database hiccup must not kill the worker's timer
        log.exception("reaper failed")
        return []
    for cycle_id, what in done:
        log.warning("reaper: cycle %s %s", cycle_id, what)
    return done


@worker_init.connect
def _preload_engine(**_):
    # Import torch and the engine once, in the main process before the pool forks: each pool child (a
    # fresh one per cycle) inherits them instead of importing them again. Importing torch does not
    # initialise CUDA, which happens only in the child that trains.
    import worker.engine.cycle  # noqa: F401


@worker_process_init.connect
def _fresh_db_pool(**_):
    # A forked pool child must not share the parent's pooled database connections (the reaper's).
    from service.db import engine_for

    engine_for(get_settings().sqlalchemy_url).dispose(close=False)


@worker_process_init.connect
def _allow_loader_processes(**_):
    # A pool child is daemonic, and a daemonic process may not start children: the training loader's
    # processes would be refused. They watch their parent and exit when it dies (torch's loader
    # watchdog), so the child can let go of the flag without leaving orphans.
    import multiprocessing

    multiprocessing.current_process()._config["daemon"] = False


app = make_celery(get_settings())
