"""Going back: the caller's recent submissions, reopening one, and a revision that replaces it (the
latest wins in the labels, the label files, exports, counts and review), refused once a cycle used it."""

import numpy as np
from sqlalchemy import select

from service.auth import create_token
from service.export import export_entries
from service.labels import assemble_labels, materialize_labels
from service.masks import decode_mask_png
from service.models import Annotation, Cycle, Image, Project, Region
from service.review import next_pending
from service.storage import storage_for
from tests.service.queue_helpers import bearer, mask_bytes, seed_queue, token_row

W = 16


def lease(client, project_id, token):
    r = client.post(f"/api/projects/{project_id}/queue/lease", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def submit(client, project_id, token, arr: np.ndarray) -> dict:
    held = lease(client, project_id, token)
    r = client.post(f"/api/leases/{held['lease_id']}/annotation", headers=bearer(token),
                    files={"mask": ("m.png", mask_bytes(arr), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()


def revise(client, region_id, token, arr: np.ndarray, key: str | None = None):
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(f"/api/regions/{region_id}/my-annotation", headers=headers,
                       files={"mask": ("m.png", mask_bytes(arr), "image/png")}, data={"strokes": "3"})


def recent(client, project_id, token) -> list[dict]:
    r = client.get(f"/api/projects/{project_id}/my-recent", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def full(value: int) -> np.ndarray:
    return np.full((W, W), value, np.uint8)


def test_a_revision_replaces_the_submission_everywhere(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=3, size=W, prelabel=True)
    pid = seeded.project_id
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    first = submit(client, pid, a, full(1))
    second = submit(client, pid, a, full(2))
    image = session.get(Image, seeded.image_ids[0])
    storage = storage_for(settings)
    before = materialize_labels(session, storage, [image])[image.id]  # a label file to bring up to date

    listed = recent(client, pid, a)
    assert [e["annotation_id"] for e in listed] == [second["id"], first["id"]]  # newest first
    assert all(e["editable"] and e["reason"] is None for e in listed)
    entry = listed[1]
    assert entry["region"]["id"] == first["region_id"] and entry["crop"]["url"].endswith("context=16")
    assert recent(client, pid, b) == []  # only the caller's own work
    shown = client.get(entry["mask_url"], headers=bearer(a))
    assert shown.status_code == 200 and shown.headers["x-annotation-id"] == str(first["id"])
    assert shown.headers["x-editable"] == "true" and "no-store" in shown.headers["cache-control"]
    assert np.array_equal(decode_mask_png(shown.content, W, W, 3), full(1))
    assert client.get(entry["mask_url"], headers=bearer(b)).status_code == 404  # a's, not b's

    # The revision labels the left half only: the right half must go back to unlabeled, not keep the
    # replaced mask's class (the per-pixel override alone would keep it).
    edited = full(255)
    edited[:, : W // 2] = 0
    r = revise(client, first["region_id"], a, edited, key="k1")
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    again = revise(client, first["region_id"], a, edited, key="k1")  # the outbox retrying
    assert again.status_code == 201 and again.json()["id"] == new_id and again.headers["idempotent-replayed"]
    other = revise(client, first["region_id"], a, full(0), key="k1")
    assert other.status_code == 409 and "different mask" in other.json()["detail"]

    session.expire_all()
    old = session.get(Annotation, first["id"])
    assert (old.in_labels, old.review_state) == (False, "superseded")
    assert session.get(Annotation, new_id).in_labels and session.get(Annotation, new_id).strokes == 3
    labels = assemble_labels(session, storage, image)
    box = labels[old.y:old.y + W, old.x:old.x + W]
    assert np.array_equal(box, edited)
    after = materialize_labels(session, storage, [image])[image.id]
    assert after != before
    assert np.array_equal(decode_mask_png(storage.read_bytes(after), image.width, image.height, 3), labels)
    exported = dict(export_entries(session, storage, session.get(Project, pid)))
    assert np.array_equal(decode_mask_png(exported[f"masks/{image.stem}.png"], image.width, image.height, 3),
                          labels)

    listed = recent(client, pid, a)
    assert [e["annotation_id"] for e in listed] == [new_id, second["id"]]  # one entry per region
    stats = client.get(f"/api/projects/{pid}/queue/stats", headers=admin).json()
    assert [x["labeled_total"] for x in stats["annotators"] if x["name"] == "a"] == [2]
    quality = client.get(f"/api/projects/{pid}/quality", headers=admin).json()
    assert [x["annotations"] for x in quality["annotators"] if x["name"] == "a"] == [2]


def test_once_a_cycle_used_it_a_revision_is_409(client, session, settings):
    seeded = seed_queue(session, settings, regions=2, size=W, prelabel=True)
    pid = seeded.project_id
    a, _ = token_row(session, "a")
    done = submit(client, pid, a, full(1))
    created = session.get(Annotation, done["id"]).created_at
    # A cycle that started after the submission but failed left nothing behind: still editable.
    session.add(Cycle(project_id=pid, number=2, status="failed", started_at=created))
    session.commit()
    assert recent(client, pid, a)[0]["editable"] is True
    session.add(Cycle(project_id=pid, number=3, status="running", started_at=created))  # "at or after"
    session.commit()

    [entry] = recent(client, pid, a)
    assert entry["editable"] is False and "cycle 3 has already used it" in entry["reason"]
    r = revise(client, done["region_id"], a, full(2))
    assert r.status_code == 409 and "can no longer be edited: cycle 3" in r.json()["detail"]
    shown = client.get(entry["mask_url"], headers=bearer(a))
    assert shown.headers["x-editable"] == "false"  # still readable
    session.expire_all()
    assert session.scalar(select(Annotation.review_state).where(Annotation.id == done["id"])) is None
    assert len(session.scalars(select(Annotation)).all()) == 1  # nothing stored

    # A cycle that started before a submission did not read it.
    later = submit(client, pid, a, full(2))
    assert revise(client, later["region_id"], a, full(0)).status_code == 201


def test_a_revision_of_a_pending_annotation_waits_for_review_in_its_place(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=2, size=W, prelabel=True)
    pid = seeded.project_id
    r = client.patch(f"/api/projects/{pid}", json={"quality": {"review": "all"}}, headers=admin)
    assert r.status_code == 200, r.text
    a, _ = token_row(session, "a")
    rv, _ = token_row(session, "rev", role="reviewer")
    first = submit(client, pid, a, full(1))
    new_id = revise(client, first["region_id"], a, full(2)).json()["id"]
    assert next_pending(session, pid).id == new_id  # the replaced one left the review queue
    late_verdict = client.post(f"/api/annotations/{first['id']}/accept", headers=bearer(rv))
    assert late_verdict.status_code == 409 and "superseded" in late_verdict.json()["detail"]
    assert client.post(f"/api/annotations/{new_id}/accept", headers=bearer(rv)).status_code == 200
    [entry] = recent(client, pid, a)
    assert entry["editable"] is False and "reviewer already accepted" in entry["reason"]
    assert revise(client, first["region_id"], a, full(0)).status_code == 409


def test_scopes_and_bad_requests(client, session, settings):
    seeded = seed_queue(session, settings, regions=2, size=W, name="p1")
    other = seed_queue(session, settings, regions=2, size=W, name="p2")
    a, _ = token_row(session, "a")
    done = submit(client, seeded.project_id, a, full(1))
    rid = done["region_id"]
    assert client.get(f"/api/projects/{seeded.project_id}/my-recent").status_code == 401  # no token
    assert client.get(f"/api/regions/{rid}/my-annotation").status_code == 401
    assert client.post(f"/api/regions/{rid}/my-annotation",
                       files={"mask": ("m.png", mask_bytes(full(1)))}).status_code == 401

    scoped = create_token(session, "scoped", "annotator", projects=[other.project_id])
    not_mine = client.get(f"/api/projects/{seeded.project_id}/my-recent", headers=bearer(scoped))
    assert not_mine.status_code == 404
    for r in (client.get(f"/api/regions/{rid}/my-annotation", headers=bearer(scoped)),
              revise(client, rid, scoped, full(2))):
        assert r.status_code == 404 and r.json()["detail"] == f"region {rid} not found"
    assert client.get(f"/api/projects/{other.project_id}/my-recent", headers=bearer(scoped)).json() == []

    unsubmitted = seeded.region_ids[1] if seeded.region_ids[0] == rid else seeded.region_ids[0]
    r = revise(client, unsubmitted, a, full(2))
    assert r.status_code == 404 and "no submission" in r.json()["detail"]
    assert client.get(f"/api/regions/{unsubmitted}/my-annotation", headers=bearer(a)).status_code == 404
    assert client.get("/api/regions/999999/my-annotation", headers=bearer(a)).status_code == 404
    assert revise(client, rid, a, full(255)).status_code == 422  # labels nothing
    assert revise(client, rid, a, np.zeros((W, W + 1), np.uint8)).status_code == 422  # wrong size
    assert client.get(f"/api/projects/{seeded.project_id}/my-recent?limit=0",
                      headers=bearer(a)).status_code == 422
    session.expire_all()
    assert session.get(Annotation, done["id"]).review_state is None  # nothing replaced it


def test_a_revised_vote_replaces_the_vote_in_the_majority(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=1, size=W)
    pid = seeded.project_id
    quality = {"quality": {"overlap": 2, "overlap_rate": 1.0}}
    r = client.patch(f"/api/projects/{pid}", json=quality, headers=admin)
    assert r.status_code == 200, r.text
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    vote = submit(client, pid, a, full(1))
    assert revise(client, vote["region_id"], a, full(2)).status_code == 201
    session.expire_all()
    assert session.get(Region, vote["region_id"]).status == "queued"  # still one vote: waits for another
    # b sides with a's first vote: had it still counted, class 1 would win 2 to 1; against a's revised
    # vote it is a tie, which is unlabeled.
    submit(client, pid, b, full(1))
    session.expire_all()
    assert session.get(Region, vote["region_id"]).status == "labeled"
    majority = session.scalar(select(Annotation).where(Annotation.source == "consensus"))
    assert (decode_mask_png(storage_for(settings).read_bytes(majority.mask_path), W, W, 3) == 255).all()
    [entry] = recent(client, pid, a)
    assert entry["editable"] is False and "majority" in entry["reason"]
    assert revise(client, vote["region_id"], a, full(1)).status_code == 409
