"""`s4al predict`: a folder with images of two sizes and one corrupt file, through the command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from cli.app import app
from worker.engine import checkpoint
from worker.engine.models import build_model
from worker.export_model import export_checkpoint, sidecar_path
from worker.predict import ExportedModel, predict_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("unet_small", 3)
    ckpt = checkpoint.make(model, model, {"model": "unet_small", "crop_size": 64}, ["a", "b", "c"])
    return export_checkpoint(ckpt, "torchscript", tmp_path_factory.mktemp("m") / "m.torchscript.pt")


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(32, 32), (32, 32), (40, 24), (32, 32)]):
        PILImage.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (d / "notes.txt").write_text("not an image, not listed")
    return d


def test_predict_folder_writes_one_mask_per_image_and_lists_the_corrupt_one(model_file, folder, tmp_path):
    model = ExportedModel(model_file)
    seen = []
    report = predict_folder(model, folder, tmp_path / "out", confidence=True, batch_size=2,
                            progress=seen.append)
    assert report.predicted == 4 and [name for name, _ in report.failed] == ["broken.png"]
    assert sorted(p.name for p in (tmp_path / "out/masks").iterdir()) == [f"im{i}.png" for i in range(4)]
    mask = np.array(PILImage.open(tmp_path / "out/masks/im2.png"))
    conf = np.array(PILImage.open(tmp_path / "out/confidence/im2.png"))
    assert mask.shape == conf.shape == (40, 24) and mask.dtype == conf.dtype == np.uint8
    assert mask.max() < 3 and conf.min() >= 255 // 3
    single, _ = model.predict(np.array(PILImage.open(folder / "im2.png"))[None])
    assert (single[0] == mask).all()  # batched or alone, the same answer
    assert seen[-1] == 5 and seen == sorted(seen)


def test_predict_command_exits_1_after_the_rest_when_a_file_is_corrupt(model_file, folder, tmp_path):
    r = runner.invoke(app, ["predict", str(model_file), str(folder), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1, r.output
    assert "predicted 4 images" in r.stdout and "broken.png" in r.stderr
    assert len(list((tmp_path / "o/masks").iterdir())) == 4 and not (tmp_path / "o/confidence").exists()


def test_predict_command_refuses_a_model_without_its_sidecar_before_predicting(model_file, folder, tmp_path):
    lone = tmp_path / "lone.torchscript.pt"
    lone.write_bytes(model_file.read_bytes())
    r = runner.invoke(app, ["predict", str(lone), str(folder), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "sidecar" in r.stderr and not (tmp_path / "o").exists()
    assert json.loads(sidecar_path(model_file).read_text())["num_classes"] == 3
