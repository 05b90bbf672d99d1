"""Cycles on the service side: create and enqueue, cancel, and the reaper of cycles whose worker died.

The service never imports torch: a cycle reaches a worker as a Celery message that names the task
`worker.tasks.run_cycle`, sent only after the cycle row is committed (a worker that gets the message
always finds the row). The cycle row, not Celery's result backend, is the source of truth: workers
claim it atomically, heartbeat into it, and write their results under a compare-and-set on it.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.models import Cycle, Project, utcnow
from service.settings import Settings

log = logging.getLogger(__name__)
RUN_CYCLE_TASK = "worker.tasks.run_cycle"
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")


class CycleConflict(Exception):
    """The project already has a queued or running cycle, or the cycle is already finished."""


def broker_url(settings: Settings) -> str:
    """`S4AL_BROKER_URL`, or the embedded broker: kombu's SQLAlchemy transport on a SQLite file.

    Why SQLAlchemy and not kombu's filesystem transport: the SQLAlchemy transport takes a message
    inside `BEGIN IMMEDIATE`, so two workers can never both get it, and a message is a committed row,
    durable the moment `send_task` returns. The filesystem transport moves a file that its writer may
    still be writing, and moves it with `shutil.move` into a temp dir (a copy + delete when that is on
    another filesystem), so two workers can receive the same message. It needs nothing beyond
    SQLAlchemy, which the service already uses. It lives in its own file so that the broker's polling
    never contends with the application database for SQLite's write lock.
    """
    if settings.broker_url:
        return settings.broker_url
    return f"sqla+sqlite:///{(settings.data_dir / 'broker.sqlite').resolve()}"


def broker_transport_options(settings: Settings) -> dict:
    url = broker_url(settings)
    if url.startswith("sqla+"):
        return {"connect_args": {"timeout": 30}}  # wait for SQLite's lock instead of failing
    if url.startswith(("redis://", "rediss://")):
        # With acks_late a task's message stays unacked while it runs; Redis re-delivers it once the
        # visibility timeout passes, so it must outlive the longest cycle or a second worker would
        # start the same (still running) cycle. The claim on the row would refuse it anyway.
        return {"visibility_timeout": settings.task_time_limit_seconds + settings.heartbeat_stale_seconds
                + 600}
    return {}


_producers: dict[str, Celery] = {}


def producer(settings: Settings) -> Celery:
    """A torch-free Celery app that can only send (the service never imports worker code)."""
    url = broker_url(settings)
    app = _producers.get(url)
    if app is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # the embedded broker's file lives there
        app = Celery("s4al-service", broker=url, set_as_current=False)
        app.conf.broker_transport_options = broker_transport_options(settings)
        app.conf.broker_connection_retry_on_startup = True
        app.conf.task_publish_retry_policy = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5}
        _producers[url] = app
    return app


def send_run_cycle(settings: Settings, cycle_id: int) -> None:
    producer(settings).send_task(RUN_CYCLE_TASK, args=[cycle_id], queue=settings.cycle_queue)


def active_cycle(session: Session, project_id: int) -> Cycle | None:
    return session.scalar(select(Cycle).where(Cycle.project_id == project_id, Cycle.status.in_(ACTIVE))
                          .order_by(Cycle.id.desc()).limit(1))


def create_cycle(session: Session, project: Project, trigger: str = "manual") -> Cycle:
    """Add and commit the project's next cycle (queued). The caller then sends it with send_run_cycle.

    At most one cycle per project is ever queued or running, without a lock: the highest number is
    read before the active check, so a racer that commits in between either shows up in that check or
    took the same number, and the unique (project, number) constraint lets only one of them commit.
    """
    last = session.scalar(select(func.max(Cycle.number)).where(Cycle.project_id == project.id)) or 0
    active = active_cycle(session, project.id)
    if active is not None:
        raise CycleConflict(f"cycle {active.number} (id {active.id}) of this project is {active.status}")
    cycle = Cycle(project_id=project.id, number=last + 1, status="queued", trigger=trigger,
                  heartbeat_at=utcnow())
    session.add(cycle)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise CycleConflict("another cycle of this project was started at the same time") from exc
    return cycle


def dispatch_cycle(session: Session, settings: Settings, cycle: Cycle) -> str | None:
    """Send a committed cycle to the workers; when the broker cannot take it, fail the cycle (so that
    it does not wait forever as queued) and return why."""
    try:
        send_run_cycle(settings, cycle.id)
    except Exception as exc:
        log.exception("could not send cycle %s to the broker", cycle.id)
        error = f"could not reach the broker: {exc}"
        session.execute(update(Cycle).where(Cycle.id == cycle.id, Cycle.status == "queued").values(
            status="failed", finished_at=utcnow(), error=error))
        session.commit()
        return error
    return None


def request_cancel(session: Session, cycle: Cycle) -> Cycle:
    """A queued cycle is cancelled at once (its message will find it cancelled and do nothing); a
    running one gets `cancel_requested`, which its worker polls every step."""
    now = utcnow()
    res = session.execute(update(Cycle).where(Cycle.id == cycle.id, Cycle.status == "queued")
                          .values(status="cancelled", cancel_requested=True, finished_at=now,
                                  phase=None, eta_seconds=None))
    if res.rowcount == 0:
        res = session.execute(update(Cycle).where(Cycle.id == cycle.id, Cycle.status == "running")
                              .values(cancel_requested=True))
    session.commit()
    session.refresh(cycle)
    if res.rowcount == 0:
        raise CycleConflict(f"cycle {cycle.id} is already {cycle.status}")
    return cycle


def reap_stale_cycles(session: Session, settings: Settings,
                      send: Callable[[int], None] | None = None) -> list[tuple[int, str]]:
    """Recover cycles whose worker died; returns [(cycle_id, "requeued" | "failed" | "resent")].

    A running cycle whose heartbeat is older than `heartbeat_stale_seconds` is re-queued (and sent
    again) or failed, per `stale_cycle_action`; after `max_cycle_attempts` starts it is failed either
    way, so a cycle that kills its worker every time cannot loop forever. Every change is a
    compare-and-set on (status, attempts), so reapers running in several workers at once are harmless.

    A queued cycle whose message was lost (a worker killed between taking the message and claiming the
    row, on a broker without acks) would wait forever; when no cycle runs anywhere and one has waited
    longer than the stale time since it was last sent, it is sent again (a duplicate message finds the
    cycle claimed and does nothing). For a queued cycle, heartbeat_at is the time it was last sent.
    """
    send = send or (lambda cycle_id: send_run_cycle(settings, cycle_id))
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.heartbeat_stale_seconds)
    done: list[tuple[int, str]] = []
    stale = session.scalars(select(Cycle).where(
        Cycle.status == "running", func.coalesce(Cycle.heartbeat_at, Cycle.started_at, Cycle.created_at)
        < cutoff)).all()
    for c in stale:
        requeue = settings.stale_cycle_action == "requeue" and c.attempts < settings.max_cycle_attempts
        values = (dict(status="queued", worker=None, phase=None, step=0, total=0, loss=None,
                       eta_seconds=None, heartbeat_at=now) if requeue else
                  dict(status="failed", finished_at=now, eta_seconds=None, phase=None,
                       error=lost_worker_error(c.worker, c.heartbeat_at, c.attempts, settings, now,
                                               f"no heartbeat within the stale time "
                                               f"({settings.heartbeat_stale_seconds} s)")))
        res = session.execute(update(Cycle).where(Cycle.id == c.id, Cycle.status == "running",
                                                  Cycle.attempts == c.attempts).values(**values))
        if res.rowcount:
            done.append((c.id, "requeued" if requeue else "failed"))
    busy = session.scalar(select(func.count()).select_from(Cycle).where(Cycle.status == "running"))
    if not busy:
        lost = session.scalars(select(Cycle.id).where(
            Cycle.status == "queued", func.coalesce(Cycle.heartbeat_at, Cycle.created_at) < cutoff)).all()
        for cid in lost:
            res = session.execute(update(Cycle).where(Cycle.id == cid, Cycle.status == "queued")
                                  .values(heartbeat_at=now))
            if res.rowcount:
                done.append((cid, "resent"))
    session.commit()
    for cid, what in done:
        if what in ("requeued", "resent"):
            send(cid)
    return done


def lost_worker_error(worker: str | None, heartbeat_at: datetime | None, attempts: int, settings: Settings,
                      now: datetime, why_lost: str) -> str:
    """The error of a cycle whose worker died: what showed it (`why_lost`), when it last beat and how
    long before `now` that was, and why it is failed rather than re-queued."""
    given_up = (f"gave up after {attempts} attempts" if settings.stale_cycle_action == "requeue"
                else "S4AL_STALE_CYCLE_ACTION=fail")
    if heartbeat_at is None:
        last = "it never sent a heartbeat"
    else:
        last = (f"last heartbeat {heartbeat_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"{(now - heartbeat_at).total_seconds():.0f} s before")
    return f"worker {worker or '?'} was lost: {why_lost}; {last}; {given_up}"


def project_cycles(session: Session, project_id: int) -> Iterable[Cycle]:
    return session.scalars(select(Cycle).where(Cycle.project_id == project_id).order_by(Cycle.number))
