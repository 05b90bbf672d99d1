import os
import subprocess
import sys

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from service.main import create_app
from service.migrate import (
    REPO_ROOT,
    SchemaMismatch,
    alembic_config,
    current_revision,
    ensure_schema,
    head_revision,
    schema_diff,
    upgrade_to_head,
)
from service.models import Base
from service.settings import Settings

MODEL_TABLES = set(Base.metadata.tables)


def _state(url: str) -> tuple[set[str], str | None, list]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            rev = current_revision(conn) if "alembic_version" in tables else None
            return tables, rev, schema_diff(conn)
    finally:
        engine.dispose()


def test_upgrade_head_gives_exactly_the_models_schema(empty_db_url):
    assert _state(empty_db_url)[0] == set()
    upgrade_to_head(empty_db_url)
    tables, rev, diff = _state(empty_db_url)
    assert tables == MODEL_TABLES | {"alembic_version"}
    assert rev == head_revision()
    assert diff == []  # autogenerate finds nothing to change


def test_downgrade_to_base_and_back(empty_db_url):
    upgrade_to_head(empty_db_url)
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    engine.dispose()
    assert _state(empty_db_url)[0] == {"alembic_version"}
    upgrade_to_head(empty_db_url)
    assert _state(empty_db_url)[2] == []


def _lease_functions(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return 0
            return conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 's4al_lease' "
                                     "AND pronamespace = current_schema()::regnamespace")).scalar_one()
    finally:
        engine.dispose()


def test_the_lease_function_comes_and_goes_with_its_migration(empty_db_url):
    """PostgreSQL leases through s4al_lease (service/queue_pg.py): migration 0004 makes it, its
    downgrade drops it; SQLite never has it. A database made from the models has it too."""
    postgres = empty_db_url.startswith("postgresql")
    upgrade_to_head(empty_db_url)
    assert _lease_functions(empty_db_url) == int(postgres)
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    assert _lease_functions(empty_db_url) == 0
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    Base.metadata.create_all(engine)
    engine.dispose()
    assert _lease_functions(empty_db_url) == int(postgres)


def test_alembic_command_line_from_another_directory(empty_db_url, tmp_path):
    env = {**os.environ, "S4AL_DATABASE_URL": empty_db_url}
    ini = str(REPO_ROOT / "alembic.ini")
    for args in (["upgrade", "head"], ["check"]):
        out = subprocess.run([sys.executable, "-m", "alembic", "-c", ini, *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    assert "No new upgrade operations detected" in out.stdout + out.stderr
    assert _state(empty_db_url)[1] == head_revision()


def test_ensure_schema_on_an_empty_database_then_current(empty_db_url):
    assert ensure_schema(empty_db_url) == "migrated"
    assert ensure_schema(empty_db_url) == "current"
    assert _state(empty_db_url)[1:] == (head_revision(), [])


def test_ensure_schema_stamps_a_create_all_database(db_url):
    assert _state(db_url)[1] is None  # the fixtures build tables with create_all
    assert ensure_schema(db_url) == "stamped"
    assert _state(db_url)[1] == head_revision()
    assert ensure_schema(db_url) == "current"


def test_ensure_schema_refuses_unknown_tables_without_history(empty_db_url):
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE project (id INTEGER PRIMARY KEY, other TEXT)"))
    engine.dispose()
    with pytest.raises(SchemaMismatch):
        ensure_schema(empty_db_url)
    tables, rev, _ = _state(empty_db_url)
    assert tables == {"project"} and rev is None  # untouched


def test_api_start_migrates_only_the_embedded_database(empty_db_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "fresh", database_url=empty_db_url, _env_file=None)
    with TestClient(create_app(settings)) as client:
        if empty_db_url.startswith("sqlite"):
            assert client.get("/api/health").status_code == 200
    tables, rev, _ = _state(empty_db_url)
    if empty_db_url.startswith("sqlite"):
        assert tables == MODEL_TABLES | {"alembic_version"} and rev == head_revision()
    else:  # PostgreSQL is migrated by the deployment (`s4al migrate`), never by an API replica
        assert tables == set()


def test_api_start_creates_the_default_sqlite_file(tmp_path):
    settings = Settings(data_dir=tmp_path / "new" / "data", _env_file=None)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").status_code == 200
    assert (tmp_path / "new" / "data" / "s4al.db").is_file()


def test_processes_starting_together_migrate_once(tmp_path):
    code = ("import sys; from service.migrate import prepare_embedded; "
            "from service.settings import Settings; "
            "print(prepare_embedded(Settings(data_dir=sys.argv[1], _env_file=None)))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("S4AL_")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d")], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["current", "current", "migrated"]
