"""Label quality through the API, on SQLite and PostgreSQL: submissions that are refused or replayed,
leases per page, review states, gold scoring, consensus and effort figures."""

import numpy as np
import pytest
from sqlalchemy import select

from service.labels import assemble_labels
from service.masks import encode_mask_png
from service.models import Annotation, Image, Lease, Region
from service.storage import oracle_key, storage_for
from tests.service.queue_helpers import CLASSES, bearer, mask_bytes, prelabel_array, seed_queue, token_row

SIZE = 16


def lease(client, project_id, token, **body):
    r = client.post(f"/api/projects/{project_id}/queue/lease", json=body or None, headers=bearer(token))
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def send(client, lease_id, token, arr, key=None, **effort):
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(f"/api/leases/{lease_id}/annotation", files={"mask": ("m.png", mask_bytes(arr))},
                       data={k: str(v) for k, v in effort.items()}, headers=headers)


def full(value):
    return np.full((SIZE, SIZE), value, np.uint8)


def set_quality(client, project_id, admin, **quality):
    r = client.patch(f"/api/projects/{project_id}", json={"quality": quality}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["quality"]


def test_replayed_key_with_another_mask_is_409_and_keeps_the_first(client, session, settings):
    seeded = seed_queue(session, settings, regions=1, size=SIZE)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    first = send(client, held["lease_id"], a, full(1), key="k1")
    assert first.status_code == 201
    again = send(client, held["lease_id"], a, full(1), key="k1")
    assert again.status_code == 201 and again.json()["replayed"] and again.json()["id"] == first.json()["id"]
    other = send(client, held["lease_id"], a, full(2), key="k1")
    assert other.status_code == 409 and "different mask" in other.json()["detail"]
    assert len(session.scalars(select(Annotation)).all()) == 1


def test_an_empty_mask_is_refused_and_an_unchanged_prelabel_is_recorded(client, session, settings):
    seeded = seed_queue(session, settings, regions=2, size=SIZE, prelabel=True)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    empty = send(client, held["lease_id"], a, full(255))
    assert empty.status_code == 422 and "skip" in empty.json()["detail"]
    ok = send(client, held["lease_id"], a, prelabel_array(SIZE, SIZE), active_seconds=4.5, strokes=0)
    assert ok.status_code == 201
    ann = session.get(Annotation, ok.json()["id"])
    assert (ann.unchanged, ann.pixels_changed, ann.labeled_pixels, ann.active_seconds, ann.strokes) == (
        True, 0, SIZE * SIZE, 4.5, 0)
    held = lease(client, seeded.project_id, a)
    changed = prelabel_array(SIZE, SIZE)
    changed[0, :5] = 1
    ann = session.get(Annotation, send(client, held["lease_id"], a, changed, active_seconds=10, strokes=2)
                      .json()["id"])
    assert (ann.unchanged, ann.pixels_changed) == (False, 5)


def test_two_pages_of_one_token_never_share_a_region(client, session, settings):
    seeded = seed_queue(session, settings, regions=4, size=SIZE)
    a, _ = token_row(session, "a")
    one = lease(client, seeded.project_id, a, page="tab-1")
    two = lease(client, seeded.project_id, a, page="tab-2")
    assert one["region"]["id"] != two["region"]["id"]
    assert lease(client, seeded.project_id, a, page="tab-1")["lease_id"] == one["lease_id"]  # a reload
    nxt = lease(client, seeded.project_id, a, page="tab-1", holding=[one["lease_id"]])
    assert nxt["region"]["id"] not in (one["region"]["id"], two["region"]["id"])
    r = client.post(f"/api/projects/{seeded.project_id}/queue/lease", headers=bearer(a),
                    json={"page": "tab-1", "holding": [one["lease_id"], nxt["lease_id"]]})
    assert r.status_code == 409 and "this page" in r.json()["detail"]


@pytest.mark.parametrize("bad", [{"review_rate": 1.5}, {"gold_rate": -0.1}, {"overlap_rate": 2},
                                 {"review": "some"}, {"overlap": 0}])
def test_quality_settings_out_of_range_are_422_and_change_nothing(client, session, settings, admin, bad):
    seeded = seed_queue(session, settings, regions=1, size=SIZE)
    r = client.patch(f"/api/projects/{seeded.project_id}", json={"quality": bad}, headers=admin)
    assert r.status_code == 422
    project = client.get(f"/api/projects/{seeded.project_id}", headers=admin).json()
    assert project["quality"]["review"] == "none"


def test_review_accept_reject_fix(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=3, size=SIZE, prelabel=True)
    set_quality(client, seeded.project_id, admin, review="all")
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    rv, _ = token_row(session, "rev", role="reviewer")
    ids = []
    for value in (1, 2, 0):
        held = lease(client, seeded.project_id, a)
        ids.append(send(client, held["lease_id"], a, full(value)).json()["id"])
    image = session.get(Image, seeded.image_ids[0])
    storage = storage_for(settings)
    assert (assemble_labels(session, storage, image) == 255).all()  # nothing counts before review

    assert client.post(f"/api/annotations/{ids[0]}/accept", headers=bearer(a)).status_code == 403
    item = client.get(f"/api/projects/{seeded.project_id}/review/next", headers=bearer(rv)).json()
    assert item["annotation_id"] == ids[0] and item["annotator"] == "a" and item["pending"] == 3
    assert client.get(item["mask_url"], headers=bearer(rv)).status_code == 200

    accepted = client.post(f"/api/annotations/{ids[0]}/accept", headers=bearer(rv))
    assert accepted.json()["review_state"] == "accepted"
    again = client.post(f"/api/annotations/{ids[0]}/accept", headers=bearer(rv))
    assert again.status_code == 409 and "not awaiting review" in again.json()["detail"]

    r = client.post(f"/api/annotations/{ids[1]}/reject", json={"reason": "sloppy edges"}, headers=bearer(rv))
    assert r.status_code == 200 and r.json()["review_reason"] == "sloppy edges"
    fixed = client.post(f"/api/annotations/{ids[2]}/fix", headers=bearer(rv),
                        files={"mask": ("m.png", mask_bytes(full(2)))})
    assert fixed.status_code == 200 and fixed.json()["review_state"] == "fixed"

    session.expire_all()
    rejected = session.get(Annotation, ids[1])
    region = session.get(Region, rejected.region_id)
    assert region.status == "queued" and region.prelabel_path == rejected.mask_path
    assert session.get(Lease, rejected.lease_id).state == "rejected"
    assert lease(client, seeded.project_id, a) is None  # never back to the same annotator
    again = lease(client, seeded.project_id, b)
    assert again["region"]["id"] == region.id
    shown = client.get(again["prelabel_url"], headers=bearer(b)).content
    assert shown == storage.read_bytes(rejected.mask_path)

    labels = assemble_labels(session, storage, image)
    boxes = {i: session.get(Annotation, i) for i in ids}
    cut = {i: labels[b.y:b.y + SIZE, b.x:b.x + SIZE] for i, b in boxes.items()}
    assert (cut[ids[0]] == 1).all() and (cut[ids[1]] == 255).all() and (cut[ids[2]] == 2).all()
    stats = client.get(f"/api/projects/{seeded.project_id}/quality", headers=admin).json()
    mine = next(x for x in stats["annotators"] if x["name"] == "a")
    assert (mine["reviewed"], mine["accepted"], mine["rejected"], mine["fixed"]) == (3, 1, 1, 1)
    assert mine["acceptance"] == pytest.approx(1 / 3) and stats["review_pending"] == 0


def _with_oracle(session, settings, seeded, truth):
    storage = storage_for(settings)
    image = session.get(Image, seeded.image_ids[0])
    key = oracle_key(seeded.project_id, image.id)
    storage.write_bytes(key, encode_mask_png(truth))
    image.oracle_mask_path = key
    session.commit()


def test_gold_regions_are_scored_hidden_and_kept_out_of_labels(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=3, size=SIZE, prelabel=True, grid=(48, 16))
    truth = np.zeros((16, 48), np.uint8)
    truth[:, 8:] = 1
    _with_oracle(session, settings, seeded, truth)
    made = client.post(f"/api/projects/{seeded.project_id}/gold", json={"count": 1}, headers=admin).json()
    assert made == {"created": 1, "total": 1}
    set_quality(client, seeded.project_id, admin, gold_rate=1.0)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    gold_id = session.scalar(select(Region.id).where(Region.status == "gold"))
    assert held["region"]["id"] == gold_id and held["region"]["status"] == "leased"
    assert client.get(f"/api/regions/{gold_id}", headers=bearer(a)).json()["status"] == "leased"
    assert client.post(f"/api/leases/{held['lease_id']}/renew", headers=bearer(a)).status_code == 200
    answer = full(1)
    answer[:, :8] = 0  # half right for a region at x=0, all of class 1 elsewhere
    ann_id = send(client, held["lease_id"], a, answer).json()["id"]
    ann = session.get(Annotation, ann_id)
    region = session.get(Region, gold_id)
    expected_truth = truth[:, region.x:region.x + SIZE]
    accuracy = float((answer == expected_truth).mean())
    assert ann.gold_accuracy == pytest.approx(accuracy) and not ann.in_labels
    assert session.get(Region, gold_id).status == "gold"
    nxt = lease(client, seeded.project_id, a, holding=[])  # each annotator gets a gold region once
    assert nxt["region"]["id"] != gold_id
    stats = client.get(f"/api/projects/{seeded.project_id}/quality", headers=bearer(a)).json()
    mine = next(x for x in stats["annotators"] if x["name"] == "a")
    assert mine["gold_scored"] == 1 and mine["gold_accuracy"] == pytest.approx(accuracy)
    assert stats["gold_regions"] == 1
    assert (assemble_labels(session, storage_for(settings), session.get(Image, seeded.image_ids[0]))
            [:, region.x:region.x + SIZE] == 255).all()


def test_consensus_majority_and_agreement(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=1, size=SIZE)
    set_quality(client, seeded.project_id, admin, overlap=3, overlap_rate=1.0)
    votes = [full(1), full(1), full(2)]
    votes[2][0, 0] = 1
    tokens = [token_row(session, n)[0] for n in "abc"]
    for tok, arr in zip(tokens, votes, strict=True):
        held = lease(client, seeded.project_id, tok)
        assert held["region"]["id"] == seeded.region_ids[0]
        assert send(client, held["lease_id"], tok, arr).status_code == 201
        assert lease(client, seeded.project_id, tok) is None  # a voter never gets the region again
    session.expire_all()
    region = session.get(Region, seeded.region_ids[0])
    assert region.status == "labeled" and region.overlap == 3
    label = assemble_labels(session, storage_for(settings), session.get(Image, seeded.image_ids[0]))
    assert (label[:SIZE, :SIZE] == 1).all()
    stats = client.get(f"/api/projects/{seeded.project_id}/quality", headers=admin).json()
    assert stats["consensus_complete"] == 1
    names = {c["id"]: c["name"] for c in CLASSES}
    pixels = SIZE * SIZE
    assert stats["agreement_iou"] == {names[1]: pytest.approx((1 + 2 / pixels) / 3), names[2]: 0.0}


def test_majority_ties_are_unlabeled():
    from service.quality import majority

    a, b = full(1), full(2)
    assert (majority([a, b]) == 255).all()
    assert (majority([a, b, a]) == 1).all()
    assert (majority([full(255), full(255)]) == 255).all()


def test_effort_figures_per_project_and_annotator(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=3, size=SIZE, prelabel=True)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    work = ((a, prelabel_array(SIZE, SIZE), 6, 0), (a, full(1), 30, 4), (b, full(2), 12, 1))
    for tok, arr, secs, strokes in work:
        held = lease(client, seeded.project_id, tok)
        r = send(client, held["lease_id"], tok, arr, active_seconds=secs, strokes=strokes)
        assert r.status_code == 201
    mine = client.get(f"/api/projects/{seeded.project_id}/effort", headers=bearer(a)).json()
    assert [x["name"] for x in mine["annotators"]] == ["a"]  # an annotator sees only its own line
    e = client.get(f"/api/projects/{seeded.project_id}/effort", headers=admin).json()
    assert e["total"]["annotations"] == 3
    assert e["total"]["active_hours"] == pytest.approx(48 / 3600)
    assert e["total"]["seconds_per_region"] == pytest.approx(16)
    assert e["total"]["unchanged_share"] == pytest.approx(1 / 3)
    by = {x["name"]: x for x in e["annotators"]}
    assert by["a"]["seconds_per_region"] == pytest.approx(18) and by["a"]["strokes_per_region"] == 2
    assert by["b"]["unchanged_share"] == 0 and by["b"]["pixels_changed"] > 0
    assert [p["number"] for p in e["curve"]] == [1]


def test_an_admin_marks_an_annotation_as_gold(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=2, size=SIZE, prelabel=True)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    held = lease(client, seeded.project_id, a)
    ann_id = send(client, held["lease_id"], a, full(1)).json()["id"]
    assert client.post(f"/api/annotations/{ann_id}/gold", headers=bearer(a)).status_code == 403
    assert client.post(f"/api/annotations/{ann_id}/gold", headers=admin).json() == {"created": 1, "total": 1}
    set_quality(client, seeded.project_id, admin, gold_rate=1.0)
    held = lease(client, seeded.project_id, b)
    gold = session.scalar(select(Region).where(Region.status == "gold"))
    assert held["region"]["id"] == gold.id and (gold.x, gold.y) == (held["region"]["x"], held["region"]["y"])
    half = full(1)
    half[:, : SIZE // 2] = 2
    scored = session.get(Annotation, send(client, held["lease_id"], b, half).json()["id"])
    assert scored.gold_accuracy == pytest.approx(0.5) and scored.gold_miou == pytest.approx(0.25)
