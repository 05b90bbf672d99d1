import re

from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.service.factories import CLASSES, counts, create_project, png_bytes

PUBLIC = {"/api/health"}


def _api_routes():
    # From the OpenAPI spec: FastAPI's route objects are internal and change between versions.
    spec = create_app(Settings(_env_file=None)).openapi()
    for path, ops in spec["paths"].items():
        if path.startswith("/api") and path not in PUBLIC:
            for method in ops:
                yield method.upper(), path


ROUTES = sorted(set(_api_routes()))


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_there_are_routes_to_check():
    paths = {p for _, p in ROUTES}
    assert {"/api/projects", "/api/projects/{project_id}/images", "/api/images/{image_id}/file"} <= paths


def test_every_api_endpoint_needs_a_token(client):
    """One test over all routes (not one per route: each would pay for a fresh database)."""
    wrong = []
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer s4al_not-a-real-token"},
                        {"Authorization": "Basic YTpi"}):
            r = client.request(method, _url(path), headers=headers)
            if r.status_code != 401 or r.headers.get("www-authenticate") != "Bearer":
                wrong.append((method, path, headers, r.status_code))
    assert wrong == []


def test_health_and_openapi_are_public_docs_off_unless_enabled(client, settings):
    assert client.get("/api/health").status_code == 200
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    with TestClient(create_app(settings.model_copy(update={"api_docs": True}))) as docs_client:
        assert docs_client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/api/projects", "/api/projects/{project_id}", "/api/projects/{project_id}/images",
                 "/api/images/{image_id}", "/api/images/{image_id}/file",
                 "/api/projects/{project_id}/import"):
        assert path in spec["paths"], path
    assert {"get", "patch", "delete"} <= set(spec["paths"]["/api/projects/{project_id}"])


def test_annotators_cannot_create_projects_upload_or_import(client, admin, annotator, session, tmp_path):
    r = client.post("/api/projects", json={"name": "x", "classes": CLASSES}, headers=annotator)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    pid = create_project(client, admin)["id"]
    up = client.post(f"/api/projects/{pid}/images", headers=annotator,
                     files=[("files", ("a.png", png_bytes(), "image/png"))])
    assert up.status_code == 403
    imp = client.post(f"/api/projects/{pid}/import", json={"path": "."}, headers=annotator)
    assert imp.status_code == 403
    assert client.patch(f"/api/projects/{pid}", json={"name": "y"}, headers=annotator).status_code == 403
    assert client.delete(f"/api/projects/{pid}", headers=annotator).status_code == 403
    assert client.post("/api/tokens", json={"name": "m"}, headers=annotator).status_code == 403
    assert client.get("/api/tokens", headers=annotator).status_code == 403
    assert counts(session) == {"project": 1, "image": 0, "annotation": 0}
    # but they can read
    assert client.get(f"/api/projects/{pid}", headers=annotator).status_code == 200
    assert client.get(f"/api/projects/{pid}/images", headers=annotator).status_code == 200


def test_token_api_create_me_revoke(client, admin):
    r = client.post("/api/tokens", json={"name": "alice", "role": "annotator"}, headers=admin)
    assert r.status_code == 201
    made = r.json()
    alice = {"Authorization": f"Bearer {made['token']}"}
    me = client.get("/api/me", headers=alice).json()
    assert (me["name"], me["role"]) == ("alice", "annotator") and "token" not in me
    listed = client.get("/api/tokens", headers=admin).json()
    assert "alice" in [t["name"] for t in listed] and all("token" not in t for t in listed)
    assert client.delete(f"/api/tokens/{made['id']}", headers=admin).json()["revoked"] is True
    assert client.get("/api/me", headers=alice).status_code == 401
    assert client.delete("/api/tokens/999", headers=admin).status_code == 404
    assert client.post("/api/tokens", json={"name": "x", "role": "root"}, headers=admin).status_code == 422


def test_tokens_are_stored_hashed(session, admin_token):
    from sqlalchemy import select

    from service.models import Token

    stored = [t.token_hash for t in session.scalars(select(Token))]
    assert admin_token not in stored and all(len(h) == 64 for h in stored)


def test_token_cache_trusts_a_lookup_for_its_ttl_only():
    from datetime import UTC, datetime

    from service.auth import TokenCache
    from service.schemas.token import TokenPublic

    now = [100.0]
    cache = TokenCache(ttl=5, size=2, clock=lambda: now[0])
    alice = TokenPublic(id=1, name="alice", role="annotator", revoked=False,
                        created_at=datetime(2026, 1, 1, tzinfo=UTC), last_used_at=None)
    bob = TokenPublic(id=2, name="bob", role="admin", revoked=False,
                      created_at=datetime(2026, 1, 1, tzinfo=UTC), last_used_at=None)
    cache.put("ha", alice)
    assert cache.get("ha") is alice and cache.get("hb") is None
    now[0] = 104.9
    assert cache.get("ha") is alice
    now[0] = 105.0
    assert cache.get("ha") is None  # expired: looked up again
    cache.put("ha", alice)
    cache.put("hb", bob)
    cache.forget(1)
    assert cache.get("ha") is None and cache.get("hb") is bob
    cache.put("ha", alice)
    cache.put("hc", alice)  # a third entry pushes out the least recently stored one
    assert cache.get("hb") is None and cache.get("hc") is alice
    off = TokenCache(ttl=0)
    off.put("ha", alice)
    assert off.get("ha") is None


def test_revocation_outside_the_api_applies_within_the_cache_ttl(client, app, session, annotator):
    """Revoked in the database directly (as `s4al token revoke` does): the worker's cached lookup is
    trusted for token_cache_seconds, then the token is refused."""
    from sqlalchemy import update

    from service.models import Token

    now = [1000.0]
    app.state.token_cache.clock = lambda: now[0]
    me = client.get("/api/me", headers=annotator)
    assert me.status_code == 200
    session.execute(update(Token).where(Token.id == me.json()["id"]).values(revoked=True))
    session.commit()
    assert client.get("/api/me", headers=annotator).status_code == 200  # cached
    now[0] += app.state.settings.token_cache_seconds
    assert client.get("/api/me", headers=annotator).status_code == 401


def test_no_cache_means_every_request_reads_the_token(db_url, tmp_path, session, annotator):
    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from service.models import Token

    app = create_app(Settings(data_dir=tmp_path, database_url=db_url, token_cache_seconds=0, _env_file=None))
    with TestClient(app) as client:
        me = client.get("/api/me", headers=annotator)
        assert me.status_code == 200
        session.execute(update(Token).where(Token.id == me.json()["id"]).values(revoked=True))
        session.commit()
        assert client.get("/api/me", headers=annotator).status_code == 401
