"""A real Celery worker process runs cycles: Redis + PostgreSQL, and the embedded broker + SQLite.

Each test starts `celery -A worker.celery_app worker` as a subprocess (its own process group, so that
`kill -9` can take down the whole worker), on a queue of its own (S4AL_CYCLE_QUEUE) so that concurrent
test runs sharing Redis db 15 never take each other's messages. Tiny project: 4 train images of 32x32,
2 iterations. Marked slow: a worker start and a torch import cost seconds each.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from service.cycles import send_run_cycle
from service.main import create_app
from service.models import Cycle, Project, Region
from service.storage import storage_for
from tests.conftest import REDIS_URL
from tests.worker.tiny import label_with_oracle, make_project

pytestmark = [pytest.mark.slow, pytest.mark.redis]
TIMEOUT = 240.0


class Worker:
    def __init__(self, settings, log: Path, **env):
        self.settings, self.log = settings, log
        clean = {k: v for k, v in os.environ.items() if not k.startswith("S4AL_")}
        clean.update({
            "S4AL_DATA_DIR": str(settings.data_dir), "S4AL_DATABASE_URL": settings.sqlalchemy_url,
            "S4AL_CYCLE_QUEUE": settings.cycle_queue, "S4AL_DEVICE": "cpu",
            "S4AL_HEARTBEAT_STALE_SECONDS": str(settings.heartbeat_stale_seconds),
            "S4AL_REAPER_INTERVAL_SECONDS": "1", "S4AL_STALE_CYCLE_ACTION": settings.stale_cycle_action,
        })
        if settings.broker_url:
            clean["S4AL_BROKER_URL"] = settings.broker_url
        clean.update(env)
        self.out = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", settings.cycle_queue,
             "-c", "1", "-l", "info", "-n", f"{settings.cycle_queue}@%h"],
            cwd=log.parent, env=clean, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if b" ready." in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the worker did not start:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.out.close()


def _clean_redis(queue: str) -> None:
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(match=f"*{queue}*"):
        r.delete(key)
    for tag, raw in r.hgetall("unacked").items():  # messages our killed workers held, ours only
        if json.loads(raw)[2] == queue:
            r.hdel("unacked", tag)
            r.zrem("unacked_index", tag)


@pytest.fixture
def wsettings(settings, db_url):
    """Settings of a test worker: Redis with PostgreSQL, the embedded broker with SQLite."""
    settings.cycle_queue = f"t{uuid.uuid4().hex[:10]}"
    settings.heartbeat_stale_seconds = 3
    settings.broker_url = REDIS_URL if db_url.startswith("postgresql") else None
    yield settings
    if settings.broker_url:
        _clean_redis(settings.cycle_queue)


@pytest.fixture
def workers(wsettings, tmp_path):
    started = []

    def start(**env) -> Worker:
        w = Worker(wsettings, tmp_path / "worker.log", **env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def project(session, wsettings, tmp_path) -> Project:
    p = make_project(session, wsettings, tmp_path)
    label_with_oracle(session, wsettings, p)  # some labels: the cycle trains, so it has pre-labels
    return p


def _wait(session, cycle_id, pred, log: Path, timeout=TIMEOUT) -> Cycle:
    end = time.monotonic() + timeout
    c = None
    while time.monotonic() < end:
        session.expire_all()
        c = session.get(Cycle, cycle_id)
        if pred(c):
            return c
        time.sleep(0.2)
    raise AssertionError(f"cycle {cycle_id}: {c.status} {c.phase} {c.step}/{c.total} {c.error}\n"
                         f"{log.read_text()[-4000:]}")


def _regions(session, cycle_id):
    return session.scalars(select(Region).where(Region.cycle_id == cycle_id)).all()


def _start_long_cycle(session, settings, project, log):
    project.training = {**project.training, "iterations": 100_000}
    session.commit()
    app = create_app(settings)
    with TestClient(app) as client:
        from service.auth import create_token

        admin = {"Authorization": f"Bearer {create_token(session, 'a', 'admin')}"}
        cycle = client.post(f"/api/projects/{project.id}/cycles", headers=admin).json()
    c = _wait(session, cycle["id"], lambda c: c.phase == "train" and c.step > 0, log)
    project.training = {**project.training, "iterations": 2}  # the recovered run need not be long
    session.commit()
    return c


def test_a_worker_runs_a_cycle_end_to_end_and_a_duplicate_message_writes_nothing(
        session, wsettings, project, workers, tmp_path, admin_token):
    log = tmp_path / "worker.log"
    workers()
    with TestClient(create_app(wsettings)) as client:
        admin = {"Authorization": f"Bearer {admin_token}"}
        r = client.post(f"/api/projects/{project.id}/cycles", headers=admin)
        assert r.status_code == 202, r.text
        cycle_id = r.json()["id"]
    send_run_cycle(wsettings, cycle_id)  # the same cycle delivered twice
    c = _wait(session, cycle_id, lambda c: c.status not in ("queued", "running"), log)
    assert c.status == "succeeded", c.error
    assert c.attempts == 1 and c.metrics["regions"] == 3 and c.metrics["labeled_fraction"] == 0.25
    assert c.metrics["miou"] is not None and len(c.metrics["per_class_iou"]) == 3
    storage = storage_for(wsettings)
    assert storage.exists(c.checkpoint_path)
    regions = _regions(session, cycle_id)
    assert len(regions) == 3 and all(storage.exists(r.prelabel_path) for r in regions)
    # The second message finds the cycle claimed and leaves it alone; wait until it has been taken.
    end = time.monotonic() + 30
    while time.monotonic() < end and "'skipped'" not in log.read_text():
        time.sleep(0.2)
    assert "this delivery does nothing" in log.read_text()
    session.expire_all()
    assert len(_regions(session, cycle_id)) == 3 and session.get(Cycle, cycle_id).attempts == 1


@pytest.mark.parametrize("action", ["requeue", "fail"])
def test_kill9_of_the_worker_mid_cycle_then_restart_recovers(session, wsettings, project, workers, tmp_path,
                                                           action):
    wsettings.stale_cycle_action = action
    log = tmp_path / "worker.log"
    first = workers()
    c = _start_long_cycle(session, wsettings, project, log)
    first.kill9()
    session.expire_all()
    assert session.get(Cycle, c.id).status == "running"  # what a dead worker leaves behind
    workers()  # its reaper finds the heartbeat stale
    c = _wait(session, c.id, lambda c: c.status in ("succeeded", "failed"), log)
    regions = _regions(session, c.id)
    if action == "requeue":
        assert c.status == "succeeded" and c.attempts == 2, c.error
        assert len(regions) == 3 and c.metrics["attempt"] == 2
    else:
        assert c.status == "failed" and "no heartbeat" in c.error and c.attempts == 1
        assert regions == []


def test_kill9_of_the_pool_child_gives_the_message_back_and_the_cycle_is_rerun(
        session, wsettings, project, workers, tmp_path):
    wsettings.heartbeat_stale_seconds = 3600  # so that the reaper cannot be what recovers it
    log = tmp_path / "worker.log"
    workers()
    c = _start_long_cycle(session, wsettings, project, log)
    child = int(c.worker.rpartition(":")[2])
    os.kill(child, signal.SIGKILL)  # task_reject_on_worker_lost: the message goes back to the queue
    c = _wait(session, c.id, lambda c: c.status in ("succeeded", "failed"), log)
    assert c.status == "succeeded" and c.attempts == 2, c.error
    assert len(_regions(session, c.id)) == 3
    session.execute(update(Cycle).where(Cycle.id == c.id).values(status="succeeded"))
