"""A cycle's model and predictions through the API, with the worker's side run in-process (no Celery):
the model download and the filled export ask a worker first (202), then serve its files. On SQLite and
PostgreSQL, on the tiny project (32x32 images with oracle ground truth)."""

import io
import json
import sqlite3
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlalchemy import select

from service.cycles import broker_url
from service.labels import assemble_labels
from service.models import Cycle, Image
from service.storage import checkpoint_key, storage_for
from tests.service.factories import png_bytes
from tests.worker.tiny import label_with_oracle, make_project
from worker.engine import checkpoint
from worker.engine.models import build_model
from worker.model_io import export_cycle_model, predict_cycle_images
from worker.predict import ExportedModel


@pytest.fixture
def project(session, settings, tmp_path):
    p = make_project(session, settings, tmp_path)
    label_with_oracle(session, settings, p, fraction_of_images=0.5)
    return p


def _cycle(session, settings, project, number=1, status="succeeded", with_model=True, miou=0.4) -> Cycle:
    key = None
    if with_model:
        torch.manual_seed(number)
        model = build_model("unet_small", 3)
        with torch.no_grad():  # a sharper head than at init: confidences spread over (1/3, 1)
            model.head.weight.mul_(30)
        key = checkpoint_key(project.id, number)
        names = [c["name"] for c in project.classes]
        checkpoint.save(storage_for(settings).path(key),
                        checkpoint.make(model, model, {"model": "unet_small", "crop_size": 32}, names))
    cycle = Cycle(project_id=project.id, number=number, status=status, checkpoint_path=key,
                  metrics={"miou": miou} if status == "succeeded" else None)
    session.add(cycle)
    session.commit()
    return cycle


def _zip(r) -> zipfile.ZipFile:
    assert r.status_code == 200, r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_model_download_asks_a_worker_then_serves_its_onnx(client, admin, annotator, session, settings,
                                                           project, tmp_path):
    cycle = _cycle(session, settings, project)
    url = f"/api/cycles/{cycle.id}/model?format=onnx"
    assert client.get(url, headers=annotator).status_code == 403
    r = client.get(url, headers=admin)
    assert r.status_code == 202 and r.headers["retry-after"] and r.json()["status"] == "exporting"
    export_cycle_model(session, storage_for(settings), cycle.id, "onnx")  # what the worker's task does
    zf = _zip(client.get(url, headers=admin))
    assert sorted(zf.namelist()) == ["tiny-cycle1.onnx", "tiny-cycle1.onnx.json"]
    zf.extractall(tmp_path / "dl")
    model = ExportedModel(tmp_path / "dl/tiny-cycle1.onnx")
    assert model.meta["classes"] == project.classes and model.meta["metrics"] == {"miou": 0.4}
    assert model.meta["cycle"]["best_of_project_at_export"] is True


def test_model_download_bad_input(client, admin, session, settings, project):
    failed = _cycle(session, settings, project, 1, status="failed", with_model=False)
    cold = _cycle(session, settings, project, 2, with_model=False)
    ok = _cycle(session, settings, project, 3)
    assert client.get(f"/api/cycles/{ok.id}/model?format=tflite", headers=admin).status_code == 422
    r = client.get(f"/api/cycles/{failed.id}/model?format=onnx", headers=admin)
    assert r.status_code == 409 and "failed" in r.json()["detail"]
    r = client.get(f"/api/cycles/{cold.id}/model?format=torchscript", headers=admin)
    assert r.status_code == 409 and "cold start" in r.json()["detail"]
    assert client.get("/api/cycles/999999/model", headers=admin).status_code == 404


def test_best_cycle_is_the_highest_val_miou(client, admin, session, settings, project):
    _cycle(session, settings, project, 1, miou=0.3)
    best = _cycle(session, settings, project, 2, miou=0.5)
    _cycle(session, settings, project, 3, miou=0.45)
    r = client.get(f"/api/projects/{project.id}/metrics", headers=admin)
    assert r.json()["best_cycle_id"] == best.id


def test_filled_export_keeps_human_pixels_and_says_where_each_came_from(client, admin, session, settings,
                                                                       project):
    cycle = _cycle(session, settings, project)
    url = f"/api/projects/{project.id}/export?fill=model&min_confidence=0.5"
    r = client.get(url, headers=admin)
    assert r.status_code == 202 and r.json()["missing"] == 6
    done = predict_cycle_images(session, storage_for(settings), cycle.id, None)
    assert done["predicted"] == 6 and done["failed"] == []
    zf = _zip(client.get(url, headers=admin))
    storage = storage_for(settings)
    images = session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.id)).all()
    totals = {"human": 0, "model": 0, "unlabeled": 0}
    for image in images:
        mask = np.array(PILImage.open(io.BytesIO(zf.read(f"masks/{image.stem}.png"))))
        sources = np.array(PILImage.open(io.BytesIO(zf.read(f"sources/{image.stem}.png"))))
        human = assemble_labels(session, storage, image)
        assert (mask[human != 255] == human[human != 255]).all()  # human labels untouched
        assert ((sources == 1) == (human != 255)).all()
        assert ((sources == 0) == (mask == 255)).all() and (mask[sources == 2] < 3).all()
        for value, name in [(0, "unlabeled"), (1, "human"), (2, "model")]:
            totals[name] += int((sources == value).sum())
    report = json.loads(zf.read("report.json"))
    assert report["pixels"] == {**totals, "total": 6 * 32 * 32} and report["cycle"]["id"] == cycle.id
    assert totals["human"] > 0 and totals["model"] > 0
    assert sum(report["shares"].values()) == pytest.approx(1.0, abs=1e-5)
    # A stricter threshold fills fewer pixels; 1.0 keeps only certain ones.
    strict = json.loads(_zip(client.get(url.replace("0.5", "0.99"), headers=admin)).read("report.json"))
    assert strict["pixels"]["model"] < totals["model"]
    assert strict["pixels"]["human"] == totals["human"]


def test_filled_export_bad_input(client, admin, session, settings, project):
    base = f"/api/projects/{project.id}/export"
    r = client.get(f"{base}?fill=model", headers=admin)
    assert r.status_code == 409 and "no cycle with a model" in r.json()["detail"]
    failed = _cycle(session, settings, project, 1, status="failed", with_model=False)
    assert client.get(f"{base}?fill=model&cycle_id={failed.id}", headers=admin).status_code == 409
    for bad in ("0", "-0.1", "1.01"):
        assert client.get(f"{base}?fill=model&min_confidence={bad}", headers=admin).status_code == 422
    assert client.get(f"{base}?fill=everything", headers=admin).status_code == 422
    assert client.get(f"{base}?fill=model&cycle_id=999999", headers=admin).status_code == 404


def _broker_tasks(settings) -> list[tuple[str, str]]:
    path = broker_url(settings).removeprefix("sqla+sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT payload FROM kombu_message WHERE visible = 1 ORDER BY id").fetchall()
    return [(json.loads(p)["headers"]["task"], json.loads(p)["headers"]["argsrepr"]) for (p,) in rows]


def test_images_uploaded_after_a_cycle_get_its_prediction(client, admin, annotator, session, settings,
                                                          project):
    def upload(stem: str) -> dict:
        r = client.post(f"/api/projects/{project.id}/images", headers=admin,
                        files=[("files", (f"{stem}.png", png_bytes(32, 32, seed=len(stem)), "image/png"))])
        assert r.status_code == 201, r.text
        return r.json()

    assert upload("before")["prelabel_cycle_id"] is None  # no model yet: nothing to ask
    cycle = _cycle(session, settings, project)
    body = upload("after")
    image_id = body["results"][0]["image"]["id"]
    assert body["prelabel_cycle_id"] == cycle.id
    assert ("worker.tasks.predict_images", f"[{cycle.id}, [{image_id}]]") in _broker_tasks(settings)
    url = f"/api/images/{image_id}/prediction"
    assert client.get(url, headers=annotator).status_code == 404
    predict_cycle_images(session, storage_for(settings), cycle.id, [image_id])  # the task's work
    r = client.get(url, headers=annotator)
    assert r.status_code == 200 and r.headers["x-model-version"] == "cycle-1"
    assert r.headers["x-cycle-id"] == str(cycle.id)
    pred = np.array(PILImage.open(io.BytesIO(r.content)))
    assert pred.shape == (32, 32) and pred.max() < 3


def test_the_tasks_find_work_already_done(session, settings, project):
    """A request repeated while the first was queued sends the task twice; the second does nothing."""
    cycle = _cycle(session, settings, project)
    storage = storage_for(settings)
    first = export_cycle_model(session, storage, cycle.id, "torchscript", reuse=True)
    stamp = first.stat().st_mtime_ns
    assert export_cycle_model(session, storage, cycle.id, "torchscript", reuse=True) == first
    assert first.stat().st_mtime_ns == stamp
    assert predict_cycle_images(session, storage, cycle.id, None, only_missing=True)["predicted"] == 6
    assert predict_cycle_images(session, storage, cycle.id, None, only_missing=True)["predicted"] == 0
