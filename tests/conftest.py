"""Shared fixtures. Database tests run on SQLite and on PostgreSQL (fresh file / fresh schema per test).

PostgreSQL and Redis are real servers; when they do not answer the tests fail, never skip.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.db import engine_for, session_factory
from service.models import Base
from service.settings import Settings

PG_URL = os.environ.get("S4AL_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("S4AL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _pg_schema_url(schema: str) -> str:
    url = make_url(PG_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def pytest_collection_modifyitems(items):
    """Mark what a test needs, so that a part of the suite can be run alone (`-m "not browser"`): every
    test that runs on the PostgreSQL backend is `postgres`, every test under tests/e2e/ is `browser`."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgresql" in params.values() or "pg_admin_engine" in item.fixturenames:
            item.add_marker(pytest.mark.postgres)
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def pg_admin_engine():
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # a missing server is a failure, not a skip
        pytest.fail(f"PostgreSQL at {PG_URL} does not answer: {exc}")
    yield engine
    engine.dispose()


def _fresh_db(request, tmp_path: Path, with_schema: bool) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        if with_schema:
            Base.metadata.create_all(engine_for(url))
        yield url
        engine_for(url).dispose()
        return
    admin = request.getfixturevalue("pg_admin_engine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_schema_url(schema)
    try:
        if with_schema:
            Base.metadata.create_all(engine_for(url))
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables): a fresh SQLite file or a fresh PostgreSQL schema."""
    yield from _fresh_db(request, tmp_path, with_schema=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """A database with the models' schema, on each backend in turn."""
    yield from _fresh_db(request, tmp_path, with_schema=True)


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    with session_factory(db_url)() as s:
        yield s


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(data_dir=data, database_url=db_url, import_root=tmp_path, _env_file=None)


@pytest.fixture
def app(settings: Settings):
    from service.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin_token(session: Session) -> str:
    from service.auth import create_token

    return create_token(session, "test-admin", "admin")


@pytest.fixture
def annotator_token(session: Session) -> str:
    from service.auth import create_token

    return create_token(session, "test-annotator", "annotator")


@pytest.fixture
def admin(admin_token: str) -> dict[str, str]:
    """Headers for an admin."""
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def annotator(annotator_token: str) -> dict[str, str]:
    """Headers for an annotator."""
    return {"Authorization": f"Bearer {annotator_token}"}
