import json
import re

import numpy as np
import pytest
from PIL import Image

from worker.datasets import DatasetError, fallback_val_stems, read_dataset

CLASSES = [{"id": 0, "name": "background", "color": "#000000"},
           {"id": 1, "name": "shirt", "color": "#ff0000"},
           {"id": 2, "name": "bag", "color": "#00ff00"}]


def make_dataset(root, n=4, size=(12, 10), masks=True, splits=None, classes=CLASSES):
    """A valid folder: n RGB images (w x h = size), masks with a few classes and 255."""
    (root / "images").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(classes))
    rng = np.random.default_rng(0)
    for i in range(n):
        stem = f"img{i}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / "images" / f"{stem}.png")
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            mask = rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)
            mask[0, :] = 255
            Image.fromarray(mask, mode="L").save(root / "masks" / f"{stem}.png")
    for name, stems in (splits or {}).items():
        (root / "splits").mkdir(exist_ok=True)
        (root / "splits" / f"{name}.txt").write_text("\n".join(stems) + "\n")
    return root


def errors_of(root, **kwargs):
    with pytest.raises(DatasetError) as info:
        read_dataset(root, **kwargs)
    return info.value.errors


def test_valid_folder_reads_with_arrays_and_splits(tmp_path):
    root = make_dataset(tmp_path / "d", splits={"train": ["img0", "img1"], "val": ["# held out", "img3", ""]})
    ds = read_dataset(root)
    assert ds.num_classes == 3 and ds.class_names == ["background", "shirt", "bag"]
    assert ds.stems("train") == ["img0", "img1", "img2"]  # not in val.txt -> train, like the importer
    assert ds.stems("val") == ["img3"] and ds.has_val_split
    assert ds.simulation_split() == (["img0", "img1", "img2"], ["img3"])
    images, masks = ds.load(["img0", "img3"])
    assert images[0].shape == (10, 12, 3) and images[0].dtype == np.uint8
    assert masks[1].shape == (10, 12) and masks[1].dtype == np.uint8
    assert set(np.unique(masks[1])) <= {0, 1, 2, 255} and (masks[1][0] == 255).all()
    expected = np.asarray(Image.open(root / "masks" / "img0.png"))
    np.testing.assert_array_equal(ds.load_mask("img0"), expected)


def test_no_split_files_all_train_and_deterministic_fallback(tmp_path):
    root = make_dataset(tmp_path / "d", n=12, masks=False)
    (root / "images" / "grey.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((10, 12), np.uint8), mode="L").save(root / "images" / "grey.png")
    ds = read_dataset(root)
    assert len(ds.stems("train")) == 13 and ds.stems("val") == [] and not ds.has_val_split
    train, val = ds.simulation_split()
    assert len(val) == 2 and set(val) | set(train) == set(ds.stems("train")) and not set(val) & set(train)
    assert val == fallback_val_stems(list(reversed(ds.stems("train"))))  # independent of order
    assert ds.load_image("grey").shape == (10, 12, 3) and ds.load_mask("grey") is None
    assert fallback_val_stems(["only"]) == [] and len(fallback_val_stems(["a", "b"])) == 1


@pytest.mark.parametrize("content,match", [
    ("not json", "classes.json: not valid JSON"),
    ("[]", "classes.json: must be a non-empty list"),
    ('[{"id": 0, "name": "a"}]', "classes.json: entry 0 must have exactly the keys id, name, color"),
    ('[{"id": 0, "name": "a", "color": "red"}]', "classes.json: entry 0: color must be #rrggbb"),
    ('[{"id": 0, "name": "a", "color": "#000000"}, {"id": 2, "name": "b", "color": "#000000"}]',
     r"classes.json: ids must be unique and contiguous 0..1, got \[0, 2\]"),
    ('[{"id": 0, "name": "a", "color": "#000000"}, {"id": 1, "name": "a", "color": "#000000"}]',
     "classes.json: duplicate class names"),
])
def test_bad_classes_json(tmp_path, content, match):
    root = make_dataset(tmp_path / "d", masks=False)
    (root / "classes.json").write_text(content)
    assert any(re.search(match, e) for e in errors_of(root)), errors_of(root)


def test_missing_parts(tmp_path):
    (tmp_path / "empty").mkdir()
    assert errors_of(tmp_path / "empty") == ["classes.json: missing", "images/: missing"]
    assert "not a directory" in errors_of(tmp_path / "nope")[0]
    root = make_dataset(tmp_path / "d", n=0, masks=False)
    assert errors_of(root) == ["images/: no images"]


def test_bad_images_are_named(tmp_path):
    root = make_dataset(tmp_path / "d", n=2, masks=False)
    (root / "images" / "notes.txt").write_text("x")
    (root / "images" / "broken.png").write_bytes(b"\x89PNG garbage")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / "img0.jpg")
    errs = errors_of(root)
    assert "images/notes.txt: not a .png/.jpg/.jpeg file" in errs
    assert any(e.startswith("images/broken.png: not a readable image") for e in errs)
    assert "images/img0.png: stem 'img0' already used by images/img0.jpg" in errs


def test_bad_masks_are_named(tmp_path):
    root = make_dataset(tmp_path / "d", n=5)
    masks = root / "masks"
    Image.fromarray(np.full((10, 12), 7, np.uint8), mode="L").save(masks / "img0.png")
    Image.fromarray(np.zeros((9, 12), np.uint8), mode="L").save(masks / "img1.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(masks / "img2.png")
    Image.fromarray(np.zeros((10, 12), np.uint8), mode="L").save(masks / "ghost.png")
    Image.fromarray(np.zeros((10, 12), np.uint8), mode="L").save(masks / "img3.jpg")
    errs = errors_of(root)
    # One mask decoder for the importer, the API and simulate (service/masks.py), hence its wording.
    assert "masks/img0.png: mask has values that are neither a class id (0..2) nor 255: 7" in errs
    assert "masks/img1.png: mask is 12x9, expected 12x10" in errs
    assert ("masks/img2.png: mask must be an 8-bit single-channel PNG (mode L or P) of class ids, "
            "got mode RGB" in errs)
    assert "masks/ghost.png: no image with stem 'ghost' in images/" in errs
    assert "masks/img3.jpg: not a .png file" in errs
    assert len(errs) == 5


def test_palette_masks_use_indices(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    mask = Image.fromarray(np.array([[0, 1, 2, 255] * 3] * 10, np.uint8), mode="P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * (3 * 253))
    mask.save(root / "masks" / "img0.png")
    np.testing.assert_array_equal(read_dataset(root).load_mask("img0")[0, :4], [0, 1, 2, 255])


def test_bad_splits_are_named(tmp_path):
    root = make_dataset(tmp_path / "d", splits={"train": ["img0", "img9", "img0"], "val": ["img0"]})
    errs = errors_of(root)
    assert "splits/train.txt:2: no image with stem 'img9' in images/" in errs
    assert "splits/train.txt:3: stem 'img0' listed twice" in errs
    assert "splits/: stem 'img0' is in both train.txt and val.txt" in errs


def test_require_masks_names_each_missing_mask(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    (root / "masks" / "img1.png").unlink()
    assert errors_of(root, require_masks=True) == [
        "masks/img1.png: missing (every image needs a ground-truth mask here)"]
    assert read_dataset(root).item("img1").mask_path is None


def test_error_message_names_folder_and_files(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    (root / "classes.json").unlink()
    with pytest.raises(DatasetError, match=r"invalid dataset folder .*d:\n  classes.json: missing"):
        read_dataset(root)
