import pytest
from fastapi.testclient import TestClient

from service.imaging import ImageError, probe, sniff
from service.main import create_app
from service.routes.images import stem_of
from service.storage import Storage, StorageError, image_key
from tests.service.factories import (
    bomb_png,
    counts,
    create_project,
    files_under,
    jpeg_bytes,
    png_bytes,
)


def _upload(client, headers, pid, *files, **data):
    return client.post(f"/api/projects/{pid}/images", headers=headers, data=data,
                       files=[("files", f) for f in files])


def test_upload_png_and_jpeg_then_read_back(client, admin, annotator):
    pid = create_project(client, admin)["id"]
    png, jpg = png_bytes(10, 7), jpeg_bytes(12, 5)
    r = _upload(client, admin, pid, ("a.png", png, "image/png"), ("b.jpg", jpg, "image/jpeg"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] == 2 and body["failed"] == 0
    a, b = (x["image"] for x in body["results"])
    assert (a["stem"], a["width"], a["height"], a["content_type"]) == ("a", 10, 7, "image/png")
    assert (b["stem"], b["width"], b["height"], b["content_type"]) == ("b", 12, 5, "image/jpeg")
    assert client.get(f"/api/images/{a['id']}", headers=annotator).json() == a
    for img, raw in ((a, png), (b, jpg)):
        f = client.get(f"/api/images/{img['id']}/file", headers=annotator)
        assert f.status_code == 200 and f.content == raw
        assert f.headers["content-type"] == img["content_type"]
        assert f.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/api/projects/{pid}", headers=admin).json()["image_count"] == 2


def test_type_comes_from_content_not_name(client, admin):
    pid = create_project(client, admin)["id"]
    r = _upload(client, admin, pid, ("photo.png", jpeg_bytes(), "image/png"))
    assert r.status_code == 201
    img = r.json()["results"][0]["image"]
    assert img["content_type"] == "image/jpeg"
    assert client.get(f"/api/images/{img['id']}/file", headers=admin).headers["content-type"] == "image/jpeg"


def test_one_bad_file_fails_alone_207(client, admin, session, settings):
    pid = create_project(client, admin)["id"]
    r = _upload(client, admin, pid, ("good.png", png_bytes(), "image/png"),
                ("evil.png", b"<html><script>alert(1)</script>", "image/png"),
                ("good2.jpg", jpeg_bytes(), "image/jpeg"))
    assert r.status_code == 207, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [201, 415, 201]
    assert "PNG or JPEG" in res[1]["error"] and res[1]["image"] is None
    assert counts(session)["image"] == 2
    assert len(files_under(settings.storage_dir)) == 2


def test_split_val_and_pagination(client, admin):
    pid = create_project(client, admin)["id"]
    files = [(f"im{i}.png", png_bytes(seed=i), "image/png") for i in range(5)]
    assert _upload(client, admin, pid, *files).status_code == 201
    assert _upload(client, admin, pid, ("v.png", png_bytes(), "image/png"), split="val").status_code == 201
    page = client.get(f"/api/projects/{pid}/images?limit=2&offset=2", headers=admin).json()
    assert page["total"] == 6 and page["limit"] == 2 and page["offset"] == 2
    assert [i["stem"] for i in page["items"]] == ["im2", "im3"]
    val = client.get(f"/api/projects/{pid}/images?split=val", headers=admin).json()
    assert val["total"] == 1 and val["items"][0]["stem"] == "v" and val["items"][0]["split"] == "val"
    assert client.get(f"/api/projects/{pid}/images?limit=0", headers=admin).status_code == 422


# Each bad upload: (files, expected status, words in the error). Nothing is written for any of them.
BAD_UPLOADS = {
    "text file": ([("a.png", b"just text", "image/png")], 415, "PNG or JPEG"),
    "gif": ([("a.gif", b"GIF89a" + b"\0" * 20, "image/gif")], 415, "PNG or JPEG"),
    "empty": ([("a.png", b"", "image/png")], 415, "PNG or JPEG"),
    "over pixel cap": ([("big.png", bomb_png(7000, 7000), "image/png")], 413, "over the cap"),
    "decompression bomb": ([("bomb.png", bomb_png(100_000, 100_000), "image/png")], 413, "bomb"),
    "truncated": ([("t.png", png_bytes(64, 64)[:-40], "image/png")], 422, "truncated"),
    "all bad, mixed reasons": ([("a.png", b"x", "image/png"), ("b.png", bomb_png(9000, 9000), "image/png")],
                               422, ""),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_writes_nothing(client, admin, session, settings, case):
    files, code, words = BAD_UPLOADS[case]
    pid = create_project(client, admin)["id"]
    r = _upload(client, admin, pid, *files)
    assert r.status_code == code, r.text
    assert r.json()["created"] == 0
    assert all(words in x["error"] for x in r.json()["results"])
    assert counts(session)["image"] == 0
    assert files_under(settings.storage_dir) == []


def test_pixel_cap_and_byte_limit_are_settings(settings, admin, session):
    small = settings.model_copy(update={"max_image_pixels": 50, "max_upload_bytes": 2000})
    with TestClient(create_app(small)) as client:
        pid = create_project(client, admin)["id"]
        r = _upload(client, admin, pid, ("ok.png", png_bytes(7, 7), "image/png"),
                    ("wide.png", png_bytes(11, 5), "image/png"),
                    ("heavy.png", png_bytes(7, 7, mode="RGBA") + b"\0" * 2000, "image/png"))
    assert r.status_code == 207
    res = r.json()["results"]
    assert [x["status"] for x in res] == [201, 413, 413]
    assert "55 pixels" in res[1]["error"] and "2000 bytes" in res[2]["error"]
    assert counts(session)["image"] == 1


def test_duplicate_stem_409(client, admin, session):
    pid = create_project(client, admin)["id"]
    assert _upload(client, admin, pid, ("a.png", png_bytes(), "image/png")).status_code == 201
    r = _upload(client, admin, pid, ("a.jpg", jpeg_bytes(), "image/jpeg"))
    assert r.status_code == 409 and "'a'" in r.json()["results"][0]["error"]
    assert counts(session)["image"] == 1


def test_unknown_ids_404(client, admin):
    assert _upload(client, admin, 999, ("a.png", png_bytes(), "image/png")).status_code == 404
    assert client.get("/api/projects/999/images", headers=admin).status_code == 404
    assert client.get("/api/images/999", headers=admin).status_code == 404
    assert client.get("/api/images/999/file", headers=admin).status_code == 404


def test_probe_reads_only_the_header_of_a_bomb():
    data = bomb_png(30_000, 1_000)  # 30 MP claimed, 4 kB of data: under the cap, cannot decode
    with pytest.raises(ImageError) as e:
        probe(data, 10_000_000)
    assert e.value.status == 413
    info = probe(data, 40_000_000, verify=False)
    assert (info.width, info.height) == (30_000, 1_000)


def test_sniff():
    assert sniff(png_bytes()) == "image/png"
    assert sniff(jpeg_bytes()) == "image/jpeg"
    assert sniff(b"GIF89a") is None and sniff(b"") is None


@pytest.mark.parametrize("name,stem", [("a.png", "a"), ("../../etc/passwd.png", "passwd"),
                                       ("C:\\x\\y.jpg", "y"), ("we ird<>.png", "we ird__"),
                                       ("", "image"), (".png", "png"), ("a.b.png", "a.b")])
def test_stem_of(name, stem):
    assert stem_of(name) == stem


def test_storage_refuses_escaping_keys_and_writes_atomically(tmp_path):
    s = Storage(tmp_path / "st")
    for key in ("../x", "/etc/passwd", "a/../../x", "", "a\\b"):
        with pytest.raises(StorageError):
            s.path(key)
    (tmp_path / "outside").mkdir()
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(StorageError):
        s.write_bytes("link/x", b"no")
    key = image_key(3, 17, "png")
    assert key == "projects/3/images/17.png"
    s.write_bytes(key, b"one")
    s.write_bytes(key, b"two")
    assert s.read_bytes(key) == b"two"
    assert files_under(tmp_path / "st") == [key]  # no temporary files left behind
    s.delete_project(3)
    assert files_under(tmp_path / "st") == []
