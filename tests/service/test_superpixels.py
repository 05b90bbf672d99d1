"""GET /api/regions/{id}/superpixels: the crop's superpixel ids from the worker's cached map, as a PNG."""

import io

import numpy as np
from PIL import Image as PILImage

from tests.service.queue_helpers import bearer, seed_queue, token_row
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
    not_cached = client.get(f"/api/regions/{rid}/superpixels", headers=bearer(a))
    assert not_cached.status_code == 204
    ids = slanted_ids(128, 96)
    write_superpixels(settings, seeded.project_id, seeded.image_ids[0], ids)

    r = client.get(f"/api/regions/{rid}/superpixels?context=8", headers=bearer(a))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-crop-box"] == "24,24,48,48"
    assert r.headers["x-content-type-options"] == "nosniff" and "max-age" in r.headers["cache-control"]
    assert r.headers["x-superpixel-region"] == "-1"  # a grid region
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
