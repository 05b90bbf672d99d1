"""Submitting masks: exact storage, idempotent retries, late submissions kept, and every bad input
refused with a clear 4xx and nothing stored."""

import io
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from service.annotations import submit_annotation
from service.labels import assemble_labels
from service.masks import decode_mask_png
from service.models import Annotation, Image, Lease, Region, utcnow
from service.queue import lease_next
from service.storage import storage_for
from tests.service.queue_helpers import annotation_count, bearer, bomb_png, mask_bytes, seed_queue, token_row

W = 16


def lease(client, project_id, token):
    r = client.post(f"/api/projects/{project_id}/queue/lease", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def post_mask(client, lease_id, token, data: bytes, key: str | None = None, name="mask.png"):
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(f"/api/leases/{lease_id}/annotation", files={"mask": (name, data, "image/png")},
                       headers=headers)


def pattern(seed=0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 3, (W, W)).astype(np.uint8)
    arr[0, :] = 255
    return arr


def mask_files(settings) -> list:
    root = settings.storage_dir / "projects"
    return sorted(p for p in root.rglob("masks/*") if p.is_file()) if root.exists() else []


def test_submit_stores_the_exact_mask_and_labels_the_region(client, session, settings):
    seeded = seed_queue(session, settings, regions=2)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    arr = pattern()
    r = post_mask(client, held["lease_id"], a, mask_bytes(arr))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["late"] is False and body["replayed"] is False and body["region_id"] == held["region"]["id"]
    assert (body["x"], body["y"], body["w"], body["h"]) == (0, 0, W, W)
    ann = session.get(Annotation, body["id"])
    stored = storage_for(settings).read_bytes(ann.mask_path)
    assert np.array_equal(decode_mask_png(stored, W, W, 3), arr)
    session.expire_all()
    assert session.get(Region, held["region"]["id"]).status == "labeled"
    assert session.get(Region, held["region"]["id"]).lease_id is None
    assert session.get(Lease, held["lease_id"]).state == "submitted"
    # The annotator's next lease is a new region; the labeled one never comes back.
    assert lease(client, seeded.project_id, a)["region"]["id"] == seeded.region_ids[1]


def test_palette_png_is_accepted_as_indices(client, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    img = PILImage.fromarray(pattern(), mode="L").convert("P")  # palette indices = the class ids
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert post_mask(client, held["lease_id"], a, buf.getvalue()).status_code == 201


def test_idempotent_retry_returns_the_first_result_and_stores_once(client, session, settings):
    seeded = seed_queue(session, settings, regions=2)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    first = post_mask(client, held["lease_id"], a, mask_bytes(pattern(1)), key="k-1")
    retry = post_mask(client, held["lease_id"], a, mask_bytes(pattern(1)), key="k-1")
    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"] and retry.json()["replayed"] is True
    assert retry.headers["idempotent-replayed"] == "true"
    assert annotation_count(session) == 1 and len(mask_files(settings)) == 1
    other = lease(client, seeded.project_id, a)
    reused = post_mask(client, other["lease_id"], a, mask_bytes(pattern(1)), key="k-1")
    assert reused.status_code == 409 and "another lease" in reused.json()["detail"]
    assert annotation_count(session) == 1


def test_late_submission_is_kept_and_flagged(client, app, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    now = [utcnow()]
    app.state.clock = lambda: now[0]
    held = lease(client, seeded.project_id, a)
    now[0] += timedelta(seconds=settings.lease_ttl_seconds + 5)
    r = post_mask(client, held["lease_id"], a, mask_bytes(pattern(2)))
    assert r.status_code == 201 and r.json()["late"] is True
    session.expire_all()
    assert session.get(Region, held["region"]["id"]).status == "labeled"


def test_late_submission_after_someone_else_took_the_region(client, app, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    now = [utcnow()]
    app.state.clock = lambda: now[0]
    held_a = lease(client, seeded.project_id, a)
    now[0] += timedelta(seconds=settings.lease_ttl_seconds + 5)
    held_b = lease(client, seeded.project_id, b)
    assert held_b["region"]["id"] == held_a["region"]["id"]
    late = post_mask(client, held_a["lease_id"], a, mask_bytes(pattern(3)))
    assert late.status_code == 201 and late.json()["late"] is True
    session.expire_all()
    region = session.get(Region, held_a["region"]["id"])
    assert region.status == "leased" and region.lease_id == held_b["lease_id"]  # b keeps it
    newer = post_mask(client, held_b["lease_id"], b, mask_bytes(pattern(4)))
    assert newer.status_code == 201 and newer.json()["late"] is False
    # Both kept (append-only); the newest wins where it labels a pixel.
    image = session.get(Image, region.image_id)
    labels = assemble_labels(session, storage_for(settings), image)[:W, :W]
    expected = pattern(4)
    expected[0, :] = pattern(3)[0, :]  # row 0 is 255 in both, so it stays unlabeled
    assert np.array_equal(labels, expected)
    assert annotation_count(session) == 2


def test_service_entry_point_for_the_oracle(session, settings):
    seeded = seed_queue(session, settings, regions=1)
    _, tok = token_row(session, "oracle")
    region = lease_next(session, settings, seeded.project_id, tok)
    ann = submit_annotation(session, settings, region.lease_id, tok, mask_bytes(pattern()), source="oracle")
    assert ann.source == "oracle" and ann.region_id == region.id
    session.expire_all()
    assert session.get(Region, region.id).status == "labeled"


def _bad_inputs():
    rgb = io.BytesIO()
    PILImage.new("RGB", (W, W)).save(rgb, format="PNG")
    deep = io.BytesIO()
    PILImage.fromarray(np.zeros((W, W), np.uint16)).save(deep, format="PNG")
    out_of_range = pattern()
    out_of_range[3, 3] = 7
    return [
        ("wrong size", mask_bytes(np.zeros((W, W + 1), np.uint8)), 422, "expected 16x16"),
        ("wrong mode RGB", rgb.getvalue(), 422, "mode"),
        ("16-bit", deep.getvalue(), 422, "mode"),
        ("out of range", mask_bytes(out_of_range), 422, "7"),
        ("not a png", b"GIF89a not a png at all", 415, "PNG"),
        ("jpeg", b"\xff\xd8\xff\xe0" + b"\0" * 64, 415, "PNG"),
        ("bomb", bomb_png(100_000, 100_000), 413, "pixels"),
        ("truncated", mask_bytes(pattern())[:60], 422, ""),
    ]


@pytest.mark.parametrize("name,data,status,words", _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_bad_masks_are_refused_and_nothing_is_stored(client, session, settings, name, data, status, words):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    r = post_mask(client, held["lease_id"], a, data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert annotation_count(session) == 0 and mask_files(settings) == []
    session.expire_all()
    assert session.get(Lease, held["lease_id"]).state == "active"  # the annotator can try again


def test_upload_over_the_size_limit_is_413(client, session, settings):
    settings.max_upload_bytes = 100
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, a)
    r = post_mask(client, held["lease_id"], a, mask_bytes(pattern()) + b"\0" * 200)
    assert r.status_code == 413 and annotation_count(session) == 0


def test_not_your_lease_unknown_lease_missing_file(client, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    a, _ = token_row(session, "a")
    b, _ = token_row(session, "b")
    held = lease(client, seeded.project_id, a)
    assert post_mask(client, held["lease_id"], b, mask_bytes(pattern())).status_code == 403
    assert post_mask(client, "no-such-lease", a, mask_bytes(pattern())).status_code == 404
    missing = client.post(f"/api/leases/{held['lease_id']}/annotation", headers=bearer(a))
    assert missing.status_code == 422
    long_key = post_mask(client, held["lease_id"], a, mask_bytes(pattern()), key="k" * 201)
    assert long_key.status_code == 422
    assert annotation_count(session) == 0 and mask_files(settings) == []
    assert session.scalars(select(Annotation)).first() is None
