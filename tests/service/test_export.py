"""Export: the streamed zip and `s4al export` write the dataset layout (DESIGN §3) with masks assembled
from all annotations, 255 where unlabeled; an export imports back."""

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from typer.testing import CliRunner

from cli.app import app as cli
from service.annotations import submit_annotation
from service.export import zip_stream
from service.importer import import_dataset
from service.labels import assemble_labels
from service.models import Image
from service.queue import lease_next
from service.settings import get_settings
from service.storage import storage_for
from tests.service.queue_helpers import CLASSES, bearer, mask_bytes, seed_queue, token_row


def labeled_project(session, settings):
    """Two images; the first gets two annotated regions, the second none. Returns (seeded, expected)."""
    seeded = seed_queue(session, settings, regions=2, images=2, size=16, grid=(48, 32), name="city")
    val = session.get(Image, seeded.image_ids[1])
    val.split = "val"
    session.commit()
    _, tok = token_row(session, "a")
    expected = np.full((32, 48), 255, np.uint8)
    for value in (1, 2):
        region = lease_next(session, settings, seeded.project_id, tok)
        arr = np.full((16, 16), value, np.uint8)
        arr[:, :4] = 255  # left unlabeled by the annotator
        submit_annotation(session, settings, region.lease_id, tok, mask_bytes(arr))
        view = expected[region.y:region.y + 16, region.x:region.x + 16]
        view[arr != 255] = value
    return seeded, expected


def read_png(data: bytes) -> np.ndarray:
    return np.array(PILImage.open(io.BytesIO(data)))


def check_layout(files: dict[str, bytes], settings, session, seeded, expected) -> None:
    assert json.loads(files["classes.json"]) == CLASSES
    img0, img1 = (session.get(Image, i) for i in seeded.image_ids)
    storage = storage_for(settings)
    assert files["images/img0.png"] == storage.read_bytes(img0.path)
    assert files["images/img1.png"] == storage.read_bytes(img1.path)
    assert np.array_equal(read_png(files["masks/img0.png"]), expected)
    assert "masks/img1.png" not in files  # no annotation on it
    assert files["splits/train.txt"] == b"img0\n" and files["splits/val.txt"] == b"img1\n"
    assert set(files) == {"classes.json", "images/img0.png", "images/img1.png", "masks/img0.png",
                          "splits/train.txt", "splits/val.txt"}


def test_export_zip(client, session, settings, admin):
    seeded, expected = labeled_project(session, settings)
    r = client.get(f"/api/projects/{seeded.project_id}/export", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="city.zip"'
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        files = {name: zf.read(name) for name in zf.namelist()}
    check_layout(files, settings, session, seeded, expected)


def test_export_needs_admin_and_a_project(client, session, settings, admin):
    seeded = seed_queue(session, settings, regions=1)
    annotator, _ = token_row(session, "ann")
    url = f"/api/projects/{seeded.project_id}/export"
    assert client.get(url, headers=bearer(annotator)).status_code == 403
    assert client.get("/api/projects/999/export", headers=admin).status_code == 404


def test_zip_is_produced_piece_by_piece():
    entries = ((f"images/{i}.png", bytes([i]) * 1000) for i in range(5))
    chunks = list(zip_stream(entries))
    assert len([c for c in chunks if c]) >= 5  # one piece per file at least, then the directory
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
        assert [zf.read(f"images/{i}.png") for i in range(5)] == [bytes([i]) * 1000 for i in range(5)]


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("S4AL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("S4AL_DATABASE_URL", settings.sqlalchemy_url)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_export_writes_the_folder(cli_env, session, settings, tmp_path):
    seeded, expected = labeled_project(session, settings)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["export", "city", str(out)])
    assert r.exit_code == 0, r.output
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    check_layout(files, settings, session, seeded, expected)
    again = CliRunner().invoke(cli, ["export", str(seeded.project_id), str(out)])
    assert again.exit_code == 1 and "not empty" in again.output
    missing = CliRunner().invoke(cli, ["export", "nope", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no project" in missing.output

    # The export is a dataset folder: it imports back, its masks as initial labels.
    summary = import_dataset(session, settings, out, "city-again", "initial")
    assert (summary["images"], summary["train"], summary["val"], summary["initial_masks"]) == (2, 1, 1, 1)
    pid = summary["project_id"]
    back = session.scalar(select(Image).where(Image.project_id == pid, Image.stem == "img0"))
    assert np.array_equal(assemble_labels(session, storage_for(settings), back), expected)
