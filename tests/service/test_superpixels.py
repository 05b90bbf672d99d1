"""GET /api/regions/{id}/superpixels: the crop's superpixel ids as a PNG, from the worker's cached map, or
computed for the crop of a grid region whose image has none."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from service import superpixels
from service.auth import create_token
from service.models import Image, Region
from service.storage import storage_for
from tests.service.queue_helpers import bearer, image_png, seed_queue, token_row
from tests.service.superpixel_helpers import make_superpixel_region, slanted_ids, write_superpixels


def _png(r) -> np.ndarray:
    return np.array(PILImage.open(io.BytesIO(r.content)))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two id maps that split the pixels the same way (ids may be renumbered)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_crop_of_the_cached_map_with_the_regions_own_id(client, session, settings):
    seeded = seed_queue(session, settings, grid=(128, 96), size=32, boxes=[(32, 32), (64, 32)])
    a, _ = token_row(session, "a")
    rid = seeded.region_ids[0]
    ids = slanted_ids(128, 96)
    write_superpixels(settings, seeded.project_id, seeded.image_ids[0], ids)

    r = client.get(f"/api/regions/{rid}/superpixels?context=8", headers=bearer(a))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-crop-box"] == "24,24,48,48"
    assert r.headers["x-content-type-options"] == "nosniff" and "max-age" in r.headers["cache-control"]
    assert r.headers["x-superpixel-region"] == "-1"  # a grid region
    assert r.headers["x-superpixel-source"] == "cached"
    got = _png(r)
    assert got.dtype == np.uint8 and got.shape == (48, 48)
    assert _same_partition(got, ids[24:72, 24:72])

    x, y, w, h = make_superpixel_region(session, seeded.region_ids[1], ids, sp=int(ids[40, 70]))
    r = client.get(f"/api/regions/{seeded.region_ids[1]}/superpixels?context=4", headers=bearer(a))
    cx, cy, cw, ch = map(int, r.headers["x-crop-box"].split(","))
    local = _png(r)
    own = local == int(r.headers["x-superpixel-region"])
    assert np.array_equal(own, ids[cy:cy + ch, cx:cx + cw] == ids[40, 70])


def test_more_than_256_superpixels_in_the_crop_are_16_bit(client, session, settings):
    seeded = seed_queue(session, settings, grid=(64, 48), size=16, boxes=[(16, 16)])
    a, _ = token_row(session, "a")
    ids = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64)  # one superpixel per pixel
    write_superpixels(settings, seeded.project_id, seeded.image_ids[0], ids)
    got = _png(client.get(f"/api/regions/{seeded.region_ids[0]}/superpixels?context=16", headers=bearer(a)))
    assert got.dtype == np.uint16 and got.shape == (48, 48) and got.max() == 48 * 48 - 1
    assert _same_partition(got, ids[0:48, 0:48])


def test_bad_requests(client, session, settings):
    seeded = seed_queue(session, settings, grid=(64, 48), size=16, boxes=[(16, 16)])
    a, _ = token_row(session, "a")
    rid = seeded.region_ids[0]
    assert client.get("/api/regions/999/superpixels", headers=bearer(a)).status_code == 404
    assert client.get(f"/api/regions/{rid}/superpixels").status_code == 401  # as the crop: no token
    assert client.get(f"/api/regions/{rid}/superpixels?context=-1", headers=bearer(a)).status_code == 422
    write_superpixels(settings, seeded.project_id, seeded.image_ids[0], np.zeros((10, 10), np.uint16))
    r = client.get(f"/api/regions/{rid}/superpixels", headers=bearer(a))
    assert r.status_code == 409 and "(10, 10)" in r.json()["detail"]


def _crop_rgb(settings, session, image_id: int, box: tuple[int, int, int, int]) -> np.ndarray:
    path = session.scalar(select(Image.path).where(Image.id == image_id))
    x, y, w, h = box
    with PILImage.open(storage_for(settings).path(path)) as img:
        return np.asarray(img.convert("RGB"))[y:y + h, x:x + w]


def test_a_grid_region_without_a_cached_map_gets_the_crops_own(client, session, settings):
    """A grid project: the worker caches no map, so the crop is segmented when the page asks."""
    seeded = seed_queue(session, settings, grid=(128, 96), size=32, boxes=[(32, 32)])
    a, _ = token_row(session, "a")
    rid = seeded.region_ids[0]
    r = client.get(f"/api/regions/{rid}/superpixels?context=16", headers=bearer(a))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-superpixel-source"] == "computed" and r.headers["x-superpixel-region"] == "-1"
    assert r.headers["x-content-type-options"] == "nosniff" and "max-age" in r.headers["cache-control"]
    assert r.headers["x-crop-box"] == "16,16,64,64"
    got = _png(r)
    assert got.shape == (64, 64)
    # The crop's own SLIC at a quarter of the region's side, aligned with the crop (another box of the
    # image would split it otherwise).
    side = superpixels.superpixel_side(32, 32)
    assert side == 8
    reference = superpixels.crop_superpixels(_crop_rgb(settings, session, seeded.image_ids[0],
                                                       (16, 16, 64, 64)), side)
    assert _same_partition(got, reference)
    assert 16 <= len(np.unique(got)) <= 4 * (64 * 64) // (side * side)  # small enough to paint with
    assert np.array_equal(_png(client.get(f"/api/regions/{rid}/superpixels?context=16", headers=bearer(a))),
                          got)  # the same every time


def test_a_large_crop_is_segmented_at_a_stride(monkeypatch):
    """The work per request is bounded: past MAX_PIXELS the crop is segmented at a stride and scaled back."""
    monkeypatch.setattr(superpixels, "MAX_PIXELS", 32 * 32)
    rgb = np.array(PILImage.open(io.BytesIO(image_png(128, 96))).convert("RGB"))
    ids = superpixels.crop_superpixels(rgb, 16)
    assert ids.shape == (96, 128)
    stride = 4  # ceil(sqrt(96*128 / 1024))
    blocks = ids.reshape(96 // stride, stride, 128 // stride, stride)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every stride×stride block is one superpixel
    assert len(np.unique(ids)) > 4 and np.array_equal(np.unique(ids), np.arange(ids.max() + 1))


def test_a_superpixel_region_without_its_map_is_204(client, session, settings):
    seeded = seed_queue(session, settings, grid=(64, 48), size=16, boxes=[(16, 16)])
    a, _ = token_row(session, "a")
    region = session.get(Region, seeded.region_ids[0])
    region.kind, region.superpixel_id = "superpixel", 3  # its shape is only known from the image's map
    session.commit()
    r = client.get(f"/api/regions/{region.id}/superpixels", headers=bearer(a))
    assert r.status_code == 204 and r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("cached", [False, True])
def test_another_projects_region_under_a_scoped_token_is_404(client, session, settings, cached):
    seeded = seed_queue(session, settings, grid=(64, 48), size=16, boxes=[(16, 16)], name="p1")
    other = seed_queue(session, settings, grid=(64, 48), size=16, boxes=[(16, 16)], name="p2")
    if cached:
        write_superpixels(settings, seeded.project_id, seeded.image_ids[0], slanted_ids(64, 48))
    scoped = create_token(session, "scoped", "annotator", projects=[other.project_id])
    rid = seeded.region_ids[0]
    r = client.get(f"/api/regions/{rid}/superpixels", headers=bearer(scoped))
    assert r.status_code == 404 and r.json()["detail"] == f"region {rid} not found"
    own = client.get(f"/api/regions/{other.region_ids[0]}/superpixels", headers=bearer(scoped))
    assert own.status_code == 200
