"""Image-level tags: PUT/GET with who and when, validation, the tagging queue order, export."""

import io
import json
import zipfile

from sqlalchemy import func, select

from service.models import ImageTag
from service.tags import store_tag_uncertainty, tags_by_image, tags_by_stem
from tests.service.factories import create_project, png_bytes


def _upload(client, admin, project_id, stems, split="train"):
    files = [("files", (f"{s}.png", png_bytes(seed=i), "image/png")) for i, s in enumerate(stems)]
    r = client.post(f"/api/projects/{project_id}/images", files=files, data={"split": split}, headers=admin)
    assert r.status_code == 201, r.text
    return [item["image"]["id"] for item in r.json()["results"]]


def _project(client, admin, stems=("a", "b", "c"), val=()):
    pid = create_project(client, admin)["id"]
    ids = _upload(client, admin, pid, stems)
    val_ids = _upload(client, admin, pid, val, split="val") if val else []
    return pid, ids, val_ids


def test_put_then_get_with_who_and_when(client, admin, annotator):
    _, (img, *_), _ = _project(client, admin)
    r = client.put(f"/api/images/{img}/tags", json={"class_ids": [2, 1, 2]}, headers=annotator)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["class_ids"] == [1, 2] and body["token_name"] == "test-annotator" and body["image_id"] == img
    got = client.get(f"/api/images/{img}/tags", headers=admin).json()
    assert got["latest"]["class_ids"] == [1, 2] and got["latest"]["created_at"] == body["created_at"]
    assert got["history"] == []


def test_newest_tags_win_and_history_keeps_all(client, admin, annotator):
    _, (img, *_), _ = _project(client, admin)
    client.put(f"/api/images/{img}/tags", json={"class_ids": [1]}, headers=annotator)
    client.put(f"/api/images/{img}/tags", json={"class_ids": []}, headers=admin)
    got = client.get(f"/api/images/{img}/tags", params={"history": True}, headers=annotator).json()
    assert got["latest"]["class_ids"] == [] and got["latest"]["token_name"] == "test-admin"
    assert [h["class_ids"] for h in got["history"]] == [[], [1]]
    assert [h["token_name"] for h in got["history"]] == ["test-admin", "test-annotator"]


def test_untagged_image_has_no_latest(client, admin):
    _, (img, *_), _ = _project(client, admin)
    assert client.get(f"/api/images/{img}/tags", headers=admin).json() == {
        "image_id": img, "latest": None, "history": []}


def test_unknown_class_ids_are_422_and_write_nothing(client, admin, annotator, session):
    _, (img, *_), _ = _project(client, admin)
    r = client.put(f"/api/images/{img}/tags", json={"class_ids": [1, 3, 7]}, headers=annotator)
    assert r.status_code == 422 and "[3, 7]" in r.json()["detail"]
    for bad in ({"class_ids": [-1]}, {"class_ids": ["car"]}, {}, {"class_ids": [1], "extra": 1}):
        assert client.put(f"/api/images/{img}/tags", json=bad, headers=annotator).status_code == 422
    assert session.scalar(select(func.count()).select_from(ImageTag)) == 0


def test_unknown_image_is_404_and_a_token_is_needed(client, admin, annotator):
    assert client.put("/api/images/999/tags", json={"class_ids": [1]}, headers=annotator).status_code == 404
    assert client.get("/api/images/999/tags", headers=annotator).status_code == 404
    _, (img, *_), _ = _project(client, admin)
    assert client.put(f"/api/images/{img}/tags", json={"class_ids": [1]}).status_code == 401
    assert client.get("/api/projects/999/tagging/next", headers=annotator).status_code == 404


def test_next_follows_uncertainty_then_upload_order(client, admin, annotator, session):
    pid, (a, b, c, d), (v,) = _project(client, admin, stems=("a", "b", "c", "d"), val=("v",))
    store_tag_uncertainty(session, {a: 0.2, c: 0.9, v: 1.0})  # v is val: never offered
    session.commit()
    url = f"/api/projects/{pid}/tagging/next"
    first = client.get(url, headers=annotator).json()
    assert first["image"]["id"] == c and first["uncertainty"] == 0.9
    assert (first["tagged"], first["untagged"]) == (0, 4)
    assert client.get(url, params={"exclude": [c]}, headers=annotator).json()["image"]["id"] == a
    client.put(f"/api/images/{c}/tags", json={"class_ids": [1]}, headers=annotator)
    client.put(f"/api/images/{a}/tags", json={"class_ids": [2]}, headers=annotator)
    after = client.get(url, headers=annotator).json()
    assert after["image"]["id"] == b and after["uncertainty"] is None  # unscored: upload order
    assert (after["tagged"], after["untagged"]) == (2, 2)
    assert client.get(url, params={"exclude": [b, d]}, headers=annotator).json()["image"] is None
    for img in (b, d):
        client.put(f"/api/images/{img}/tags", json={"class_ids": []}, headers=annotator)
    done = client.get(url, headers=annotator).json()
    assert done == {"image": None, "uncertainty": None, "tagged": 4, "untagged": 0}


def test_tags_for_the_engine_and_the_export(client, admin, annotator, session):
    pid, (a, b, _), _ = _project(client, admin)
    other, (x, *_), _ = _project_named(client, admin)
    client.put(f"/api/images/{a}/tags", json={"class_ids": [1]}, headers=annotator)
    client.put(f"/api/images/{a}/tags", json={"class_ids": [0, 2]}, headers=annotator)
    client.put(f"/api/images/{b}/tags", json={"class_ids": []}, headers=annotator)
    client.put(f"/api/images/{x}/tags", json={"class_ids": [1]}, headers=annotator)
    assert tags_by_image(session, pid) == {a: [0, 2], b: []}
    assert tags_by_stem(session, pid) == {"a": [0, 2], "b": []}
    r = client.get(f"/api/projects/{pid}/export", headers=admin)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert json.loads(zf.read("tags.json")) == {"a": [0, 2], "b": []}


def test_export_without_tags_has_no_tags_file(client, admin):
    pid, _, _ = _project(client, admin)
    r = client.get(f"/api/projects/{pid}/export", headers=admin)
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert "tags.json" not in zf.namelist()


def _project_named(client, admin):
    pid = create_project(client, admin, name="other")["id"]
    return pid, _upload(client, admin, pid, ("x",)), []
