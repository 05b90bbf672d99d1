import numpy as np
import pytest
from PIL import Image as PILImage
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


def test_materialized_labels_equal_replaying_every_annotation(session, tmp_path):
    from service.labels import materialize_labels
    from service.storage import label_key

    storage = Storage(tmp_path / "st")
    img = _image(session, w=9, h=7)
    rng = np.random.default_rng(0)

    def annotate(n):
        for _ in range(n):
            w, h = (int(v) for v in rng.integers(1, 6, 2))
            x, y = int(rng.integers(0, 9 - w + 1)), int(rng.integers(0, 7 - h + 1))
            mask = np.where(rng.random((h, w)) < 0.3, 255, rng.integers(0, 3, (h, w))).astype(np.uint8)
            add_annotation(session, storage, image=img, x=x, y=y, w=w, h=h, mask=mask, source="human")
        session.commit()

    def current():
        key = materialize_labels(session, storage, [img])[img.id]
        return key, np.array(PILImage.open(storage.path(key)))

    assert materialize_labels(session, storage, [img]) == {img.id: None}  # nothing labeled yet
    annotate(5)
    key, labels = current()
    assert (labels == assemble_labels(session, storage, img)).all()
    assert current()[0] == key  # current: nothing rebuilt
    annotate(4)  # newer annotations are applied on top of the file, which is replaced
    key2, labels2 = current()
    assert key2 != key and not storage.exists(key)
    assert key2 == label_key(img.project_id, img.id, max_id(session), 9)
    assert (labels2 == assemble_labels(session, storage, img)).all()
    # A review takes an older annotation out of the labels: the file is rebuilt, not patched.
    from sqlalchemy import select

    from service.models import Annotation

    first = session.scalars(select(Annotation).order_by(Annotation.id)).first()
    first.in_labels = False
    session.commit()
    key3, labels3 = current()
    assert key3 != key2 and (labels3 == assemble_labels(session, storage, img)).all()


def max_id(session):
    from sqlalchemy import func, select

    from service.models import Annotation

    return session.scalar(select(func.max(Annotation.id)))


def test_current_labels_read_the_materialized_files_image_by_image(session, tmp_path):
    from service.labels import current_labels, materialize_labels

    storage = Storage(tmp_path / "st")
    first = _image(session, w=5, h=3)
    other = Image(project=first.project, stem="b", path="y.png", content_type="image/png", width=4, height=2)
    session.add(other)
    session.commit()
    mask = np.array([[1, 255], [2, 0]], np.uint8)
    add_annotation(session, storage, image=first, x=1, y=1, w=2, h=2, mask=mask, source="human")
    session.commit()
    got = list(current_labels(session, storage, [first, other], chunk=1))
    assert [im.id for im, _ in got] == [first.id, other.id]
    assert (got[0][1] == assemble_labels(session, storage, first)).all() and got[1][1] is None
    key = materialize_labels(session, storage, [first])[first.id]
    assert storage.exists(key)  # the export brought the file up to date, as a cycle would
    add_annotation(session, storage, image=first, x=0, y=0, w=2, h=2, mask=np.full((2, 2), 2, np.uint8),
                   source="human")
    session.commit()
    (_, newer), = current_labels(session, storage, [first])
    assert (newer == assemble_labels(session, storage, first)).all() and newer[0, 0] == 2
