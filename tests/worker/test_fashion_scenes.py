import json

import numpy as np
import pytest
from PIL import Image

from worker.data.fashion_scenes import CLASSES, ITEM_THRESHOLD, generate, load_items, make_scene, paste
from worker.datasets import read_dataset


def test_committed_subset_has_every_class_and_no_shared_split():
    train_x, train_y = load_items("train")
    val_x, val_y = load_items("val")
    assert train_x.shape[1:] == (28, 28) and train_x.dtype == np.uint8
    assert set(train_y) == set(range(10)) and set(val_y) == set(range(10))
    assert np.bincount(train_y).min() >= 50 and np.bincount(val_y).min() >= 10
    seen = {x.tobytes() for x in train_x}
    assert not any(x.tobytes() in seen for x in val_x)


def test_eleven_distinct_classes():
    assert [c["id"] for c in CLASSES] == list(range(11)) and CLASSES[0]["name"] == "background"
    assert len({c["color"] for c in CLASSES}) == 11 and len({c["name"] for c in CLASSES}) == 11


def test_paste_labels_exactly_the_item_pixels_and_later_pastes_occlude():
    img = np.zeros((10, 10, 3))
    label = np.zeros((10, 10), np.uint8)
    first = np.zeros((4, 4))
    first[1:3, :] = 255
    paste(img, label, first, np.array([1.0, 0.5, 0.0]), 2, 3, 7)
    expected = np.zeros((10, 10), bool)
    expected[4:6, 2:6] = True
    np.testing.assert_array_equal(label == 7, expected)
    np.testing.assert_array_equal(img.any(2), expected)  # image changed exactly where labelled
    np.testing.assert_allclose(img[4, 2], [1.0, 0.5, 0.0])
    second = np.full((2, 2), ITEM_THRESHOLD + 1.0)
    second[0, 0] = ITEM_THRESHOLD  # not above the threshold: not part of the garment
    paste(img, label, second, np.array([0.0, 0.0, 1.0]), 2, 4, 3)
    assert label[4, 2] == 7 and label[4, 3] == 3 and label[5, 2] == 3 and (label == 7).sum() == 5
    np.testing.assert_allclose(img[5, 2], [0, 0, 0.35 + 0.65 * (ITEM_THRESHOLD + 1) / 255])


def test_scene_labels_are_classes_of_the_pasted_items():
    items, classes = load_items("train")
    only_bags = items[classes == 8]
    image, label = make_scene(np.random.default_rng(0), only_bags, np.full(len(only_bags), 8), 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 9}
    assert 0.02 < (label == 9).mean() < 0.98


def test_generate_writes_a_valid_deterministic_dataset(tmp_path):
    a = generate(tmp_path / "a", n_train=6, n_val=3, size=32, seed=3)
    generate(tmp_path / "b", n_train=6, n_val=3, size=32, seed=3)
    generate(tmp_path / "c", n_train=6, n_val=3, size=32, seed=4)
    ds = read_dataset(tmp_path / "a", require_masks=True)
    assert ds.stems("train") == [f"train_{i:05d}" for i in range(6)]
    assert ds.stems("val") == ["val_00000", "val_00001", "val_00002"] and ds.num_classes == 11
    assert json.loads((tmp_path / "a" / "classes.json").read_text()) == CLASSES
    image = ds.load_image("train_00000")
    mask = ds.load_mask("train_00000")
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert 2 <= len(np.unique(mask)) <= 7 and mask.max() <= 10
    for sub in ("images", "masks"):
        for f in sorted((tmp_path / "a" / sub).iterdir()):
            same = (tmp_path / "b" / sub / f.name).read_bytes() == f.read_bytes()
            assert same, f"{sub}/{f.name} differs between two runs with the same seed"
    other = np.asarray(Image.open(tmp_path / "c" / "images" / "train_00000.png"))
    assert not np.array_equal(other, image)
    assert a["train"] == 6 and abs(sum(a["class_pixel_share"].values()) - 1) < 1e-3


def test_generate_refuses_non_empty_folder_unless_forced(tmp_path):
    generate(tmp_path / "d", n_train=3, n_val=1, size=16, seed=0)
    with pytest.raises(ValueError, match="not empty"):
        generate(tmp_path / "d", n_train=2, n_val=1, size=16)
    generate(tmp_path / "d", n_train=2, n_val=1, size=16, force=True)
    assert len(list((tmp_path / "d" / "images").iterdir())) == 3  # stale images removed


@pytest.mark.parametrize("kwargs,match", [({"size": 8}, "size must be at least 16"),
                                          ({"n_train": 0}, "n_train >= 1")])
def test_generate_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tmp_path / "e", **kwargs)


def test_cli_writes_dataset_and_reports_errors(tmp_path):
    import typer
    from typer.testing import CliRunner

    from cli.data import register

    app = typer.Typer()
    app.command()(lambda: None)  # a group needs a sibling command to keep `data` as a subcommand
    register(app)
    runner = CliRunner()
    out = tmp_path / "scenes"
    result = runner.invoke(app, ["data", "fashion-scenes", str(out), "--n-train", "3", "--n-val", "2",
                                 "--size", "32", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 train + 2 val scenes of 32x32 px" in result.output
    assert read_dataset(out, require_masks=True).stems("val") == ["val_00000", "val_00001"]
    again = runner.invoke(app, ["data", "fashion-scenes", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
