"""Lease endpoints: renew, release, skip, and their refusals (401 / 403 / 404 / 409 / 422)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.models import Lease, Region, utcnow
from tests.service.queue_helpers import bearer, seed_queue, token_row


def lease(client, project_id, token, **body):
    r = client.post(f"/api/projects/{project_id}/queue/lease", json=body or None, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def test_renew_extends_from_now(client, app, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    now = [utcnow()]
    app.state.clock = lambda: now[0]
    held = lease(client, seeded.project_id, a)
    now[0] += timedelta(seconds=100)
    r = client.post(f"/api/leases/{held['lease_id']}/renew", headers=bearer(a))
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "active"
    session.expire_all()
    expected = now[0] + timedelta(seconds=settings.lease_ttl_seconds)
    assert session.get(Lease, held["lease_id"]).expires_at == expected
    assert session.get(Region, held["region"]["id"]).lease_expires_at == expected


def test_release_puts_the_region_back(client, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    held = lease(client, seeded.project_id, a)
    r = client.post(f"/api/leases/{held['lease_id']}/release", headers=bearer(a))
    assert r.status_code == 200 and r.json()["state"] == "released"
    assert lease(client, seeded.project_id, b)["region"]["id"] == held["region"]["id"]
    again = client.post(f"/api/leases/{held['lease_id']}/release", headers=bearer(a))
    assert again.status_code == 409 and "released" in again.json()["detail"]


def test_skip_records_the_reason(client, session, settings):
    seeded = seed_queue(session, settings, regions=2)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    r = client.post(f"/api/leases/{held['lease_id']}/skip", json={"reason": "too dark"}, headers=bearer(a))
    assert r.status_code == 200 and r.json()["state"] == "skipped" and r.json()["reason"] == "too dark"
    assert lease(client, seeded.project_id, a)["region"]["id"] == seeded.region_ids[1]
    session.expire_all()
    assert session.get(Region, seeded.region_ids[0]).status == "queued"  # others still get it


@pytest.mark.parametrize("body", [None, {}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "a", "x": 1}])
def test_skip_needs_a_reason(client, session, settings, body):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    r = client.post(f"/api/leases/{held['lease_id']}/skip", json=body, headers=bearer(a))
    assert r.status_code == 422
    session.expire_all()
    assert session.get(Lease, held["lease_id"]).state == "active"


@pytest.mark.parametrize("action", ["renew", "release", "skip"])
def test_someone_elses_lease_is_403_and_unknown_is_404(client, session, settings, action):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    held = lease(client, seeded.project_id, a)
    body = {"reason": "no"} if action == "skip" else None
    other = client.post(f"/api/leases/{held['lease_id']}/{action}", json=body, headers=bearer(b))
    assert other.status_code == 403 and "another annotator" in other.json()["detail"]
    missing = client.post(f"/api/leases/nope/{action}", json=body, headers=bearer(a))
    assert missing.status_code == 404
    assert client.post(f"/api/leases/{held['lease_id']}/{action}", json=body).status_code == 401
    session.expire_all()
    assert [lease.state for lease in session.scalars(select(Lease))] == ["active"]


def test_stats_count_live_leases_and_expired_as_queued(client, app, session, settings):
    seeded = seed_queue(session, settings, regions=3)
    a, _ = token_row(session, "a")
    now = [utcnow()]
    app.state.clock = lambda: now[0]
    first = lease(client, seeded.project_id, a)
    lease(client, seeded.project_id, a, holding=[first["lease_id"]])
    stats = client.get(f"/api/projects/{seeded.project_id}/queue/stats", headers=bearer(a)).json()
    assert (stats["total"], stats["queued"], stats["leased"]) == (3, 1, 2)
    assert stats["annotators"] == [{"token_id": stats["annotators"][0]["token_id"], "name": "a", "leased": 2,
                                    "labeled_today": 0, "labeled_total": 0}]
    now[0] += timedelta(seconds=settings.lease_ttl_seconds + 1)
    stats = client.get(f"/api/projects/{seeded.project_id}/queue/stats", headers=bearer(a)).json()
    assert (stats["queued"], stats["leased"]) == (3, 0)
    assert client.get("/api/projects/999/queue/stats", headers=bearer(a)).status_code == 404
