import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from tests.worker.engine._tiny import NAMES, scenes
from worker.simulate import SimulateConfig, simulate

FAST = ["--model", "unet_small", "--iterations", "3", "--batch-size", "2", "--unlabeled-batch-size", "2",
        "--region-size", "8",
        "--initial", "0.05", "--budget", "0.05", "--device", "cpu"]


def make_folder(root, n_train: int = 8, n_val: int = 3):
    images, truth = scenes(n_train + n_val, size=32, seed=1)
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(
        [{"id": i, "name": n, "color": f"#0000{i:02x}"} for i, n in enumerate(NAMES)]))
    stems = [f"s{i:02d}" for i in range(n_train + n_val)]
    for stem, im, lab in zip(stems, images, truth, strict=True):
        Image.fromarray(im).save(root / "images" / f"{stem}.png")
        Image.fromarray(lab).save(root / "masks" / f"{stem}.png")
    (root / "splits" / "val.txt").write_text("\n".join(stems[n_train:]) + "\n")
    return root


def test_simulate_two_cycles_all_arms_through_the_cli(tmp_path):
    folder = make_folder(tmp_path / "ds")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["simulate", str(folder), "--out", str(out), "--cycles", "2", *FAST])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert (out / "curve.png").stat().st_size > 1000
    assert set(result["arms"]) == {"s4al", "random", "supervised"} and result["dataset"] == str(folder)
    for rows in result["arms"].values():
        assert [r["cycle"] for r in rows] == [1, 2]
        first, second = rows[0]["labeled_fraction"], rows[1]["labeled_fraction"]
        assert first == pytest.approx(0.05, abs=64 / (8 * 1024))  # within one 8x8 cell
        assert second - first == pytest.approx(0.05, abs=64 / (8 * 1024))
        assert all(0 <= r["miou"] <= 1 and len(r["per_class_iou"]) == 3 and r["seconds"] > 0 for r in rows)
    # Every arm starts from the same initial labels.
    assert len({rows[0]["labeled_fraction"] for rows in result["arms"].values()}) == 1
    full = result["full"]
    assert [r["iterations"] for r in full["runs"]] == [3, 6] and full["labeled_fraction"] == 1.0
    assert full["miou"] == full["runs"][1]["miou"] and len(full["per_class_iou"]) == 3
    assert "s4al" in res.output and "full supervision" in res.output


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "--budget must be in (0, 1]"),
    (["--initial", "1.5"], "--initial must be in (0, 1]"),
    (["--mix", "mixup"], "unknown mix mode 'mixup'"),
    (["--acquisition", "bald"], "unknown acquisition metric 'bald'"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--compare", "random,oracle"], "unknown arm(s) in --compare: oracle"),
    (["--crop-size", "64", "--base-size", "32"], "crop_size 64 is larger than base_size 32"),
    (["--crop-size", "0"], "crop_size must be a positive integer"),
])
def test_bad_arguments_fail_before_training(tmp_path, args, message):
    folder = make_folder(tmp_path / "ds", n_train=2, n_val=1)
    res = CliRunner().invoke(app, ["simulate", str(folder), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "o").exists()


def test_a_broken_dataset_is_named_before_training(tmp_path):
    folder = make_folder(tmp_path / "ds", n_train=3, n_val=1)
    bad = np.array(Image.open(folder / "masks" / "s01.png"))
    bad[0, 0] = 9
    Image.fromarray(bad).save(folder / "masks" / "s01.png")
    res = CliRunner().invoke(app, ["simulate", str(folder), "--out", str(tmp_path / "o"), *FAST])
    assert res.exit_code == 2 and "s01.png" in res.output
    assert not (tmp_path / "o" / "result.json").exists()


def test_simulate_without_val_split_holds_out_images(tmp_path):
    folder = make_folder(tmp_path / "ds", n_train=9, n_val=0)
    (folder / "splits" / "val.txt").unlink()
    cfg = SimulateConfig(dataset=str(folder), out=str(tmp_path / "o"), model="unet_small", cycles=1,
                         iterations=2, batch_size=2,
                         unlabeled_batch_size=2, region_size=16, initial=0.1, budget=0.1, compare=[],
                         device="cpu")
    lines = []
    result = simulate(cfg, report=lines.append)
    assert list(result["arms"]) == ["s4al"] and result["full"] is None
    assert "8 train, 1 val images" in lines[0]


def test_arms_in_parallel_processes_give_the_same_result_as_in_sequence(tmp_path):
    folder = make_folder(tmp_path / "ds", n_train=4, n_val=2)
    common = dict(dataset=str(folder), model="unet_small", cycles=1, iterations=2, batch_size=2,
                  unlabeled_batch_size=2,
                  region_size=16, initial=0.1, budget=0.1, compare=["random", "full"], device="cpu")
    one = simulate(SimulateConfig(out=str(tmp_path / "one"), **common), report=lambda _: None)
    two = simulate(SimulateConfig(out=str(tmp_path / "two"), jobs=2, **common), report=lambda _: None)
    assert list(two["arms"]) == ["s4al", "random"]
    for arm in ("s4al", "random"):
        assert two["arms"][arm][0]["miou"] == one["arms"][arm][0]["miou"]  # deterministic on CPU
    assert two["full"]["miou"] == one["full"]["miou"]
    assert json.loads((tmp_path / "two" / "result.json").read_text())["full"]["runs"][1]["iterations"] == 4
