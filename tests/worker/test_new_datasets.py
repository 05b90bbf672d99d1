"""The aerial-maps and long-tail generators: layout, exact labels, determinism, their character."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from worker.data import aerial_maps, long_tail
from worker.datasets import read_dataset


@pytest.mark.parametrize("module, size", [(aerial_maps, 64), (long_tail, 32)])
def test_generator_writes_a_valid_deterministic_dataset(tmp_path, module, size):
    one = module.generate(tmp_path / "a", n_train=6, n_val=2, size=size, seed=3)
    module.generate(tmp_path / "b", n_train=6, n_val=2, size=size, seed=3)
    module.generate(tmp_path / "c", n_train=6, n_val=2, size=size, seed=4)
    ds = read_dataset(tmp_path / "a", require_masks=True)
    assert ds.num_classes == len(module.CLASSES) and len(ds.stems("train")) == 6 and len(ds.stems("val")) == 2
    assert ds.load_image("train_00000").shape == (size, size, 3)
    for sub in ("images", "masks"):
        same = [(tmp_path / "a" / sub / f).read_bytes() == (tmp_path / "b" / sub / f).read_bytes()
                for f in sorted(p.name for p in (tmp_path / "a" / sub).iterdir())]
        assert all(same)
    assert (tmp_path / "a" / "masks" / "train_00000.png").read_bytes() != \
        (tmp_path / "c" / "masks" / "train_00000.png").read_bytes()
    assert abs(sum(one["class_pixel_share"].values()) - 1) < 1e-3


def test_aerial_maps_labels_follow_the_paint():
    rng = np.random.default_rng(0)
    image, label = aerial_maps.make_map(rng, 96)
    # every class is painted around its own colour: the mean colour of each class's pixels is nearest to it
    for c in aerial_maps._PAINT:
        if (label == c).sum() > 20:
            means = {k: np.abs(image[label == c].mean(0) / 255 - np.asarray(col) * 1.0).sum()
                     for k, (col, _) in aerial_maps._PAINT.items()}
            assert min(means, key=means.get) == c


def test_aerial_maps_have_large_smooth_regions_and_thin_roads(tmp_path):
    summary = aerial_maps.generate(tmp_path / "m", n_train=12, n_val=0, size=128, seed=0)
    shares = summary["class_pixel_share"]
    assert shares["field"] > 0.2 and shares["forest"] > 0.1 and 0 < shares["road"] < 0.1
    from scipy import ndimage

    road = np.array(Image.open(tmp_path / "m" / "masks" / "train_00000.png")) == 3
    assert road.any()
    # thin: opening with a 5x5 square removes the roads
    assert not ndimage.binary_opening(road, np.ones((5, 5))).any()


def test_long_tail_class_frequencies_fall_by_more_than_ten(tmp_path):
    summary = long_tail.generate(tmp_path / "t", n_train=150, n_val=0, size=48, seed=0)
    shares = [summary["class_pixel_share"][c["name"]] for c in long_tail.CLASSES[1:]]
    assert all(s > 0 for s in shares)
    assert shares[0] > 10 * shares[-1] and shares == sorted(shares, reverse=True)


def test_long_tail_shapes_are_distinct():
    yy, xx = np.mgrid[-10:11, -10:11].astype(np.float64)
    masks = [long_tail.shape_mask(k, yy, xx, 8.0, 0.0) for k in range(1, 7)]
    assert all(m.sum() > 10 for m in masks)
    assert len({m.tobytes() for m in masks}) == 6
    assert not masks[3][10, 10] and masks[0][10, 10]  # a ring has a hole, a disc does not


@pytest.mark.parametrize("command", ["aerial-maps", "long-tail"])
def test_data_commands_write_and_refuse_bad_input(tmp_path, command):
    out = tmp_path / "d"
    args = ["data", command, str(out), "--n-train", "2", "--n-val", "1", "--size", "32"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "pixel share per class" in res.output and len(list((out / "images").iterdir())) == 3
    again = CliRunner().invoke(app, ["data", command, str(out), "--n-train", "2"])
    assert again.exit_code == 2 and "not empty" in again.output
    small = CliRunner().invoke(app, ["data", command, str(tmp_path / "e"), "--size", "8"])
    assert small.exit_code == 2 and "size must be at least" in small.output
