"""Project-scoped tokens: an annotator of project A never sees or labels project B, never sees other
annotators' token ids, and a revoked token's leases go back to the queue at once."""

import pytest
from sqlalchemy import select

from service.models import Lease, Region, Token
from tests.service.queue_helpers import bearer, seed_queue, token_row


@pytest.fixture
def two(session, settings):
    a = seed_queue(session, settings, name="A", regions=2, prelabel=True)
    b = seed_queue(session, settings, name="B", regions=2, prelabel=True)
    return a, b


def _scoped(client, admin, name, projects) -> dict:
    r = client.post("/api/tokens", json={"name": name, "projects": projects}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def _urls(seeded) -> list[tuple[str, str]]:
    p, i, r, c = seeded.project_id, seeded.image_ids[0], seeded.region_ids[0], seeded.cycle_id
    return [("GET", f"/api/projects/{p}"), ("GET", f"/api/projects/{p}/images"),
            ("GET", f"/api/images/{i}"), ("GET", f"/api/images/{i}/file"), ("GET", f"/api/images/{i}/tags"),
            ("PUT", f"/api/images/{i}/tags"), ("GET", f"/api/projects/{p}/tagging/next"),
            ("GET", f"/api/regions/{r}"), ("GET", f"/api/regions/{r}/crop"),
            ("GET", f"/api/regions/{r}/prelabel"), ("GET", f"/api/projects/{p}/cycles"),
            ("GET", f"/api/cycles/{c}"), ("GET", f"/api/projects/{p}/metrics"),
            ("GET", f"/api/projects/{p}/queue/stats"), ("POST", f"/api/projects/{p}/queue/lease"),
            ("GET", f"/api/regions/{r}/superpixels"), ("GET", f"/api/projects/{p}/my-recent")]


def test_an_annotator_of_project_a_gets_404_on_everything_of_project_b(client, admin, two):
    a, b = two
    token = _scoped(client, admin, "alice", [a.project_id])
    alice = bearer(token["token"])
    assert token["projects"] == [a.project_id]
    assert client.get("/api/me", headers=alice).json()["projects"] == [a.project_id]
    assert [p["id"] for p in client.get("/api/projects", headers=alice).json()] == [a.project_id]
    for method, url in _urls(a):
        r = client.request(method, url, headers=alice, json={"class_ids": [1]} if method == "PUT" else None)
        assert r.status_code in (200, 204), (method, url, r.status_code, r.text)
    for method, url in _urls(b):
        r = client.request(method, url, headers=alice, json={"class_ids": [1]} if method == "PUT" else None)
        assert r.status_code == 404 and r.json()["detail"].endswith("not found"), (method, url, r.status_code)
    everyone = bearer(_scoped(client, admin, "bob", None)["token"])
    assert len(client.get("/api/projects", headers=everyone).json()) == 2


@pytest.mark.parametrize("body, words", [
    ({"name": "x", "role": "admin", "projects": [1]}, "admin token covers every project"),
    ({"name": "x", "projects": [999]}, "no project with id 999"),
    ({"name": "x", "projects": [2**31]}, "less than or equal"),
])
def test_scopes_are_for_annotators_and_existing_projects(client, admin, two, body, words):
    r = client.post("/api/tokens", json=body, headers=admin)
    assert r.status_code == 422 and words in r.text, r.text


def test_annotators_see_only_their_own_line_of_the_queue_stats(client, session, admin, two):
    a, _ = two
    v1, t1 = token_row(session, "one")
    v2, t2 = token_row(session, "two")
    for value in (v1, v2):
        r = client.post(f"/api/projects/{a.project_id}/queue/lease", headers=bearer(value))
        assert r.status_code == 200
    seen = client.get(f"/api/projects/{a.project_id}/queue/stats", headers=bearer(v1)).json()
    assert [x["token_id"] for x in seen["annotators"]] == [t1.id] and seen["leased"] == 2
    full = client.get(f"/api/projects/{a.project_id}/queue/stats", headers=admin).json()
    assert sorted(x["token_id"] for x in full["annotators"]) == sorted([t1.id, t2.id])


def test_revoking_a_token_releases_its_leases_at_once(client, session, admin, two):
    a, _ = two
    value, row = token_row(session, "leaver")
    held = client.post(f"/api/projects/{a.project_id}/queue/lease", headers=bearer(value)).json()
    assert client.delete(f"/api/tokens/{row.id}", headers=admin).status_code == 200
    session.expire_all()
    region = session.get(Region, held["region"]["id"])
    assert region.status == "queued" and region.lease_id is None and region.lease_token_id is None
    assert session.get(Lease, held["lease_id"]).state == "released"
    other, _ = token_row(session, "next")
    again = client.post(f"/api/projects/{a.project_id}/queue/lease", headers=bearer(other)).json()
    assert again["region"]["id"] == held["region"]["id"]  # the best region is free again, now


def test_deleting_a_project_takes_it_out_of_every_scope(client, session, admin, two):
    a, b = two
    token = _scoped(client, admin, "carol", [a.project_id, b.project_id])
    assert client.delete(f"/api/projects/{b.project_id}", headers=admin).status_code == 204
    session.expire_all()
    assert session.scalar(select(Token.projects).where(Token.id == token["id"])) == [a.project_id]
