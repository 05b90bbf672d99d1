"""The auto-cycle rule on SQLite and PostgreSQL: a project starts its next cycle by itself after enough
labels or when its queue runs low, exactly once, never beside an active cycle, and only when asked to."""

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import service.auto_cycle
import service.cycles
from service.auto_cycle import maybe_start_auto_cycle
from service.db import session_factory
from service.models import Cycle, Image, Project, Region, utcnow
from tests.service.queue_helpers import bearer, mask_bytes, seed_queue, token_row
from tests.service.test_cycles import _broker_messages
from tests.worker.tiny import make_project

OFF = {"enabled": False, "after_labeled": 0, "when_queue_below": 1}


def set_rule(client, admin, project_id: int, **rule) -> dict:
    r = client.patch(f"/api/projects/{project_id}", json={"auto_cycle": rule}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["auto_cycle"]


def label_one(client, project_id: int, token: str):
    """Lease the best region and submit a mask for it; returns the submit's response."""
    held = client.post(f"/api/projects/{project_id}/queue/lease", headers=bearer(token))
    assert held.status_code == 200, held.text
    h, w = held.json()["region"]["h"], held.json()["region"]["w"]
    return client.post(f"/api/leases/{held.json()['lease_id']}/annotation",
                       files={"mask": ("m.png", mask_bytes(np.zeros((h, w), np.uint8)), "image/png")},
                       headers=bearer(token))


def cycles(session, project_id: int) -> list[Cycle]:
    session.expire_all()
    return list(session.scalars(select(Cycle).where(Cycle.project_id == project_id).order_by(Cycle.number)))


def status(client, headers, project_id: int) -> dict:
    r = client.get(f"/api/projects/{project_id}/auto-cycle", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_off_by_default(client, admin, session, settings):
    made = client.post("/api/projects", json={"name": "p", "classes": [
        {"id": 0, "name": "bg", "color": "#000000"}]}, headers=admin)
    assert made.status_code == 201 and made.json()["auto_cycle"] == OFF
    seeded = seed_queue(session, settings, regions=2)  # a project stored without the setting at all
    assert client.get(f"/api/projects/{seeded.project_id}", headers=admin).json()["auto_cycle"] == OFF
    a, _ = token_row(session, "a")
    for _ in range(2):
        assert label_one(client, seeded.project_id, a).status_code == 201
    assert [c.number for c in cycles(session, seeded.project_id)] == [1]  # the queue ran dry: nothing
    assert status(client, bearer(a), seeded.project_id) == {
        "project_id": seeded.project_id, **OFF, "last_cycle": 1, "active": False, "labeled_since": 2,
        "waiting": 0}


def test_threshold_reached_queues_exactly_one_cycle(client, admin, session, settings):
    seeded = seed_queue(session, settings, regions=6)
    set_rule(client, admin, seeded.project_id, enabled=True, after_labeled=3, when_queue_below=0)
    a, _ = token_row(session, "a")
    for _ in range(2):
        assert label_one(client, seeded.project_id, a).status_code == 201
    assert len(cycles(session, seeded.project_id)) == 1
    seen = status(client, bearer(a), seeded.project_id)
    assert (seen["labeled_since"], seen["after_labeled"], seen["last_cycle"]) == (2, 3, 1)  # 2/3 since 1
    assert label_one(client, seeded.project_id, a).status_code == 201
    for _ in range(2):  # more labels while it is queued start nothing more
        assert label_one(client, seeded.project_id, a).status_code == 201
    found = cycles(session, seeded.project_id)
    assert [(c.number, c.status, c.trigger) for c in found] == [(1, "succeeded", "manual"),
                                                                (2, "queued", "auto")]
    assert _broker_messages(settings) == [{"task": "worker.tasks.run_cycle", "args": f"[{found[1].id}]",
                                           "queue": "gpu"}]
    listed = client.get(f"/api/projects/{seeded.project_id}/cycles", headers=admin).json()
    assert [c["trigger"] for c in listed] == ["manual", "auto"]
    seen = status(client, admin, seeded.project_id)
    assert (seen["active"], seen["last_cycle"]) == (True, 2)
    # Once cycle 2 has started, labels are counted from then on.
    found[1].status, found[1].started_at = "succeeded", utcnow()
    session.commit()
    assert status(client, admin, seeded.project_id)["labeled_since"] == 0


def test_queue_below_rule_on_submit_and_on_skip(client, admin, session, settings):
    settings.skips_to_retire = 1  # one skip takes a region out of the queue
    seeded = seed_queue(session, settings, regions=4)
    set_rule(client, admin, seeded.project_id, enabled=True, when_queue_below=2)
    a, _ = token_row(session, "a")
    assert label_one(client, seeded.project_id, a).status_code == 201  # 3 wait
    assert label_one(client, seeded.project_id, a).status_code == 201  # 2 wait: not below 2
    assert len(cycles(session, seeded.project_id)) == 1
    held = client.post(f"/api/projects/{seeded.project_id}/queue/lease", headers=bearer(a)).json()
    assert len(cycles(session, seeded.project_id)) == 1  # leasing checks nothing
    skipped = client.post(f"/api/leases/{held['lease_id']}/skip", json={"reason": "blurry"},
                          headers=bearer(a))
    assert skipped.status_code == 200 and skipped.json()["state"] == "skipped"
    assert [(c.number, c.trigger) for c in cycles(session, seeded.project_id)] == [(1, "manual"), (2, "auto")]
    assert status(client, admin, seeded.project_id)["waiting"] == 1


def test_not_while_a_cycle_is_active(client, admin, session, settings):
    seeded = seed_queue(session, settings, regions=4)
    set_rule(client, admin, seeded.project_id, enabled=True, after_labeled=1, when_queue_below=0)
    cycle = session.get(Cycle, seeded.cycle_id)
    cycle.status, cycle.started_at = "running", utcnow() - timedelta(seconds=5)
    session.commit()
    a, _ = token_row(session, "a")
    assert label_one(client, seeded.project_id, a).status_code == 201
    assert len(cycles(session, seeded.project_id)) == 1
    assert status(client, admin, seeded.project_id)["active"] is True
    cycle = session.get(Cycle, seeded.cycle_id)
    cycle.status = "succeeded"
    session.commit()
    assert label_one(client, seeded.project_id, a).status_code == 201
    assert [c.trigger for c in cycles(session, seeded.project_id)] == ["manual", "auto"]


@pytest.mark.parametrize("rule", [{"after_labeled": -1}, {"when_queue_below": -2}, {"after_labeled": "5"},
                                  {"after_labeled": 2.5}, {"after_labeled": True}, {"enabled": "yes"},
                                  {"every": 3}, {"enabled": True, "after_labeled": 0, "when_queue_below": 0}])
def test_bad_settings_are_422(client, admin, session, settings, rule):
    seeded = seed_queue(session, settings, regions=1)
    r = client.patch(f"/api/projects/{seeded.project_id}", json={"auto_cycle": rule}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", "auto_cycle"]
    body = {"name": "q", "classes": [{"id": 0, "name": "bg", "color": "#000000"}], "auto_cycle": rule}
    made = client.post("/api/projects", json=body, headers=admin)
    assert made.status_code == 422
    assert client.get(f"/api/projects/{seeded.project_id}", headers=admin).json()["auto_cycle"] == OFF


def test_a_concurrent_double_trigger_creates_one_cycle(session, settings, monkeypatch):
    """Both checks pass the active-cycle test before either inserts: the unique (project, number)
    constraint lets exactly one of them create the cycle."""
    seeded = seed_queue(session, settings, regions=2)
    project = session.get(Project, seeded.project_id)
    project.auto_cycle = {"enabled": True, "after_labeled": 0, "when_queue_below": 5}
    session.commit()
    both_checked = threading.Barrier(2, timeout=30)
    real_active = service.cycles.active_cycle

    def active_then_wait(s, project_id):
        found = real_active(s, project_id)
        both_checked.wait()
        return found

    monkeypatch.setattr(service.cycles, "active_cycle", active_then_wait)
    results, errors = [], []

    def trigger():
        try:
            with session_factory(settings.sqlalchemy_url)() as s:
                made = maybe_start_auto_cycle(s, settings, project_id=seeded.project_id)
                results.append(made.id if made else None)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 2 and results.count(None) == 1
    assert [(c.number, c.status, c.trigger) for c in cycles(session, seeded.project_id)] == [
        (1, "succeeded", "manual"), (2, "queued", "auto")]
    assert len(_broker_messages(settings)) == 1


def test_labels_of_another_project_do_not_count(client, admin, session, settings):
    mine = seed_queue(session, settings, regions=3, name="mine")
    other = seed_queue(session, settings, regions=3, name="other")
    set_rule(client, admin, mine.project_id, enabled=True, after_labeled=2, when_queue_below=0)
    a, _ = token_row(session, "a")
    for _ in range(3):
        assert label_one(client, other.project_id, a).status_code == 201
    assert status(client, admin, mine.project_id)["labeled_since"] == 0
    assert status(client, admin, other.project_id)["labeled_since"] == 3
    assert [c.number for c in cycles(session, mine.project_id)] == [1]


def test_an_oracle_batch_checks_once_at_its_end(client, admin, session, settings, tmp_path):
    project = make_project(session, settings, tmp_path)
    session.add(Cycle(project_id=project.id, number=1, status="succeeded"))
    train = select(Image).where(Image.project_id == project.id, Image.split == "train")
    image = session.scalars(train).first()
    session.add_all(Region(project_id=project.id, image_id=image.id, x=x, y=0, w=16, h=16, score=-x)
                    for x in (0, 16))
    session.commit()
    set_rule(client, admin, project.id, enabled=True, after_labeled=1, when_queue_below=0)
    r = client.post(f"/api/projects/{project.id}/oracle", headers=admin)
    assert r.status_code == 200 and r.json()["labeled"] == 2
    assert [(c.number, c.trigger) for c in cycles(session, project.id)] == [(1, "manual"), (2, "auto")]


def test_a_failing_check_never_fails_the_submit(client, admin, session, settings, monkeypatch):
    seeded = seed_queue(session, settings, regions=2)
    set_rule(client, admin, seeded.project_id, enabled=True, after_labeled=1, when_queue_below=0)

    def broken(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("the database went away"))

    monkeypatch.setattr(service.auto_cycle, "state_of", broken)
    a, _ = token_row(session, "a")
    r = label_one(client, seeded.project_id, a)
    assert r.status_code == 201 and r.json()["region_id"] == seeded.region_ids[0]
    assert [c.number for c in cycles(session, seeded.project_id)] == [1]
