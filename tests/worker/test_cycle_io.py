"""A cycle run in-process (no Celery): what it writes, once, and what it refuses to write.

Runs the real engine on a tiny project (4 train + 2 val images of 32x32, 2 iterations), on SQLite and
PostgreSQL. The Celery side (a real worker process, kill -9) is in test_tasks.py.
"""

import io
import os
import re
import socket
import subprocess
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select, update

from service.cycles import create_cycle
from service.models import Cycle, Image, Region, utcnow
from service.storage import storage_for
from tests.worker.tiny import label_with_oracle, make_project
from worker.cycle_io import claim_cycle, execute_cycle


@pytest.fixture
def project(session, settings, tmp_path):
    settings.device = "cpu"
    return make_project(session, settings, tmp_path)


def _regions(session, cycle_id=None):
    q = select(Region).order_by(Region.id)
    if cycle_id is not None:
        q = q.where(Region.cycle_id == cycle_id)
    return session.scalars(q).all()


def _cycle(session, cycle_id) -> Cycle:
    session.expire_all()
    return session.get(Cycle, cycle_id)


def test_cold_start_queues_random_regions_without_prelabels(session, settings, project):
    cycle = create_cycle(session, project)
    assert execute_cycle(settings, cycle.id) == "succeeded"
    c = _cycle(session, cycle.id)
    assert c.status == "succeeded" and c.attempts == 1 and c.finished_at and c.phase is None
    assert c.metrics["cold_start"] is True and c.metrics["labeled_fraction"] == 0.0
    assert c.checkpoint_path is None  # nothing was trained
    regions = _regions(session, cycle.id)
    assert len(regions) == 3 and all(r.status == "queued" and r.prelabel_path is None for r in regions)
    assert c.config["acquisition"]["budget_regions"] == 3 and c.config["train"]["iterations"] == 2


def test_trained_cycle_writes_regions_prelabels_metrics_checkpoint(session, settings, project):
    first = create_cycle(session, project)
    execute_cycle(settings, first.id)
    label_with_oracle(session, settings, project)
    second = create_cycle(session, project)
    assert execute_cycle(settings, second.id) == "succeeded"
    c = _cycle(session, second.id)
    m = c.metrics
    assert m["cold_start"] is False and m["labeled_fraction"] == 0.25 and m["iterations"] == 2
    assert 0.0 <= m["miou"] <= 1.0 and len(m["per_class_iou"]) == 3 and m["regions"] == 3
    storage = storage_for(settings)
    from worker.engine.checkpoint import load

    ckpt = load(storage.path(c.checkpoint_path))
    assert ckpt["class_names"] == ["background", "square", "disc"]
    regions = _regions(session, second.id)
    assert len(regions) == 3
    for r in regions:
        assert r.model_version == "cycle-2" and r.status == "queued"
        pre = np.array(PILImage.open(io.BytesIO(storage.read_bytes(r.prelabel_path))))
        assert pre.shape == (r.h, r.w) and set(np.unique(pre)) <= {0, 1, 2}
    # The cold start's queued regions were ranked by no model at all: the new ranking replaces them.
    assert {r.status for r in _regions(session, first.id)} == {"superseded"}
    assert _cycle(session, first.id).metrics["regions"] == 3


def test_second_delivery_writes_nothing(session, settings, project):
    cycle = create_cycle(session, project)
    assert execute_cycle(settings, cycle.id) == "succeeded"
    before = [(r.id, r.x, r.y) for r in _regions(session)]
    assert execute_cycle(settings, cycle.id) == "skipped"
    assert [(r.id, r.x, r.y) for r in _regions(session)] == before
    assert _cycle(session, cycle.id).attempts == 1


def test_only_one_of_two_racing_claims_wins(session, settings, project):
    cycle = create_cycle(session, project)
    from service.db import session_factory

    results = []

    def claim(name):
        with session_factory(settings.sqlalchemy_url)() as s:
            results.append(claim_cycle(s, settings, cycle.id, name))

    threads = [threading.Thread(target=claim, args=(f"host-{i}:1",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].attempt == 1
    assert _cycle(session, cycle.id).worker == winners[0].worker


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_cycle_whose_local_holder_died_is_taken_over(session, settings, project):
    cycle = create_cycle(session, project)
    session.execute(update(Cycle).where(Cycle.id == cycle.id).values(
        status="running", attempts=1, worker=f"{socket.gethostname()}:{_dead_pid()}"))
    session.commit()
    assert execute_cycle(settings, cycle.id) == "succeeded"
    c = _cycle(session, cycle.id)
    assert c.attempts == 2 and len(_regions(session, cycle.id)) == 3


def test_a_cycle_held_by_a_live_worker_is_left_alone(session, settings, project):
    cycle = create_cycle(session, project)
    holder = f"{socket.gethostname()}:{os.getppid()}"
    session.execute(update(Cycle).where(Cycle.id == cycle.id).values(status="running", attempts=1,
                                                                     worker=holder))
    session.commit()
    assert execute_cycle(settings, cycle.id) == "skipped"
    c = _cycle(session, cycle.id)
    assert c.status == "running" and c.worker == holder and _regions(session) == []


def test_taken_over_holder_fails_instead_when_the_setting_says_fail(session, settings, project):
    settings.stale_cycle_action = "fail"
    cycle = create_cycle(session, project)
    dead = _dead_pid()
    session.execute(update(Cycle).where(Cycle.id == cycle.id).values(
        status="running", attempts=1, worker=f"{socket.gethostname()}:{dead}", phase="train",
        heartbeat_at=utcnow() - timedelta(seconds=12)))
    session.commit()
    assert execute_cycle(settings, cycle.id) == "skipped"
    c = _cycle(session, cycle.id)
    assert c.status == "failed" and "was lost" in c.error and _regions(session) == []
    # The real reason and the real age of the last heartbeat, not the stale time; no phase any more.
    assert f"its process {dead} is gone" in c.error and re.search(r", 1[2-4] s before", c.error), c.error
    assert "stale" not in c.error and c.phase is None


def _run_in_thread(settings, cycle_id):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("status", execute_cycle(settings, cycle_id)))
    t.start()
    return t, out


def _wait_for(session, cycle_id, pred, timeout=120.0) -> Cycle:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = _cycle(session, cycle_id)
        if pred(c):
            return c
        time.sleep(0.1)
    raise AssertionError(f"cycle {cycle_id} never got there: {c.status} {c.phase} {c.step}/{c.total}")


def _long_cycle(session, settings, project) -> Cycle:
    settings.heartbeat_stale_seconds = 2  # heartbeat every 0.5 s
    project.training = {**project.training, "iterations": 100_000}
    session.commit()
    label_with_oracle(session, settings, project)
    return create_cycle(session, project)


def test_cancel_stops_training_and_writes_no_region(session, settings, project, client, admin):
    cycle = _long_cycle(session, settings, project)
    t, out = _run_in_thread(settings, cycle.id)
    c = _wait_for(session, cycle.id, lambda c: c.phase == "train" and c.step > 0)
    assert c.total == 100_000 and c.heartbeat_at is not None
    assert client.post(f"/api/cycles/{cycle.id}/cancel", headers=admin).status_code == 200
    t.join(60)
    assert out["status"] == "cancelled"
    c = _cycle(session, cycle.id)
    assert c.status == "cancelled" and c.finished_at and c.step < 100_000
    assert _regions(session) == [] and c.checkpoint_path is None


def test_a_worker_that_lost_its_cycle_stops_and_writes_nothing(session, settings, project):
    cycle = _long_cycle(session, settings, project)
    t, out = _run_in_thread(settings, cycle.id)
    _wait_for(session, cycle.id, lambda c: c.phase == "train" and c.step > 0)
    # What a reaper + a second worker would do: the attempt changes hands under the first worker.
    session.execute(update(Cycle).where(Cycle.id == cycle.id).values(worker="elsewhere:1", attempts=2))
    session.commit()
    t.join(60)
    assert out["status"] == "lost"
    c = _cycle(session, cycle.id)
    assert c.status == "running" and c.worker == "elsewhere:1" and _regions(session) == []


def test_bad_training_settings_fail_the_cycle_with_a_clear_error(session, settings, project):
    # deeplab resizes long sides to 1024 by default: a 2048 crop cannot fit (the schema alone cannot
    # know the model's default base size).
    project.training = {**project.training, "model": "deeplabv3plus_mobilenetv2", "crop_size": 2048}
    session.commit()
    cycle = create_cycle(session, project)
    assert execute_cycle(settings, cycle.id) == "failed"
    c = _cycle(session, cycle.id)
    assert c.status == "failed" and "crop_size 2048 is larger than base_size 1024" in c.error
    assert session.scalar(select(func.count()).select_from(Region)) == 0


@pytest.mark.parametrize("what", ["cancelled", "lost"])
def test_results_are_not_written_once_the_cycle_is_cancelled_or_taken(session, settings, project, what):
    from service.db import session_factory
    from service.storage import prelabel_key
    from worker.cycle_io import Inputs, write_results
    from worker.engine.cycle import CycleOutput, SelectedRegion

    cycle = create_cycle(session, project)
    claim = claim_cycle(session, settings, cycle.id, "me:1")
    change = {"cancel_requested": True} if what == "cancelled" else {"worker": "other:2", "attempts": 2}
    session.execute(update(Cycle).where(Cycle.id == cycle.id).values(**change))
    session.commit()
    image_id = session.scalar(select(func.min(Image.id)).where(Image.project_id == project.id))
    out = CycleOutput(regions=[SelectedRegion(0, 0, 0, 16, 16, -1, 1.0, None, np.ones((16, 16), np.uint8))],
                      metrics={"miou": 0.5}, checkpoint={})
    inputs = Inputs(project=None, train_ids=[image_id], data=None, train_config=None, acquisition=None,
                    resolved={})
    storage = storage_for(settings)
    assert write_results(session_factory(settings.sqlalchemy_url), storage, claim, inputs, out, {}) == what
    c = _cycle(session, cycle.id)
    assert _regions(session) == [] and c.metrics is None
    assert c.status == ("cancelled" if what == "cancelled" else "running")
    # A cancelled attempt removes its pre-labels; a taken one leaves them to the attempt that owns the keys.
    assert storage.exists(prelabel_key(project.id, cycle.id, 0)) == (what == "lost")
