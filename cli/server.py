"""`s4al migrate`, `s4al serve` (the API, and in embedded mode a worker beside it), `s4al version`."""

import os
from typing import Annotated

import typer

from cli import common

ADMIN_TOKEN_FILE = "admin-token"


def register(app: typer.Typer) -> None:
    app.command()(migrate)
    app.command()(serve)
    app.command()(version)


def migrate() -> None:
    """Bring the database (S4AL_DATABASE_URL, default the embedded SQLite file) to the latest schema."""
    from service.migrate import head_revision, upgrade_to_head

    settings = common.settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    # No alembic logging config here: its handler would keep whatever sys.stderr is now (a test runner's
    # captured stream, closed later), so the command reports the revision itself.
    upgrade_to_head(settings.sqlalchemy_url)
    typer.echo(f"database is at the latest schema ({head_revision()})")


def ensure_admin_token(settings) -> tuple[str, bool]:
    """The admin token `serve` prints: kept in <data_dir>/admin-token (mode 0600) so that every start
    prints the same one; a new one is made (named "admin") when the file is missing or its token no
    longer works. The data dir holds the database too, so the file reveals nothing new to its reader."""
    from sqlalchemy import select

    from service.auth import create_token, hash_token
    from service.models import Token

    path = settings.data_dir / ADMIN_TOKEN_FILE
    with common.session(settings) as session:
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

    settings = common.settings(host=host, port=port)
    if prepare_embedded(settings) is None:  # common.session would do it too; here to say what happened
        typer.echo("not embedded: the database must be migrated by the deployment (`s4al migrate`)")
    token, new = ensure_admin_token(settings)
    typer.echo(f"s4al is serving at {settings.base_url}  (API docs: {settings.base_url}/docs)")
    typer.echo(f"admin token{' (new)' if new else ''}: {token}")
    typer.echo(f"  (kept in {settings.data_dir / ADMIN_TOKEN_FILE})")
    from cli.embedded_worker import EmbeddedWorker

    runner = EmbeddedWorker(settings).start() if (settings.broker_url is None if worker is None else worker) \
        else None
    if runner is not None:
        typer.echo(f"a worker runs cycles beside it (log: {runner.log_path})")
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    finally:
        if runner is not None:
            runner.stop()


def version() -> None:
    """Print the version."""
    typer.echo("s4al 0.1.0")


