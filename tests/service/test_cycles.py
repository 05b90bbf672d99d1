"""The cycle API and the reaper, on SQLite and PostgreSQL, with the real embedded broker (no worker)."""

import json
import re
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.cycles import broker_url, reap_stale_cycles
from service.models import Cycle, Project, Region, utcnow
from tests.worker.tiny import make_project


@pytest.fixture
def project(session, settings, tmp_path) -> Project:
    return make_project(session, settings, tmp_path)


def _broker_messages(settings) -> list[dict]:
    """The run_cycle messages waiting in the embedded broker (kombu's SQLAlchemy transport)."""
    path = broker_url(settings).removeprefix("sqla+sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT payload FROM kombu_message WHERE visible = 1 ORDER BY id").fetchall()
    out = []
    for (payload,) in rows:
        msg = json.loads(payload)
        out.append({"task": msg["headers"]["task"], "args": msg["headers"]["argsrepr"],
                    "queue": msg["properties"]["delivery_info"]["routing_key"]})
    return out


def test_start_cycle_queues_and_sends_by_name(client, admin, project, settings):
    r = client.post(f"/api/projects/{project.id}/cycles", headers=admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["number"] == 1 and body["project_id"] == project.id
    assert _broker_messages(settings) == [{"task": "worker.tasks.run_cycle", "args": f"[{body['id']}]",
                                           "queue": "gpu"}]
    assert client.get(f"/api/cycles/{body['id']}", headers=admin).json()["status"] == "queued"


def test_second_cycle_while_one_is_active_is_409(client, admin, project, session):
    first = client.post(f"/api/projects/{project.id}/cycles", headers=admin).json()
    r = client.post(f"/api/projects/{project.id}/cycles", headers=admin)
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    session.execute(Cycle.__table__.update().where(Cycle.id == first["id"]).values(status="running"))
    session.commit()
    assert client.post(f"/api/projects/{project.id}/cycles", headers=admin).status_code == 409
    session.execute(Cycle.__table__.update().where(Cycle.id == first["id"]).values(status="succeeded"))
    session.commit()
    r = client.post(f"/api/projects/{project.id}/cycles", headers=admin)
    assert r.status_code == 202 and r.json()["number"] == 2


def test_annotator_cannot_start_or_cancel_but_can_read(client, admin, annotator, project):
    assert client.post(f"/api/projects/{project.id}/cycles", headers=annotator).status_code == 403
    cycle = client.post(f"/api/projects/{project.id}/cycles", headers=admin).json()
    assert client.post(f"/api/cycles/{cycle['id']}/cancel", headers=annotator).status_code == 403
    assert client.get(f"/api/cycles/{cycle['id']}", headers=annotator).status_code == 200
    assert client.get(f"/api/projects/{project.id}/cycles", headers=annotator).status_code == 200
    assert client.get(f"/api/projects/{project.id}/metrics", headers=annotator).status_code == 200
    assert client.post(f"/api/projects/{project.id}/cycles").status_code == 401


def test_unknown_ids_are_404(client, admin, project):
    assert client.post("/api/projects/9999/cycles", headers=admin).status_code == 404
    assert client.get("/api/projects/9999/cycles", headers=admin).status_code == 404
    assert client.get("/api/projects/9999/metrics", headers=admin).status_code == 404
    assert client.get("/api/cycles/9999", headers=admin).status_code == 404
    assert client.post("/api/cycles/9999/cancel", headers=admin).status_code == 404


def test_cancel_queued_is_immediate_running_is_requested_finished_is_409(client, admin, project, session):
    c1 = client.post(f"/api/projects/{project.id}/cycles", headers=admin).json()
    r = client.post(f"/api/cycles/{c1['id']}/cancel", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert client.post(f"/api/cycles/{c1['id']}/cancel", headers=admin).status_code == 409
    c2 = client.post(f"/api/projects/{project.id}/cycles", headers=admin).json()
    session.execute(Cycle.__table__.update().where(Cycle.id == c2["id"]).values(status="running"))
    session.commit()
    r = client.post(f"/api/cycles/{c2['id']}/cancel", headers=admin)
    assert r.status_code == 200
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True


def test_metrics_curve_lists_cycles_in_order(client, admin, project, session):
    for number, (frac, miou) in enumerate([(0.0, None), (0.1, 0.42)], start=1):
        metrics = {"labeled_fraction": frac, "miou": miou, "per_class_iou": [miou, None, 0.5]}
        session.add(Cycle(project_id=project.id, number=number, status="succeeded", metrics=metrics))
    session.commit()
    body = client.get(f"/api/projects/{project.id}/metrics", headers=admin).json()
    assert body["class_names"] == ["background", "square", "disc"]
    assert [(c["number"], c["labeled_fraction"], c["miou"]) for c in body["cycles"]] == [(1, 0.0, None),
                                                                                         (2, 0.1, 0.42)]
    assert body["cycles"][1]["per_class_iou"] == [0.42, None, 0.5]
    listed = client.get(f"/api/projects/{project.id}/cycles", headers=admin).json()
    assert [c["number"] for c in listed] == [1, 2]


@pytest.mark.parametrize("action", ["requeue", "fail"])
def test_reaper_recovers_a_running_cycle_with_a_stale_heartbeat(session, settings, project, action):
    settings.stale_cycle_action = action
    old = utcnow() - timedelta(seconds=settings.heartbeat_stale_seconds + 5)
    stale = Cycle(project_id=project.id, number=1, status="running", attempts=1, worker="gone:1",
                  started_at=old, heartbeat_at=old, phase="train")
    session.add(stale)
    other = make_project(session, settings, settings.import_root, name="fresh")
    fresh = Cycle(project_id=other.id, number=1, status="running", attempts=1, worker="alive:2",
                  started_at=utcnow(), heartbeat_at=utcnow())
    session.add(fresh)
    session.commit()
    sent = []
    done = reap_stale_cycles(session, settings, send=sent.append)
    session.expire_all()
    assert done == [(stale.id, "requeued" if action == "requeue" else "failed")]
    assert session.get(Cycle, fresh.id).status == "running"
    row = session.get(Cycle, stale.id)
    if action == "requeue":
        assert sent == [stale.id] and row.status == "queued" and row.worker is None
    else:
        assert sent == [] and row.status == "failed" and "no heartbeat" in row.error
        age = re.search(r", (\d+) s before", row.error)  # the real age of the last beat
        assert age and 305 <= int(age[1]) < 315 and row.phase is None, row.error
    assert reap_stale_cycles(session, settings, send=sent.append) == []  # nothing left to do


def test_reaper_gives_up_after_max_attempts(session, settings, project):
    old = utcnow() - timedelta(seconds=settings.heartbeat_stale_seconds + 5)
    c = Cycle(project_id=project.id, number=1, status="running", attempts=settings.max_cycle_attempts,
              worker="gone:1", started_at=old, heartbeat_at=old)
    session.add(c)
    session.commit()
    sent = []
    assert reap_stale_cycles(session, settings, send=sent.append) == [(c.id, "failed")]
    session.expire_all()
    assert sent == [] and "gave up after" in session.get(Cycle, c.id).error


def test_reaper_resends_a_queued_cycle_only_when_nothing_runs(session, settings, project):
    old = utcnow() - timedelta(seconds=settings.heartbeat_stale_seconds + 5)
    q = Cycle(project_id=project.id, number=1, status="queued", created_at=old, heartbeat_at=old)
    other = make_project(session, settings, settings.import_root, name="busy")
    r = Cycle(project_id=other.id, number=1, status="running", attempts=1, worker="w:1",
              started_at=utcnow(), heartbeat_at=utcnow())
    session.add_all([q, r])
    session.commit()
    sent = []
    assert reap_stale_cycles(session, settings, send=sent.append) == []
    session.execute(Cycle.__table__.update().where(Cycle.id == r.id).values(status="succeeded"))
    session.commit()
    assert reap_stale_cycles(session, settings, send=sent.append) == [(q.id, "resent")]
    assert sent == [q.id]
    assert reap_stale_cycles(session, settings, send=sent.append) == []  # its send time was refreshed


def test_regions_are_untouched_by_the_api(client, admin, project, session):
    client.post(f"/api/projects/{project.id}/cycles", headers=admin)
    assert session.scalars(select(Region)).all() == []


def test_service_never_imports_torch():
    code = ("import sys, service.main, cli.app, service.cycles, worker.celery_app, worker.tasks; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('worker.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
