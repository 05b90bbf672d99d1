import pytest
import torch

from worker.engine import checkpoint
from worker.engine.models import build_model


def test_save_load_round_trip_rebuilds_the_same_network(tmp_path):
    student, teacher = build_model("unet_small", 3), build_model("unet_small", 3)
    ckpt = checkpoint.make(student, teacher, {"model": "unet_small", "iterations": 5}, ["a", "b", "c"],
                           metrics={"miou": 0.5})
    path = checkpoint.save(tmp_path / "sub" / "c.pt", ckpt)
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary file left behind
    loaded = checkpoint.load(path)
    assert loaded["class_names"] == ["a", "b", "c"] and loaded["metrics"] == {"miou": 0.5}
    model = checkpoint.load_model(loaded)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), teacher.eval()(x))
        assert torch.allclose(checkpoint.load_model(loaded, "student")(x), student.eval()(x))


def test_checkpoint_weights_are_copies():
    student = build_model("unet_small", 2)
    ckpt = checkpoint.make(student, student, {"model": "unet_small"}, ["a", "b"])
    with torch.no_grad():
        student.head.weight.add_(1.0)
    assert not torch.equal(ckpt["student"]["head.weight"], student.head.weight)


def test_load_refuses_other_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an s4al checkpoint"):
        checkpoint.load(tmp_path / "x.pt")
    with pytest.raises(ValueError):
        checkpoint.load_model({"config": {"model": "unet_small"}, "class_names": ["a", "b"]}, "ema")
