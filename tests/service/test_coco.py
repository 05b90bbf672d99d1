"""COCO export: RLE strings decode back to the same masks. The decoder here is written from the
pycocotools format (rleFrString + column-major runs), independently of service/coco.py's encoder."""

import io
import json
import zipfile

import numpy as np
import pytest

from service.coco import rle_counts, rle_string
from service.models import Image
from service.storage import storage_for
from tests.service.queue_helpers import CLASSES
from tests.service.test_export import labeled_project


def decode_rle(rle: dict) -> np.ndarray:
    s, counts, i = rle["counts"], [], 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    h, w = rle["size"]
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for n in counts:
        flat[pos:pos + n] = value
        pos, value = pos + n, not value
    assert pos == h * w, "runs must cover the image exactly"
    return flat.reshape((w, h)).T  # column-major


@pytest.mark.parametrize("shape,seed", [((1, 1), 0), ((5, 7), 1), ((40, 33), 2), ((64, 64), 3)])
def test_rle_round_trip(shape, seed):
    rng = np.random.default_rng(seed)
    for p in (0.0, 0.02, 0.5, 1.0):
        mask = rng.random(shape) < p
        rle = {"size": list(shape), "counts": rle_string(rle_counts(mask))}
        assert np.array_equal(decode_rle(rle), mask)


def test_rle_of_known_masks():
    # Column-major: [[0,1],[1,1]] flattens to 0,1,1,1 -> runs [1, 3]; all ones starts with a zero run.
    assert rle_counts(np.array([[0, 1], [1, 1]])) == [1, 3]
    assert rle_counts(np.ones((2, 2))) == [0, 4]
    long_run = np.zeros((100, 100), bool)
    long_run[50:, 60:] = True  # counts large enough for several 5-bit groups and negative deltas
    assert np.array_equal(decode_rle({"size": [100, 100], "counts": rle_string(rle_counts(long_run))}),
                          long_run)


def test_coco_export_decodes_back_to_the_masks(client, session, settings, admin):
    seeded, expected = labeled_project(session, settings)
    r = client.get(f"/api/projects/{seeded.project_id}/export?format=coco", headers=admin)
    assert r.status_code == 200 and 'coco.zip"' in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert set(zf.namelist()) == {"images/img0.png", "images/img1.png", "annotations.json"}
    doc = json.loads(zf.read("annotations.json"))
    assert [(c["id"], c["name"], c["s4al_class_id"]) for c in doc["categories"]] == \
        [(c["id"] + 1, c["name"], c["id"]) for c in CLASSES]
    img0 = session.get(Image, seeded.image_ids[0])
    assert {i["file_name"] for i in doc["images"]} == {"img0.png", "img1.png"}
    assert zf.read("images/img0.png") == storage_for(settings).read_bytes(img0.path)
    rebuilt = np.full(expected.shape, 255, np.uint8)
    for ann in doc["annotations"]:
        assert ann["image_id"] == img0.id and ann["iscrowd"] == 1  # img1 has no labels
        m = decode_rle(ann["segmentation"])
        assert not (rebuilt[m] != 255).any(), "classes of one image never overlap"
        rebuilt[m] = ann["category_id"] - 1
        assert ann["area"] == int(m.sum())
        x, y, w, h = ann["bbox"]
        assert m[y:y + h, x:x + w].sum() == m.sum()
    assert np.array_equal(rebuilt, expected)
    bad = client.get(f"/api/projects/{seeded.project_id}/export?format=voc", headers=admin)
    assert bad.status_code == 422
