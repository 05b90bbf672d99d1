"""The `s4al` command line. Commands that need torch import the worker lazily, inside the command."""

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="s4al: active semi-supervised labeling for semantic segmentation.",
                  no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")

ADMIN_TOKEN_FILE = "admin-token"


class Role(StrEnum):
    admin = "admin"
    annotator = "annotator"


class MaskMode(StrEnum):
    none = "none"
    initial = "initial"
    oracle = "oracle"


def _settings(**overrides):
    from service.settings import get_settings

    settings = get_settings()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_copy(update=overrides) if overrides else settings


def _session(settings):
    """A session on the settings' database; an embedded one is migrated first (cheap when current)."""
    from service.db import session_factory
    from service.migrate import prepare_embedded

    prepare_embedded(settings)
    return session_factory(settings.sqlalchemy_url)()


@app.command()
def migrate() -> None:
    """Bring the database (S4AL_DATABASE_URL, default the embedded SQLite file) to the latest schema."""
    from service.migrate import head_revision, upgrade_to_head

    settings = _settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    # No alembic logging config here: its handler would keep whatever sys.stderr is now (a test runner's
    # captured stream, closed later), so the command reports the revision itself.
    upgrade_to_head(settings.sqlalchemy_url)
    typer.echo(f"database is at the latest schema ({head_revision()})")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who holds it, e.g. alice.")],
    role: Annotated[Role, typer.Option(help="admin or annotator.")] = Role.annotator,
    project: Annotated[list[str] | None, typer.Option(
        help="A project (name or id) an annotator token may use; repeat for more. Default: all.")] = None,
) -> None:
    """Create a token and print it. It is stored hashed: this is the only time it is shown."""
    from service.auth import create_token

    with _session(_settings()) as session:
        try:
            ids = [_project_id(session, p) for p in project] if project else None
            typer.echo(create_token(session, name, role.value, ids))
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc


def _project_id(session, name_or_id: str) -> int:
    from sqlalchemy import select

    from service.models import Project

    found = session.scalar(select(Project.id).where(Project.name == name_or_id))
    as_id = int(name_or_id) if name_or_id.isdigit() and len(name_or_id) < 10 else None
    if found is None and as_id is not None and session.get(Project, as_id) is not None:
        found = as_id
    if found is None:
        raise ValueError(f"no project named {name_or_id!r}")
    return found


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their values)."""
    from sqlalchemy import select

    from service.models import Token

    with _session(_settings()) as session:
        for t in session.scalars(select(Token).order_by(Token.id)):
            state = "revoked" if t.revoked else "active"
            scope = "all projects" if t.projects is None else "projects " + ",".join(map(str, t.projects))
            typer.echo(f"{t.id}\t{t.role}\t{state}\t{t.name}\t{scope}\tlast used {t.last_used_at or 'never'}")


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (see `s4al token list`); its live leases go back to the queue."""
    from service.auth import revoke_token

    with _session(_settings()) as session:
        if revoke_token(session, token_id) is None:
            typer.echo(f"no token with id {token_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"token {token_id} revoked")


@app.command("import")
def import_cmd(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (DESIGN §3), under S4AL_IMPORT_ROOT.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    masks: Annotated[MaskMode, typer.Option(help="masks/: initial labels, oracle ground truth, or none.")]
    = MaskMode.none,
    create: Annotated[bool, typer.Option(help="Create the project from classes.json if missing.")] = True,
) -> None:
    """Import a dataset folder; everything is checked first, and nothing is written on any error."""
    from service.importer import ImportFailed, import_dataset

    settings = _settings()
    try:
        with _session(settings) as session:
            summary = import_dataset(session, settings, directory, project, masks.value, create=create)
    except ImportFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(summary))


def ensure_admin_token(settings) -> tuple[str, bool]:
    """The admin token `serve` prints: kept in <data_dir>/admin-token (mode 0600) so that every start
    prints the same one; a new one is made (named "admin") when the file is missing or its token no
    longer works. The data dir holds the database too, so the file reveals nothing new to its reader."""
    from sqlalchemy import select

    from service.auth import create_token, hash_token
    from service.models import Token

    path = settings.data_dir / ADMIN_TOKEN_FILE
    with _session(settings) as session:
        if path.is_file():
            token = path.read_text().strip()
            row = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
            if row is not None and row.role == "admin" and not row.revoked:
                return token, False
        token = create_token(session, "admin", "admin")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: S4AL_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: S4AL_PORT.")] = None,
    worker: Annotated[bool | None, typer.Option(
        "--worker/--no-worker", help="Also run a Celery worker; default: with the embedded broker.")] = None,
) -> None:
    """Start the API (embedded mode: migrates SQLite first, and runs a worker); prints the URL and an
    admin token. Ctrl-C stops both."""
    import uvicorn

    from service.main import create_app
    from service.migrate import prepare_embedded

    settings = _settings(host=host, port=port)
    if prepare_embedded(settings) is None:  # _session would do it too; here to say what happened
        typer.echo("not embedded: the database must be migrated by the deployment (`s4al migrate`)")
    token, new = ensure_admin_token(settings)
    typer.echo(f"s4al is serving at {settings.base_url}  (API docs: {settings.base_url}/docs)")
    typer.echo(f"admin token{' (new)' if new else ''}: {token}")
    typer.echo(f"  (kept in {settings.data_dir / ADMIN_TOKEN_FILE})")
    from service.embedded_worker import EmbeddedWorker  # the worker itself: celery_app.py, cycle_io.py

    runner = EmbeddedWorker(settings).start() if (settings.broker_url is None if worker is None else worker) \
        else None
    if runner is not None:
        typer.echo(f"a worker runs cycles beside it (log: {runner.log_path})")
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    finally:
        if runner is not None:
            runner.stop()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("s4al 0.1.0")


def _register_worker_commands() -> None:
    # worker.cli keeps torch imports inside its command bodies, so this stays torch-free.
    try:
        from worker.cli import register
    except ImportError:
        return
    register(app)


_register_worker_commands()


def _register_export_command() -> None:
    from service.cli_export import register

    register(app)


_register_export_command()


def _register_cycle_commands() -> None:
    from service.cli_cycles import register  # cycle start|list|show, oracle, demo

    register(app)


_register_cycle_commands()
