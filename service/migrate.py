"""Alembic from code: `upgrade_to_head(url)` for `s4al migrate`/`s4al serve`, and the embedded-mode
check the API runs at start.

alembic.ini and migrations/ live at the repository root, next to the `service` package (the package is
installed editable), so they are found from this file, whatever the current directory.
"""

import fcntl
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, make_url

from service.models import Base
from service.storage import private_file

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class SchemaMismatch(RuntimeError):
    """The database has tables but no migration history, and they differ from the models."""


def alembic_config(configure_logger: bool = False) -> Config:
    ini = REPO_ROOT / "alembic.ini"
    if not ini.is_file():
        raise FileNotFoundError(f"alembic.ini not found at {ini}: install s4al from its repository (pip -e)")
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    # env.py would otherwise reconfigure logging from the ini, clobbering uvicorn's and pytest's.
    cfg.attributes["configure_logger"] = configure_logger
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(url: str, configure_logger: bool = False) -> None:
    """`alembic upgrade head` on `url` (any backend), in one transaction."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _upgrade(conn, configure_logger)
    finally:
        engine.dispose()


def _upgrade(conn: Connection, configure_logger: bool = False) -> None:
    cfg = alembic_config(configure_logger)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def schema_diff(conn: Connection) -> list:
    """What autogenerate would change to make the database match the models (empty = identical)."""
    from alembic.autogenerate import compare_metadata

    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, Base.metadata)


def ensure_schema(url: str) -> str:
    """Bring an embedded database to the head revision at API start. Returns what it did.

    - no tables at all: upgrade from scratch ("migrated");
    - an alembic_version row behind head: upgrade ("migrated"); at head: nothing ("current");
    - tables but no alembic_version (made by `create_all`, as the test fixtures do): if they are exactly
      the models' schema, stamp head ("stamped"), else refuse to start (SchemaMismatch), since guessing
      which migration such a database is at could corrupt it.
    """
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" in tables:
                if current_revision(conn) == head_revision():
                    return "current"
                _upgrade(conn)
                return "migrated"
            if not tables:
                _upgrade(conn)
                return "migrated"
            diff = schema_diff(conn)
            if diff:
                raise SchemaMismatch(f"database {engine.url!r} has tables but no alembic_version, and "
                                     f"differs from the models: {diff[:5]}")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.stamp(cfg, "head")
            return "stamped"
    finally:
        engine.dispose()


def prepare_embedded(settings) -> str | None:
    """At API start: in embedded mode (SQLite), make the data dir and bring the schema to head.
    Other backends are migrated by the deployment (`s4al migrate` before the API starts)."""
    url = settings.sqlalchemy_url
    if not url.startswith("sqlite"):
        return None
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = make_url(url).database
    if database and database != ":memory:":
        private_file(Path(database))
    if settings.broker_url is None:  # the embedded broker's SQLite file (service.cycles.broker_url)
        private_file(settings.data_dir / "broker.sqlite")
    # The API and an embedded worker may start together: one migrates, the other then finds it current.
    with open(settings.data_dir / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = ensure_schema(url)
    log.info("embedded database %s: %s", url, done)
    return done
