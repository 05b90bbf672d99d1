"""Exported models: TorchScript and ONNX round trips on a tiny U-Net, the sidecar, and files that are not
ours. The argmax of the file (onnxruntime for ONNX) must match the torch model's on >= 99.9% of pixels,
at sizes that are and are not multiples of the model's stride."""

import json

import numpy as np
import pytest
import torch

from worker.engine import checkpoint
from worker.engine.models import build_model
from worker.export_model import export_checkpoint, sidecar_path
from worker.predict import ExportedModel, NotOurModel

NAMES = ["background", "square", "disc"]
CLASSES = [{"id": 0, "name": "background", "color": "#000000"},
           {"id": 1, "name": "square", "color": "#ff0000"}, {"id": 2, "name": "disc", "color": "#00ff00"}]


@pytest.fixture(scope="module")
def ckpt():
    torch.manual_seed(0)
    model = build_model("unet_small", 3)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode differs from identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return checkpoint.make(model, model, {"model": "unet_small", "crop_size": 64}, NAMES)


def _images(h: int, w: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _torch_argmax(ckpt, images: np.ndarray) -> np.ndarray:
    model = checkpoint.load_model(ckpt)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return model(x).argmax(1).numpy()


@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".torchscript.pt"), ("onnx", ".onnx")])
def test_round_trip_gives_the_torch_argmax(ckpt, tmp_path, fmt, suffix):
    out = export_checkpoint(ckpt, fmt, tmp_path / f"m{suffix}", classes=CLASSES, metrics={"miou": 0.5},
                            cycle={"id": 7, "number": 2})
    if fmt == "onnx":
        import onnx

        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    model = ExportedModel(out)
    for h, w in [(32, 32), (40, 52), (64, 96)]:  # 40x52 is not a multiple of the stride (32)
        images = _images(h, w)
        classes, conf = model.predict(images)
        agree = (classes == _torch_argmax(ckpt, images)).mean()
        assert agree >= 0.999, f"{fmt} {h}x{w}: {agree:.5f} of pixels agree"
        assert classes.shape == (2, h, w) and conf.shape == (2, h, w)
        assert ((conf > 1 / 3 - 1e-6) & (conf <= 1 + 1e-6)).all()


def test_sidecar_says_what_a_user_needs(ckpt, tmp_path):
    out = export_checkpoint(ckpt, "torchscript", tmp_path / "m.torchscript.pt", classes=CLASSES,
                            metrics={"miou": 0.5}, cycle={"id": 7, "number": 2})
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["classes"] == CLASSES and meta["num_classes"] == 3 and meta["format"] == "torchscript"
    assert meta["input"]["normalisation"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["resolution"]["trained_crop_size"] == 64
    assert meta["metrics"] == {"miou": 0.5} and meta["cycle"] == {"id": 7, "number": 2}


def test_classes_that_are_not_the_checkpoints_are_refused(ckpt, tmp_path):
    with pytest.raises(ValueError, match="not the checkpoint's"):
        export_checkpoint(ckpt, "onnx", tmp_path / "m.onnx", classes=CLASSES[:2])
    with pytest.raises(ValueError, match="unknown format"):
        export_checkpoint(ckpt, "tflite", tmp_path / "m.tflite")


def test_files_that_are_not_ours_fail_before_any_prediction(ckpt, tmp_path):
    out = export_checkpoint(ckpt, "torchscript", tmp_path / "m.torchscript.pt", classes=CLASSES)
    side = sidecar_path(out)
    good = json.loads(side.read_text())

    side.unlink()
    with pytest.raises(NotOurModel, match="sidecar .* is missing"):
        ExportedModel(out)
    side.write_text("{not json")
    with pytest.raises(NotOurModel, match="not valid JSON"):
        ExportedModel(out)
    side.write_text(json.dumps({**good, "kind": "something-else"}))
    with pytest.raises(NotOurModel, match="not an s4al model sidecar"):
        ExportedModel(out)
    four = CLASSES + [{"id": 3, "name": "extra", "color": "#ffffff"}]
    side.write_text(json.dumps({**good, "classes": four, "num_classes": 4}))
    with pytest.raises(NotOurModel, match="outputs 3 classes, its sidecar lists 4"):
        ExportedModel(out)
    garbage = tmp_path / "g.torchscript.pt"
    garbage.write_bytes(b"not a model")
    sidecar_path(garbage).write_text(json.dumps(good))
    with pytest.raises(NotOurModel, match="not a TorchScript file"):
        ExportedModel(garbage)
