"""`s4al model export|best` and `s4al export --fill model`, in-process against the test database (the
tiny project: 32x32 images, oracle ground truth, a random-init checkpoint standing in for a trained one)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from cli.app import app
from service.models import Cycle
from service.storage import checkpoint_key, storage_for
from tests.worker.tiny import label_with_oracle, make_project
from worker.engine import checkpoint
from worker.engine.models import build_model
from worker.predict import ExportedModel

runner = CliRunner()


@pytest.fixture
def project(session, settings, tmp_path):
    p = make_project(session, settings, tmp_path)
    label_with_oracle(session, settings, p, fraction_of_images=0.5)
    return p


def _cycle(session, settings, project, number, miou, with_model=True) -> Cycle:
    key = None
    if with_model:
        torch.manual_seed(number)
        model = build_model("unet_small", 3)
        with torch.no_grad():
            model.head.weight.mul_(30)
        key = checkpoint_key(project.id, number)
        checkpoint.save(storage_for(settings).path(key), checkpoint.make(
            model, model, {"model": "unet_small", "crop_size": 32}, [c["name"] for c in project.classes]))
    cycle = Cycle(project_id=project.id, number=number, status="succeeded", checkpoint_path=key,
                  metrics={"miou": miou})
    session.add(cycle)
    session.commit()
    return cycle


def test_model_export_and_best(cli_env, session, settings, project, tmp_path):
    cold = _cycle(session, settings, project, 1, None, with_model=False)
    best = _cycle(session, settings, project, 2, 0.6)
    _cycle(session, settings, project, 3, 0.5)
    r = runner.invoke(app, ["model", "best", "tiny"])
    assert r.exit_code == 0 and f"(id {best.id})" in r.stdout and "0.600" in r.stdout
    out = tmp_path / "m.onnx"
    r = runner.invoke(app, ["model", "export", str(best.id), "--format", "onnx", "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = ExportedModel(out)
    assert model.meta["cycle"]["best_of_project_at_export"] and model.meta["metrics"] == {"miou": 0.6}
    r = runner.invoke(app, ["model", "export", str(cold.id), "--out", str(tmp_path / "c.onnx")])
    assert r.exit_code == 1 and "cold start" in r.stderr
    r = runner.invoke(app, ["model", "export", str(best.id), "--format", "keras", "--out", str(out)])
    assert r.exit_code == 2


def test_export_fill_model_predicts_then_fills(cli_env, session, settings, project, tmp_path):
    cycle = _cycle(session, settings, project, 1, 0.4)
    out = tmp_path / "out"
    r = runner.invoke(app, ["export", "tiny", str(out), "--fill", "model", "--min-confidence", "0.6"])
    assert r.exit_code == 0, r.output
    assert "predicting 6 images" in r.stdout and f"cycle 1 (id {cycle.id})" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["min_confidence"] == 0.6 and report["pixels"]["total"] == 6 * 32 * 32
    for stem in [f"im{i:02d}" for i in range(6)]:
        mask = np.array(PILImage.open(out / "masks" / f"{stem}.png"))
        sources = np.array(PILImage.open(out / "sources" / f"{stem}.png"))
        assert ((mask == 255) == (sources == 0)).all()
    coco = tmp_path / "coco"
    r = runner.invoke(app, ["export", "tiny", str(coco), "--format", "coco", "--fill", "model",
                            "--min-confidence", "0.6"])
    assert r.exit_code == 0 and "predicting" not in r.stdout  # the predictions are on disk already
    doc = json.loads((coco / "annotations.json").read_text())
    assert len(doc["images"]) == 6 and {a["category_id"] for a in doc["annotations"]} <= {1, 2, 3}
    assert json.loads((coco / "report.json").read_text())["pixels"] == report["pixels"]
    bad = runner.invoke(app, ["export", "tiny", str(tmp_path / "o2"), "--fill", "model", "--min-confidence",
                              "1.5"])
    assert bad.exit_code == 1 and "(0, 1]" in bad.stderr and not (tmp_path / "o2").exists()
