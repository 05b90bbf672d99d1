import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from service.labels import add_annotation, assemble_labels
from service.masks import MaskError, decode_mask_png, encode_mask_png
from service.models import Image, Project
from service.storage import Storage
from tests.service.factories import CLASSES, bomb_png, counts, files_under, mask_png, png_bytes


def test_encode_decode_roundtrip_and_palette_indices():
    arr = np.array([[0, 1, 2], [255, 2, 0]], np.uint8)
    assert (decode_mask_png(encode_mask_png(arr), 3, 2, 3) == arr).all()
    assert (decode_mask_png(mask_png(arr, "P"), 3, 2, 3) == arr).all()  # palette index = class id


@pytest.mark.parametrize("data,w,h,words", [
    (mask_png(np.zeros((2, 3), np.uint8)), 3, 3, "expected 3x3"),
    (mask_png(np.zeros((2, 3), np.uint8), "RGB"), 3, 2, "mode RGB"),
    (mask_png(np.zeros((2, 3), np.uint8), "I;16"), 3, 2, "mode I;16"),
    (mask_png(np.zeros((2, 3), np.uint8), "LA"), 3, 2, "mode LA"),
    (mask_png(np.full((2, 3), 7, np.uint8)), 3, 2, "neither a class id"),
    (png_bytes(3, 2, mode="RGB")[:30], 3, 2, "not a readable PNG"),
    (b"GIF89a", 3, 2, "must be a PNG"),
    (bomb_png(100_000, 100_000), 3, 2, "not a readable PNG"),  # refused from the header
    (bomb_png(30_000, 1000), 3, 2, "expected 3x2"),
])
def test_decode_refuses(data, w, h, words):
    with pytest.raises(MaskError, match=words):
        decode_mask_png(data, w, h, 3)


def _image(session, w=6, h=4) -> Image:
    p = Project(name="p", classes=CLASSES, region={"kind": "grid", "size": 2}, training={})
    img = Image(project=p, stem="a", path="x.png", content_type="image/png", width=w, height=h)
    session.add(img)
    session.commit()
    return img


def test_newest_annotation_wins_and_255_does_not_erase(session, tmp_path):
    storage = Storage(tmp_path / "st")
    img = _image(session)
    full = np.zeros((4, 6), np.uint8)
    full[:, 4:] = 255  # the initial mask labels columns 0..3
    add_annotation(session, storage, image=img, x=0, y=0, w=6, h=4, mask=full, source="initial")
    patch = np.array([[1, 255, 2], [1, 1, 255]], np.uint8)  # a 3x2 box at (2, 1)
    add_annotation(session, storage, image=img, x=2, y=1, w=3, h=2, mask=patch, source="human")
    session.commit()
    got = assemble_labels(session, storage, img)
    want = full.copy()
    want[1, 2], want[1, 4], want[2, 2], want[2, 3] = 1, 2, 1, 1  # the 255s of the patch keep old labels
    assert (got == want).all(), got
    assert got[1, 3] == 0 and got[2, 4] == 255


@pytest.mark.parametrize("kw,words", [
    ({"x": 4, "y": 0, "w": 3, "h": 2}, "not inside"),
    ({"x": 0, "y": 0, "w": 3, "h": 3}, "shape"),
    ({"x": -1, "y": 0, "w": 3, "h": 2}, "not inside"),
])
def test_add_annotation_refuses_bad_boxes(session, tmp_path, kw, words):
    storage = Storage(tmp_path / "st")
    img = _image(session)
    with pytest.raises(MaskError, match=words):
        add_annotation(session, storage, image=img, mask=np.zeros((2, 3), np.uint8), source="human", **kw)
    with pytest.raises(MaskError, match="neither a class id"):
        add_annotation(session, storage, image=img, x=0, y=0, w=3, h=2, mask=np.full((2, 3), 9, np.uint8),
                       source="human")
    assert counts(session)["annotation"] == 0 and files_under(tmp_path / "st") == []


def test_duplicate_idempotency_key_leaves_no_file(session, tmp_path, admin_token):
    storage = Storage(tmp_path / "st")
    img = _image(session)
    m = np.zeros((2, 2), np.uint8)
    add_annotation(session, storage, image=img, x=0, y=0, w=2, h=2, mask=m, source="human", token_id=1,
                   idempotency_key="k")
    session.commit()
    with pytest.raises(IntegrityError):
        add_annotation(session, storage, image=img, x=0, y=0, w=2, h=2, mask=m, source="human", token_id=1,
                       idempotency_key="k")
    session.rollback()
    assert counts(session)["annotation"] == 1 and len(files_under(tmp_path / "st")) == 1
