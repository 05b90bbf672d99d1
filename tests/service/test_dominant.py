"""Dominant-class annotation: the project setting, the lease telling the page, a class id stored as the class
inside the superpixel (255 outside), and every wrong answer refused with a clear 4xx and nothing stored."""

import numpy as np
import pytest
from sqlalchemy import select

from service.labels import assemble_labels
from service.masks import IGNORE, decode_mask_png
from service.models import Annotation, Image, Region
from service.storage import storage_for, superpixel_key
from tests.service.dominant_helpers import DOMINANT_REGION, make_dominant
from tests.service.factories import CLASSES, create_project
from tests.service.queue_helpers import annotation_count, bearer, mask_bytes, seed_queue, token_row


def lease(client, project_id, token):
    r = client.post(f"/api/projects/{project_id}/queue/lease", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def post_class(client, lease_id, token, body, key=None):
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(f"/api/leases/{lease_id}/annotation", json=body, headers=headers)


def post_mask(client, lease_id, token, arr):
    return client.post(f"/api/leases/{lease_id}/annotation", headers=bearer(token),
                       files={"mask": ("mask.png", mask_bytes(arr), "image/png")})


@pytest.fixture
def dominant(session, settings):
    seeded = seed_queue(session, settings, regions=2)
    region = make_dominant(session, settings, seeded)
    token, _ = token_row(session, "a")
    return seeded, region, token


def test_the_setting_defaults_to_exact_and_dominant_needs_superpixels(client, admin):
    assert create_project(client, admin, name="plain")["region"]["annotation"] == "exact"
    p = create_project(client, admin, name="sp", region=DOMINANT_REGION)
    assert p["region"] == DOMINANT_REGION
    grid = {"kind": "grid", "annotation": "dominant"}
    r = client.post("/api/projects", headers=admin, json={"name": "g", "classes": CLASSES, "region": grid})
    assert r.status_code == 422
    assert "needs kind 'superpixel'" in r.json()["detail"][0]["msg"]
    r = client.patch(f"/api/projects/{p['id']}", headers=admin, json={"region": {"kind": "grid", "size": 16,
                                                                                 "annotation": "dominant"}})
    assert r.status_code == 422 and "superpixel" in r.text
    r = client.patch(f"/api/projects/{p['id']}", headers=admin, json={"region": {"kind": "grid"}})
    assert r.status_code == 200 and r.json()["region"]["annotation"] == "exact"


def test_the_lease_says_which_regions_take_a_class(client, session, settings, dominant):
    seeded, region, token = dominant
    first = lease(client, seeded.project_id, token)
    assert first["region"]["id"] == region.region_id and first["region"]["annotation"] == "dominant"
    second = client.post(f"/api/projects/{seeded.project_id}/queue/lease", headers=bearer(token),
                         json={"holding": [first["lease_id"]]}).json()
    assert second["region"]["kind"] == "grid" and second["region"]["annotation"] == "exact"
    read = client.get(f"/api/regions/{region.region_id}", headers=bearer(token)).json()
    assert read["annotation"] == "dominant"


def test_a_class_id_is_stored_as_the_class_inside_the_superpixel(client, session, settings, dominant):
    seeded, region, token = dominant
    held = lease(client, seeded.project_id, token)
    r = post_class(client, held["lease_id"], token, {"class_id": 2, "active_seconds": 3.5})
    assert r.status_code == 201, r.text
    x, y, w, h = region.box
    assert (r.json()["x"], r.json()["y"], r.json()["w"], r.json()["h"]) == (x, y, w, h)
    ann = session.get(Annotation, r.json()["id"])
    storage = storage_for(settings)
    stored = decode_mask_png(storage.read_bytes(ann.mask_path), w, h, len(CLASSES))
    expected = np.where(region.shape, 2, IGNORE)
    assert np.array_equal(stored, expected)
    labels = assemble_labels(session, storage, session.get(Image, seeded.image_ids[0]))
    assert np.array_equal(labels[y:y + h, x:x + w], expected)
    assert (labels == IGNORE).sum() == labels.size - region.shape.sum()  # nothing else labeled
    # Effort: one click; pixels changed counted inside the superpixel only, against the pre-label shown.
    assert ann.strokes == 1 and ann.active_seconds == 3.5
    assert ann.labeled_pixels == region.shape.sum()
    assert ann.pixels_changed == (region.prelabel[region.shape] != 2).sum() and ann.unchanged is False
    session.expire_all()
    assert session.get(Region, region.region_id).status == "labeled"


def test_a_retry_with_the_same_key_replays_and_another_class_conflicts(client, session, settings, dominant):
    seeded, _, token = dominant
    held = lease(client, seeded.project_id, token)
    first = post_class(client, held["lease_id"], token, {"class_id": 1}, key="k1")
    again = post_class(client, held["lease_id"], token, {"class_id": 1}, key="k1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = post_class(client, held["lease_id"], token, {"class_id": 0}, key="k1")
    assert other.status_code == 409
    assert annotation_count(session) == 1


@pytest.mark.parametrize("body,says", [
    ({"class_id": 3}, "class 3 is not a class of this project"),
    ({"class_id": 255}, "less than or equal to 254"),
    ({"class_id": -1}, "greater than or equal to 0"),
    ({"class_id": "2"}, "valid integer"),
    ({"class_id": 1, "strokes": 9}, "Extra inputs"),
    ({}, "Field required"),
])
def test_a_bad_class_is_422_and_stores_nothing(client, session, settings, dominant, body, says):
    seeded, _, token = dominant
    held = lease(client, seeded.project_id, token)
    r = post_class(client, held["lease_id"], token, body)
    assert r.status_code == 422 and says in r.text, r.text
    assert annotation_count(session) == 0


def test_an_answer_of_the_wrong_kind_is_422(client, session, settings, dominant):
    seeded, region, token = dominant
    held = lease(client, seeded.project_id, token)
    r = post_mask(client, held["lease_id"], token, np.zeros((region.box[3], region.box[2]), np.uint8))
    assert r.status_code == 422 and 'send the class as JSON, {"class_id"' in r.json()["detail"]
    grid = client.post(f"/api/projects/{seeded.project_id}/queue/lease", headers=bearer(token),
                       json={"holding": [held["lease_id"]]}).json()
    r = post_class(client, grid["lease_id"], token, {"class_id": 1})
    assert r.status_code == 422 and "send its mask (a PNG upload), not a class id" in r.json()["detail"]
    r = client.post(f"/api/leases/{held['lease_id']}/annotation", headers=bearer(token))
    assert r.status_code == 422 and "multipart field `mask`" in r.json()["detail"]
    r = client.post(f"/api/leases/{held['lease_id']}/annotation", content=b"{not json",
                    headers=bearer(token) | {"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.text
    assert annotation_count(session) == 0


def test_an_exact_project_refuses_a_class_id(client, session, settings):
    seeded = seed_queue(session, settings, regions=1)
    token, _ = token_row(session, "a")
    held = lease(client, seeded.project_id, token)
    assert held["region"]["annotation"] == "exact"
    assert post_class(client, held["lease_id"], token, {"class_id": 1}).status_code == 422
    assert annotation_count(session) == 0


def test_without_a_superpixel_map_the_shape_is_unknown_409(client, session, settings, dominant):
    seeded, _, token = dominant
    storage = storage_for(settings)
    (storage.path(superpixel_key(seeded.project_id, seeded.image_ids[0], DOMINANT_REGION["size"]))).unlink()
    held = lease(client, seeded.project_id, token)
    r = post_class(client, held["lease_id"], token, {"class_id": 1})
    assert r.status_code == 409 and "no superpixel map" in r.json()["detail"]
    assert annotation_count(session) == 0
    assert session.scalars(select(Annotation)).first() is None
