import json
import os

import numpy as np
import pytest
from sqlalchemy import select

from service.importer import ImportFailed, import_dataset
from service.labels import assemble_labels
from service.masks import decode_mask_png
from service.models import Annotation, Image
from service.storage import storage_for
from tests.service.factories import (
    CLASSES,
    bomb_png,
    counts,
    create_project,
    files_under,
    label_array,
    make_dataset,
    mask_png,
    png_bytes,
)


def test_import_initial_masks_become_labels(session, settings, tmp_path):
    ds = make_dataset(tmp_path / "ds")
    out = import_dataset(session, settings, ds, "camvid", "initial")
    assert out == {"project_id": out["project_id"], "project": "camvid", "created_project": True, "images": 3,
                   "train": 2, "val": 1, "initial_masks": 3, "oracle_masks": 0}
    images = {i.stem: i for i in session.scalars(select(Image))}
    assert {s: i.split for s, i in images.items()} == {"a": "train", "b": "train", "c": "val"}
    assert images["b"].content_type == "image/jpeg" and (images["a"].width, images["a"].height) == (8, 6)
    anns = list(session.scalars(select(Annotation)))
    assert {a.source for a in anns} == {"initial"} and all((a.w, a.h) == (8, 6) for a in anns)
    storage = storage_for(settings)
    for i, stem in enumerate("abc"):
        assert (assemble_labels(session, storage, images[stem]) == label_array(8, 6, i)).all()
        assert images[stem].oracle_mask_path is None


def test_import_oracle_masks_are_kept_apart(session, settings, tmp_path, client, annotator):
    ds = make_dataset(tmp_path / "ds", val=None)
    # palette masks are accepted; the indices are the class ids
    (ds / "masks" / "a.png").write_bytes(mask_png(label_array(8, 6, 0), "P"))
    out = import_dataset(session, settings, ds, "sim", "oracle")
    assert (out["oracle_masks"], out["initial_masks"], out["val"]) == (3, 0, 0)
    assert counts(session)["annotation"] == 0
    storage = storage_for(settings)
    for i, img in enumerate(session.scalars(select(Image).order_by(Image.stem))):
        oracle = decode_mask_png(storage.read_bytes(img.oracle_mask_path), 8, 6, 3)
        assert (oracle == label_array(8, 6, i)).all()
        assert (assemble_labels(session, storage, img) == 255).all()  # ground truth is not a label
        shown = client.get(f"/api/images/{img.id}", headers=annotator).json()
        assert not any("oracle" in k or "mask" in k for k in shown)


def test_import_without_masks_ignores_masks_dir(session, settings, tmp_path):
    ds = make_dataset(tmp_path / "ds")
    (ds / "masks" / "a.png").write_bytes(b"broken, and not looked at")
    out = import_dataset(session, settings, ds, "p", "none")
    assert (out["images"], out["initial_masks"], out["oracle_masks"]) == (3, 0, 0)


def test_import_into_existing_project_and_stem_clash(session, settings, tmp_path):
    import_dataset(session, settings, make_dataset(tmp_path / "one", stems=("a", "b"), val=()), "p")
    out = import_dataset(session, settings, make_dataset(tmp_path / "two", stems=("x", "y"), val=()), "p",
                         create=False)
    assert out["created_project"] is False and counts(session)["image"] == 4
    before = files_under(settings.storage_dir)
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, make_dataset(tmp_path / "three", stems=("b", "z"), val=()), "p")
    assert e.value.status == 409 and "images/b" in str(e.value)
    assert counts(session)["image"] == 4 and files_under(settings.storage_dir) == before


def _break(case, ds, tmp_path):
    """Damage a good dataset folder in one way; returns the words the error must contain."""
    if case == "mask size":
        (ds / "masks" / "b.png").write_bytes(mask_png(np.zeros((5, 8), np.uint8)))
        return "masks/b.png: mask is 8x5, expected 8x6"
    if case == "mask values":
        (ds / "masks" / "c.png").write_bytes(mask_png(np.full((6, 8), 3, np.uint8)))
        return "masks/c.png: mask has values that are neither a class id (0..2) nor 255: 3"
    if case == "mask rgb":
        (ds / "masks" / "a.png").write_bytes(png_bytes(8, 6, "RGB"))
        return "masks/a.png: mask must be an 8-bit single-channel PNG"
    if case == "mask without image":
        (ds / "masks" / "zz.png").write_bytes(mask_png(np.zeros((6, 8), np.uint8)))
        return "masks/zz.png: no image with stem 'zz'"
    if case == "classes duplicate ids":
        (ds / "classes.json").write_text(json.dumps(CLASSES + [CLASSES[0]]))
        return "classes.json: duplicate class ids: [0]"
    if case == "classes bad color":
        (ds / "classes.json").write_text(json.dumps([{"id": 0, "name": "a", "color": "blue"}]))
        return "classes.json:"
    if case == "classes not json":
        (ds / "classes.json").write_text("[{")
        return "classes.json:"
    if case == "classes missing":
        (ds / "classes.json").unlink()
        return "classes.json: missing"
    if case == "split unknown stem":
        (ds / "splits" / "val.txt").write_text("c\nnope\n")
        return "splits/val.txt:2: no image with stem 'nope'"
    if case == "split overlap":
        (ds / "splits" / "train.txt").write_text("a\nc\n")
        return "stem 'c' is in both"
    if case == "not an image":
        (ds / "images" / "d.png").write_bytes(b"hello")
        return "images/d.png: not a PNG or JPEG"
    if case == "other file":
        (ds / "images" / "notes.txt").write_text("hi")
        return "images/notes.txt: not a .png/.jpg/.jpeg file"
    if case == "image bomb":
        (ds / "images" / "d.png").write_bytes(bomb_png(20_000, 20_000))
        return "images/d.png: image is a decompression bomb"
    if case == "same stem twice":
        (ds / "images" / "a.jpg").write_bytes(png_bytes(8, 6))
        return "stem 'a' already used"
    if case == "link out of the folder":
        (tmp_path / "elsewhere.png").write_bytes(png_bytes(8, 6))
        os.symlink(tmp_path / "elsewhere.png", ds / "images" / "d.png")
        return "images/d.png: a link that leads outside the dataset folder"
    if case == "no images":
        for f in (ds / "images").iterdir():
            f.unlink()
        return "images/: no images"
    raise AssertionError(case)


BAD_CASES = ["mask size", "mask values", "mask rgb", "mask without image", "classes duplicate ids",
             "classes bad color", "classes not json", "classes missing", "split unknown stem",
             "split overlap", "not an image", "other file", "image bomb", "same stem twice",
             "link out of the folder", "no images"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_dataset_is_refused_naming_the_file_and_writes_nothing(session, settings, tmp_path, case):
    ds = make_dataset(tmp_path / "ds")
    words = _break(case, ds, tmp_path)
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, ds, "p", "initial")
    assert words in str(e.value), str(e.value)
    assert e.value.status == 422
    assert counts(session) == {"project": 0, "image": 0, "annotation": 0}
    assert files_under(settings.storage_dir) == []


def test_every_problem_is_listed_at_once(session, settings, tmp_path):
    ds = make_dataset(tmp_path / "ds")
    _break("mask size", ds, tmp_path)
    _break("not an image", ds, tmp_path)
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, ds, "p", "oracle")
    assert len(e.value.errors) == 2


def test_outside_import_root_is_refused(session, settings, tmp_path, tmp_path_factory):
    outside = make_dataset(tmp_path_factory.mktemp("other") / "ds")
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, outside, "p", "initial")
    assert e.value.status == 403 and "outside the import root" in str(e.value)
    # a symlink under the root that points outside is judged by where it leads
    os.symlink(outside, tmp_path / "sneaky")
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, tmp_path / "sneaky", "p", "initial")
    assert e.value.status == 403
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, tmp_path / "ds" / ".." / ".." / outside.name, "p")
    assert e.value.status == 403
    assert counts(session)["project"] == 0 and files_under(settings.storage_dir) == []


def test_missing_folder_and_missing_project(session, settings, tmp_path):
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, tmp_path / "nope", "p")
    assert e.value.status == 404
    with pytest.raises(ImportFailed) as e:
        import_dataset(session, settings, make_dataset(tmp_path / "ds"), "p", create=False)
    assert e.value.status == 404 and "does not exist" in str(e.value)


def test_import_endpoint(client, admin, annotator, session, settings, tmp_path):
    pid = create_project(client, admin)["id"]
    make_dataset(tmp_path / "ds")
    r = client.post(f"/api/projects/{pid}/import", json={"path": "ds", "masks": "initial"}, headers=annotator)
    assert r.status_code == 403 and counts(session)["image"] == 0
    r = client.post(f"/api/projects/{pid}/import", json={"path": "ds", "masks": "initial"}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["images"] == 3 and r.json()["initial_masks"] == 3


def test_import_endpoint_refusals_write_nothing(client, admin, session, settings, tmp_path, tmp_path_factory):
    pid = create_project(client, admin)["id"]
    ds = make_dataset(tmp_path / "ds")
    _break("mask values", ds, tmp_path)
    r = client.post(f"/api/projects/{pid}/import", json={"path": str(ds), "masks": "initial"}, headers=admin)
    assert r.status_code == 422
    assert any("masks/c.png" in err for err in r.json()["detail"]["errors"])
    outside = make_dataset(tmp_path_factory.mktemp("other") / "ds")
    r = client.post(f"/api/projects/{pid}/import", json={"path": str(outside)}, headers=admin)
    assert r.status_code == 403
    r = client.post(f"/api/projects/{pid}/import", json={"path": "../x"}, headers=admin)
    assert r.status_code in (403, 404)
    assert client.post("/api/projects/999/import", json={"path": "ds"}, headers=admin).status_code == 404
    r = client.post(f"/api/projects/{pid}/import", json={"path": "ds", "masks": "all"}, headers=admin)
    assert r.status_code == 422
    assert counts(session) == {"project": 1, "image": 0, "annotation": 0}
    assert files_under(settings.storage_dir) == []


def test_failure_while_writing_rolls_back_rows_and_files(client, admin, session, settings, tmp_path):
    pid = create_project(client, admin)["id"]
    ds = make_dataset(tmp_path / "ds")
    blocker = settings.storage_dir / "projects" / str(pid) / "oracle"  # a file where a folder must go
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    with pytest.raises(OSError):  # the first image is written, then its oracle mask cannot be
        import_dataset(session, settings, ds, "p", "oracle", create=False)
    assert counts(session) == {"project": 1, "image": 0, "annotation": 0}
    assert files_under(settings.storage_dir) == [f"projects/{pid}/oracle"]
