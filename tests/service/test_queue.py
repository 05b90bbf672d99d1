"""The queue: order, re-lease, prefetch, expiry with a controlled clock, skips, and concurrency."""

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from service.annotations import submit_annotation
from service.db import session_factory
from service.models import Lease, Region, utcnow
from service.queue import LeaseConflict, lease_next, release, skip
from tests.service.queue_helpers import bearer, mask_bytes, seed_queue, token_row


def test_lease_gives_best_region_then_204_when_empty(client, session, settings):
    seeded = seed_queue(session, settings, regions=2)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    c, _ = token_row(session, "c")
    url = f"/api/projects/{seeded.project_id}/queue/lease"
    first = client.post(url, headers=bearer(a))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["region"]["id"] == seeded.region_ids[0]
    assert body["region"]["w"] == 16 and body["lease_id"]
    assert body["ttl_seconds"] == settings.lease_ttl_seconds
    assert body["crop"]["url"].startswith(f"/api/regions/{seeded.region_ids[0]}/crop")
    assert client.post(url, headers=bearer(b)).json()["region"]["id"] == seeded.region_ids[1]
    empty = client.post(url, headers=bearer(c))
    assert empty.status_code == 204 and empty.content == b""


def test_lease_unknown_project_and_no_token(client, annotator):
    assert client.post("/api/projects/999/queue/lease", headers=annotator).status_code == 404
    assert client.post("/api/projects/1/queue/lease").status_code == 401


def test_same_annotator_gets_the_same_live_lease_back(client, session, settings):
    seeded = seed_queue(session, settings, regions=3)
    a, _ = token_row(session, "a")
    url = f"/api/projects/{seeded.project_id}/queue/lease"
    first = client.post(url, headers=bearer(a)).json()
    again = client.post(url, headers=bearer(a)).json()
    assert again["lease_id"] == first["lease_id"] and again["region"]["id"] == first["region"]["id"]
    assert len(session.scalars(select(Lease)).all()) == 1


def test_prefetch_holds_two_leases_at_most(client, session, settings):
    seeded = seed_queue(session, settings, regions=4)
    a, _ = token_row(session, "a")
    url = f"/api/projects/{seeded.project_id}/queue/lease"
    first = client.post(url, headers=bearer(a)).json()
    second = client.post(url, json={"holding": [first["lease_id"]]}, headers=bearer(a)).json()
    assert second["region"]["id"] == seeded.region_ids[1]
    # A reloaded page holding nothing gets the oldest back; holding the first gets the second back.
    assert client.post(url, headers=bearer(a)).json()["lease_id"] == first["lease_id"]
    assert client.post(url, json={"holding": [first["lease_id"]]},
                       headers=bearer(a)).json()["lease_id"] == second["lease_id"]
    third = client.post(url, json={"holding": [first["lease_id"], second["lease_id"]]}, headers=bearer(a))
    assert third.status_code == 409 and "2 leases" in third.json()["detail"]


def test_expired_lease_returns_to_queue(client, app, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    now = [utcnow()]
    app.state.clock = lambda: now[0]
    url = f"/api/projects/{seeded.project_id}/queue/lease"
    held = client.post(url, headers=bearer(a)).json()
    now[0] += timedelta(seconds=settings.lease_ttl_seconds - 1)
    assert client.post(url, headers=bearer(b)).status_code == 204  # still a's
    now[0] += timedelta(seconds=2)
    taken = client.post(url, headers=bearer(b)).json()
    assert taken["region"]["id"] == held["region"]["id"] and taken["lease_id"] != held["lease_id"]
    session.expire_all()
    assert session.get(Lease, held["lease_id"]).state == "expired"
    renewed = client.post(f"/api/leases/{held['lease_id']}/renew", headers=bearer(a))
    assert renewed.status_code == 409 and "expired" in renewed.json()["detail"]


def test_renew_keeps_the_region(client, app, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    now = [utcnow()]
    app.state.clock = lambda: now[0]
    url = f"/api/projects/{seeded.project_id}/queue/lease"
    held = client.post(url, headers=bearer(a)).json()
    now[0] += timedelta(seconds=settings.lease_ttl_seconds - 10)
    r = client.post(f"/api/leases/{held['lease_id']}/renew", headers=bearer(a))
    assert r.status_code == 200, r.text
    now[0] += timedelta(seconds=20)  # past the first expiry, inside the renewed one
    assert client.post(url, headers=bearer(b)).status_code == 204


def test_skip_excludes_region_for_that_annotator_only(session, settings):
    seeded = seed_queue(session, settings, regions=2)
    _, a = token_row(session, "a")
    _, b = token_row(session, "b")
    first = lease_next(session, settings, seeded.project_id, a)
    skip(session, settings, first.lease_id, a, "blurry")
    again = lease_next(session, settings, seeded.project_id, a)
    assert again.id == seeded.region_ids[1]  # not the skipped one
    assert lease_next(session, settings, seeded.project_id, b).id == seeded.region_ids[0]


def test_regions_skipped_by_enough_annotators_leave_the_queue(session, settings):
    settings.skips_to_retire = 2
    seeded = seed_queue(session, settings, regions=1)
    tokens = [token_row(session, n)[1] for n in ("a", "b", "c")]
    for tok in tokens[:2]:
        region = lease_next(session, settings, seeded.project_id, tok)
        assert region.id == seeded.region_ids[0]
        skip(session, settings, region.lease_id, tok, "unclear")
    session.expire_all()
    assert session.get(Region, seeded.region_ids[0]).status == "skipped"
    assert lease_next(session, settings, seeded.project_id, tokens[2]) is None


def test_concurrent_calls_of_one_annotator_get_one_region(db_url, session, settings):
    seeded = seed_queue(session, settings, regions=6)
    _, tok = token_row(session, "a")
    got, barrier = [], threading.Barrier(8)

    def call():
        with session_factory(db_url)() as s:
            barrier.wait()
            got.append(lease_next(s, settings, seeded.project_id, tok).id)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and set(got) == {seeded.region_ids[0]}


THREADS, ROUNDS = 32, 200


@pytest.mark.slow
def test_stress_no_double_lease_no_lost_submission(db_url, session, settings):
    """32 annotators × 200 leases each, in lock-step rounds on a controlled clock.

    In each round every annotator leases; the 32 leases are all held at once and must be 32 different
    regions. Then each annotator submits (1 round in 10), releases (1 in 10) or lets the lease expire:
    the next round's clock is one TTL later, so expired regions return to the queue under contention.
    """
    seeded = seed_queue(session, settings, regions=100, images=7, size=16, grid=(160, 160))
    tokens = [token_row(session, f"t{i}")[1] for i in range(THREADS)]
    start, step = utcnow(), timedelta(seconds=settings.lease_ttl_seconds + 1)
    holder: dict[int, int] = {}
    lock = threading.Lock()
    doubles, submitted, errors = [], [], []
    mask = mask_bytes(np.ones((16, 16), np.uint8))
    barrier = threading.Barrier(THREADS, timeout=120)

    def annotator(i: int) -> None:
        tok = tokens[i]
        try:
            with session_factory(db_url)() as s:
                for n in range(ROUNDS):
                    now = start + n * step
                    barrier.wait()
                    region = lease_next(s, settings, seeded.project_id, tok, now=now)
                    with lock:
                        if region.id in holder:
                            doubles.append((n, region.id, holder[region.id], i))
                        holder[region.id] = i
                    barrier.wait()  # every lease of the round is out at this point
                    with lock:
                        del holder[region.id]
                    if n % 10 == i % 10:
                        ann = submit_annotation(s, settings, region.lease_id, tok, mask, now=now)
                        with lock:
                            submitted.append((ann.id, region.id))
                    elif n % 10 == (i + 5) % 10:
                        release(s, region.lease_id, tok, now=now)
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(f"{i}: {exc!r}")
            barrier.abort()

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert doubles == []
    session.expire_all()
    regions = session.scalars(select(Region).where(Region.project_id == seeded.project_id)).all()
    labeled = {r.id for r in regions if r.status == "labeled"}
    assert len(submitted) == THREADS * ROUNDS // 10
    assert {rid for _, rid in submitted} == labeled  # each submission labeled its region
    assert len(labeled) == len(submitted)  # and a labeled region was never handed out again
    from service.models import Annotation

    stored = {a.id: a.region_id for a in session.scalars(select(Annotation))}
    assert stored == dict(submitted)  # none lost, none extra
    states = [lease.state for lease in session.scalars(select(Lease))]
    assert len(states) == THREADS * ROUNDS  # every call claimed a fresh region
    assert states.count("submitted") == len(submitted)
    assert states.count("released") == THREADS * ROUNDS // 10
    leased = [r for r in regions if r.status == "leased"]
    assert len(leased) == states.count("active") == THREADS - 2 * THREADS // 10  # the last round's


def test_lease_conflict_is_a_queue_error():
    assert LeaseConflict("x").status == 409


def test_crop_with_context_and_prelabel(client, session, settings):
    import io

    from PIL import Image as PILImage

    from service.models import Image
    from service.storage import storage_for
    from tests.service.queue_helpers import prelabel_array

    seeded = seed_queue(session, settings, boxes=[(16, 16), (0, 0)], prelabel=True)
    a, _ = token_row(session, "a")
    rid = seeded.region_ids[0]
    r = client.get(f"/api/regions/{rid}/crop?context=8", headers=bearer(a))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-crop-box"] == "8,8,32,32"
    image = session.get(Image, seeded.image_ids[0])
    with PILImage.open(storage_for(settings).path(image.path)) as full:
        expected = np.array(full.convert("RGB"))[8:40, 8:40]
    assert np.array_equal(np.array(PILImage.open(io.BytesIO(r.content))), expected)
    corner = client.get(f"/api/regions/{seeded.region_ids[1]}/crop?context=8", headers=bearer(a))
    assert corner.headers["x-crop-box"] == "0,0,24,24"  # clipped at the image border
    pre = client.get(f"/api/regions/{rid}/prelabel", headers=bearer(a))
    assert pre.status_code == 200
    assert np.array_equal(np.array(PILImage.open(io.BytesIO(pre.content))), prelabel_array(16, 16))
    assert client.get(f"/api/regions/{rid}/crop?context=-1", headers=bearer(a)).status_code == 422
    assert client.get("/api/regions/999/crop", headers=bearer(a)).status_code == 404
    assert client.get(f"/api/regions/{rid}/crop").status_code == 401


def test_prelabel_missing_is_404(client, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    r = client.get(f"/api/regions/{seeded.region_ids[0]}/prelabel", headers=bearer(a))
    assert r.status_code == 404 and "no pre-label" in r.json()["detail"]
    lease = client.post(f"/api/projects/{seeded.project_id}/queue/lease", headers=bearer(a)).json()
    assert lease["prelabel_url"] is None and lease["region"]["has_prelabel"] is False
