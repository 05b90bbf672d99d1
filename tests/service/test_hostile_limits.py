"""Request bodies are bounded before they are read, a stalled body times out without stalling anyone
else, and every response carries the security headers. Driven at the ASGI level, where the test
controls exactly when and how much of a body arrives."""

import asyncio
import concurrent.futures
import json
import os
import stat

import pytest

from service.storage import private_file
from tests.service.queue_helpers import seed_queue


def _run_async(coro):
    """asyncio.run in a thread of its own: a browser test earlier in the session may leave an event loop
    running in the main thread (Playwright's sync API), where asyncio.run refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _call(app, method, path, headers=(), chunks=(), stall=False):
    """Send one request to the app; returns (status, headers, body, how many body chunks it read)."""
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or stall}
               for i, c in enumerate(chunks)] or [{"type": "http.request", "body": b"", "more_body": stall}]
    read, sent = 0, []

    async def receive():
        nonlocal read
        if read < len(pending):
            read += 1
            return pending[read - 1]
        await asyncio.Event().wait()  # a client that stopped sending (or, after the body, never leaves)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict((k.decode(), v.decode()) for k, v in start["headers"]), body, read


def _auth(token):
    return ("authorization", f"Bearer {token}")


def test_a_json_body_over_the_cap_is_413_before_a_byte_is_read(client, app, annotator_token, settings):
    settings.max_json_bytes = 1024
    headers = [_auth(annotator_token), ("content-type", "application/json"), ("content-length", "67108864")]
    status, hdrs, body, read = _run_async(_call(app, "PUT", "/api/images/1/tags", headers, [b"{"]))
    assert (status, read) == (413, 0) and "1024 bytes" in json.loads(body)["detail"]
    assert hdrs["connection"] == "close" and hdrs["x-content-type-options"] == "nosniff"


def test_an_upload_over_the_cap_is_413_from_its_content_length(client, app, admin_token, settings):
    declared = str(512 * 1024 * 1024)
    headers = [_auth(admin_token), ("content-type", "multipart/form-data; boundary=x"),
               ("content-length", declared)]
    status, _, body, read = _run_async(_call(app, "POST", "/api/projects/1/images", headers, [b"--x"]))
    assert (status, read) == (413, 0) and str(settings.max_upload_request_bytes) in json.loads(body)["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=x"])
def test_a_body_longer_than_declared_or_chunked_is_cut_off_at_the_cap(client, app, admin_token, settings,
                                                                     content_type):
    settings.max_json_bytes = settings.max_upload_request_bytes = 64 * 1024
    # 1 MiB with no Content-Length (chunked), so nothing stops it up front; multipart starts as a real one.
    first = [] if content_type == "application/json" else [
        b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"]
    chunks = first + [b"x" * 16 * 1024] * 64
    headers = [_auth(admin_token), ("content-type", content_type)]
    path = "/api/projects" if content_type == "application/json" else "/api/projects/1/images"
    status, _, body, read = _run_async(_call(app, "POST", path, headers, chunks))
    # Read up to the first chunk past 64 KiB (the 5th either way: 5 x 16 KiB, or headers + 4 x 16 KiB).
    assert status == 413 and read == 5, (status, read, body)


def test_a_stalled_body_is_408_and_other_requests_go_on_meanwhile(client, app, annotator_token, settings):
    settings.body_timeout_seconds = 0.5
    stalled_headers = [_auth(annotator_token), ("content-type", "application/json"),
                       ("content-length", "100")]

    async def both():
        stalled = asyncio.create_task(_call(app, "PUT", "/api/images/1/tags", stalled_headers, [b'{"cla'],
                                            stall=True))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        health = await _call(app, "GET", "/api/health")
        health_took = loop.time() - t0
        return await stalled, health, health_took, stalled.done()

    stalled, health, health_took, _ = _run_async(asyncio.wait_for(both(), 30))
    assert stalled[0] == 408 and "0.5 s" in json.loads(stalled[2])["detail"]
    assert health[0] == 200 and health_took < 0.5  # answered while the stalled body was still waiting


def test_an_upload_within_the_caps_still_gets_its_per_file_results(client, admin, settings):
    from tests.service.factories import create_project, png_bytes

    small = png_bytes()
    settings.max_upload_bytes = len(small) + 100  # per file; the request as a whole is far under its cap
    pid = create_project(client, admin)["id"]
    r = client.post(f"/api/projects/{pid}/images", headers=admin,
                    files=[("files", ("a.png", small, "image/png")),
                           ("files", ("b.png", small + b"\0" * 300, "image/png"))])
    assert r.status_code == 207 and [x["status"] for x in r.json()["results"]] == [201, 413]


def test_security_headers_on_every_kind_of_response(client, session, settings, admin, annotator):
    seeded = seed_queue(session, settings, regions=1, prelabel=True)
    checks = {
        "/api/health": ({}, 200), "/api/me": (annotator, 200), "/api/projects/99": (annotator, 404),
        "/api/projects/x": (annotator, 422), "/api/me?": ({}, 401), "/": ({}, 200),
        "/web/annotate.js": ({}, 200), f"/api/regions/{seeded.region_ids[0]}/crop": (annotator, 200),
        f"/api/images/{seeded.image_ids[0]}/file": (annotator, 200), "/openapi.json": ({}, 200),
    }
    for url, (headers, status) in checks.items():
        r = client.get(url, headers=headers)
        assert r.status_code == status and r.headers["x-content-type-options"] == "nosniff", url
        if url.startswith("/api/") and status != 200 or url in ("/api/me", "/api/health"):
            assert r.headers["cache-control"] == "no-store", url
    crop = client.get(f"/api/regions/{seeded.region_ids[0]}/crop", headers=annotator)
    assert crop.headers["cache-control"].startswith("private")  # its own caching is kept
    created = client.post("/api/tokens", json={"name": "bob"}, headers=admin)
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


def test_data_files_are_private(client, settings, tmp_path):
    if not settings.sqlalchemy_url.startswith("sqlite"):
        pytest.skip("the database file is SQLite's")
    database = settings.sqlalchemy_url.removeprefix("sqlite:///")
    for path in (database, settings.data_dir / "broker.sqlite"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    loose = tmp_path / "worker.log"
    loose.write_text("x")
    os.chmod(loose, 0o644)
    assert stat.S_IMODE(os.stat(private_file(loose)).st_mode) == 0o600
    fresh = private_file(tmp_path / "new" / "worker.log")
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600 and fresh.read_bytes() == b""
