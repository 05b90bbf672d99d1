"""Hostile input: every case is refused with a 4xx that names the problem, on SQLite and PostgreSQL.

No 5xx, nothing read outside the import root, no file's contents echoed, no error body that fails to
serialise (NaN, Infinity, lone surrogates) or echoes more than a short excerpt.
"""

import json
import os
from pathlib import Path

import pytest

from tests.service.factories import create_project, make_dataset
from tests.service.queue_helpers import seed_queue

SECRET = "root:x:0:0:this-line-must-never-be-echoed"
BIG = 2**63  # beyond BIGINT, let alone INTEGER
ID_PATHS = ["/api/projects/{}", "/api/projects/{}/images", "/api/images/{}", "/api/images/{}/file",
            "/api/images/{}/tags", "/api/regions/{}", "/api/regions/{}/crop", "/api/regions/{}/prelabel",
            "/api/cycles/{}", "/api/projects/{}/cycles", "/api/projects/{}/metrics",
            "/api/projects/{}/queue/stats", "/api/projects/{}/tagging/next"]


def _refused(r, status: int | tuple = (400, 404, 408, 413, 422)) -> dict:
    codes = (status,) if isinstance(status, int) else status
    assert r.status_code in codes, (r.status_code, r.text[:500])
    assert r.headers["x-content-type-options"] == "nosniff"
    return r.json()


@pytest.fixture
def outside(tmp_path_factory) -> Path:
    """A folder outside the import root, holding what an attacker would like to read."""
    d = tmp_path_factory.mktemp("outside")
    (d / "passwd").write_text(SECRET + "\n")
    (d / "images").mkdir()
    (d / "images" / "secret-name.png").write_bytes(b"x")
    return d


@pytest.fixture
def project_id(client, admin) -> int:
    return create_project(client, admin, name="target")["id"]


def _import(client, admin, project_id, path, masks="none"):
    return client.post(f"/api/projects/{project_id}/import", json={"path": path, "masks": masks},
                       headers=admin)


@pytest.mark.parametrize("link", ["splits/val.txt", "splits/train.txt", "classes.json"])
def test_import_never_reads_a_linked_file_outside_the_folder(client, admin, settings, outside, project_id,
                                                            link):
    ds = make_dataset(settings.import_root / "ds")
    (ds / link).unlink()
    (ds / link).symlink_to(outside / "passwd")
    body = _refused(_import(client, admin, project_id, "ds"), 422)
    assert f"{link}: a link that leads outside the dataset folder" in body["detail"]["errors"]
    assert "root:x" not in json.dumps(body) and "never-be-echoed" not in json.dumps(body)


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_import_never_lists_a_linked_folder_outside(client, admin, settings, outside, project_id, folder):
    ds = make_dataset(settings.import_root / "ds")
    os.rename(ds / folder, settings.import_root / f"{folder}-moved")
    (ds / folder).symlink_to(outside / "images")
    body = _refused(_import(client, admin, project_id, "ds", masks="oracle"), 422)
    assert f"{folder}/: a link that leads outside the dataset folder" in body["detail"]["errors"]
    assert "secret-name" not in json.dumps(body)


def test_import_of_a_fifo_or_a_loop_inside_the_folder_is_named_not_followed(client, admin, settings,
                                                                           project_id):
    ds = make_dataset(settings.import_root / "ds")
    (ds / "splits" / "val.txt").unlink()
    os.mkfifo(ds / "splits" / "val.txt")  # reading it would block forever
    (ds / "classes.json").unlink()
    (ds / "classes.json").symlink_to(ds / "classes.json")
    errors = _refused(_import(client, admin, project_id, "ds"), 422)["detail"]["errors"]
    assert "splits/val.txt: not a regular file" in errors
    assert not any("classes.json" in e for e in errors)  # the project's classes are used: not read


@pytest.mark.parametrize("path, words", [
    ("loop", "a symlink loop"),
    ("loop/inner", "a symlink loop"),
    ("x" * 300, "has a name longer than 255 bytes"),
    ("x" * 5000, "is longer than 4096 bytes"),
    ("a/" * 2100, "longer than 4096 bytes"),
    ("ds\u0000.png", "control character U+0000"),
    ("\ud800", "lone surrogate"),
    ("../..", "outside the import root"),
    ("/etc", "outside the import root"),
])
def test_import_paths_that_cannot_name_a_folder_are_a_4xx_naming_why(client, admin, settings, project_id,
                                                                      path, words):
    (settings.import_root / "loop").symlink_to(settings.import_root / "loop")
    # json.dumps escapes the surrogate, as a client would
    r = client.post(f"/api/projects/{project_id}/import", content=json.dumps({"path": path}),
                    headers={**admin, "Content-Type": "application/json"})
    body = _refused(r, (403, 422))
    assert words in json.dumps(body, ensure_ascii=False), body
    assert len(r.content) < 2000


@pytest.mark.parametrize("value", [BIG, 2**31, 0, -1])
@pytest.mark.parametrize("template", ID_PATHS)
def test_ids_beyond_the_column_type_are_422_for_an_annotator(client, annotator, template, value):
    _refused(client.get(template.format(value), headers=annotator), 422)


@pytest.mark.parametrize("method, url, admin_only", [
    ("GET", f"/api/projects/1/images?offset={BIG}", False),
    ("GET", "/api/projects/1/images?offset=-1", False),
    ("GET", f"/api/projects/1/tagging/next?exclude={BIG}", False),
    ("GET", "/api/projects/1/tagging/next?exclude=1&exclude=-5", False),
    ("POST", f"/api/projects/{BIG}/queue/lease", False),
    ("DELETE", f"/api/tokens/{BIG}", True),
    ("POST", f"/api/cycles/{BIG}/cancel", True),
    ("GET", f"/api/projects/{BIG}/export", True),
])
def test_offsets_and_query_ids_are_bounded(client, admin, annotator, method, url, admin_only):
    _refused(client.request(method, url, headers=admin if admin_only else annotator), 422)


@pytest.mark.parametrize("method, url, raw", [
    ("PUT", "/api/images/1/tags", '{"class_ids": [NaN]}'),
    ("PUT", "/api/images/1/tags", '{"class_ids": [Infinity, -Infinity]}'),
    ("PUT", "/api/images/1/tags", '{"class_ids": [1e400]}'),
    ("PUT", "/api/images/1/tags", '{"class_ids": ["\\ud800"]}'),
    ("POST", "/api/projects", '{"name": "p", "classes": [{"id": 0, "name": "a", "color": "#000000"}], '
                              '"training": {"lr": Infinity}}'),
    ("POST", "/api/projects", '{"name": "p", "classes": [{"id": 0, "name": "a", "color": "#000000"}], '
                              '"training": {"momentum": NaN}}'),
    ("POST", "/api/projects", '{"name": "\\ud800\\udfff\\ud800", "classes": []}'),
    ("POST", "/api/projects/1/oracle", '{"limit": 9223372036854775808}'),
    ("POST", "/api/tokens", '{"name": "\\ud83d"}'),
    ("POST", "/api/leases/abc/skip", '{"reason": NaN}'),
])
def test_validation_errors_always_serialise(client, admin, method, url, raw):
    r = client.request(method, url, content=raw, headers={**admin, "Content-Type": "application/json"})
    body = _refused(r, 422)
    assert body["detail"] and all("msg" in e for e in body["detail"])


def test_a_non_finite_training_value_in_a_patch_is_422(client, admin, project_id):
    r = client.patch(f"/api/projects/{project_id}", content='{"training": {"lr": Infinity}}',
                     headers={**admin, "Content-Type": "application/json"})
    _refused(r, 422)
    assert client.get(f"/api/projects/{project_id}", headers=admin).json()["training"]["lr"] is None


@pytest.mark.parametrize("method, url, body", [
    ("POST", "/api/tokens", {"name": "nul\u0000name"}),
    ("POST", "/api/tokens", {"name": "escape\u001b[31m"}),
    ("POST", "/api/projects", {"name": "nul\u0000", "classes": [{"id": 0, "name": "a", "color": "#000000"}]}),
    ("POST", "/api/projects", {"name": "p", "classes": [{"id": 0, "name": "a\u0000", "color": "#000000"}]}),
    ("PATCH", "/api/projects/1", {"name": "bell\u0007"}),
    ("PATCH", "/api/projects/1", {"training": {"model\u0000": "x"}}),
    ("POST", "/api/leases/abc/skip", {"reason": "because\u0000"}),
    ("POST", "/api/projects/1/queue/lease", {"holding": ["a\u0000b"]}),
])
def test_control_characters_in_strings_are_422_on_both_databases(client, admin, project_id, method, url,
                                                                 body):
    detail = json.dumps(_refused(client.request(method, url, json=body, headers=admin), 422))
    assert "control character" in detail or "pattern" in detail or "string_pattern" in detail


@pytest.mark.parametrize("url, headers", [
    ("/api/leases/%00/renew", {}),
    ("/api/leases/" + "a" * 65 + "/release", {}),
    ("/api/leases/abc%0A/skip", {}),
])
def test_malformed_lease_ids_are_422(client, annotator, url, headers):
    _refused(client.post(url, headers={**annotator, **headers}, json={"reason": "x"}), 422)


def test_an_over_long_idempotency_key_is_422(client, session, settings, annotator):
    seed_queue(session, settings, regions=1)
    r = client.post("/api/leases/abc/annotation", files={"mask": ("m.png", b"x", "image/png")},
                    headers={**annotator, "Idempotency-Key": "k" * 201})
    _refused(r, 422)


@pytest.mark.parametrize("url", ["/web/index.html%00.js", "/web/%00", "/web/" + "a" * 5000,
                                 "/web/../../../etc/passwd", "/web/..%2F..%2Fpyproject.toml"])
def test_web_paths_with_nul_bytes_or_escapes_are_404_without_a_token(client, url):
    r = client.get(url)
    assert r.status_code == 404 and r.headers["x-content-type-options"] == "nosniff"


def test_a_validation_error_echoes_only_a_short_excerpt(client, admin):
    name = "n" * 300_000
    r = client.post("/api/projects", json={"name": name, "classes": []}, headers=admin)
    body = _refused(r, 422)
    assert len(r.content) < 4000, len(r.content)
    assert all(len(e.get("input", "")) <= 81 for e in body["detail"])
