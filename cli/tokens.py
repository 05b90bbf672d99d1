"""`s4al token create|list|revoke`: bearer tokens, straight on the database (no running API needed)."""

from enum import StrEnum
from typing import Annotated

import typer

from cli import common

token_app = typer.Typer(help="Bearer tokens: create, list, revoke.", no_args_is_help=True)


class Role(StrEnum):
    admin = "admin"
    reviewer = "reviewer"
    annotator = "annotator"


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who holds it, e.g. alice.")],
    role: Annotated[Role, typer.Option(help="admin, reviewer or annotator.")] = Role.annotator,
    project: Annotated[list[str] | None, typer.Option(
        help="A project (id or name) the token may use; repeat for more. Default: all.")] = None,
) -> None:
    """Create a token and print it. It is stored hashed: this is the only time it is shown."""
    from service.auth import create_token
    from service.projects import project_by_ref

    with common.session(common.settings()) as session:
        ids = None
        if project:
            found = {ref: project_by_ref(session, ref) for ref in project}
            if missing := [ref for ref, p in found.items() if p is None]:
                typer.echo(f"no project {', '.join(map(repr, missing))}", err=True)
                raise typer.Exit(1)
            ids = [p.id for p in found.values()]
        try:
            typer.echo(create_token(session, name, role.value, ids))
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their values)."""
    from sqlalchemy import select

    from service.models import Token

    with common.session(common.settings()) as session:
        for t in session.scalars(select(Token).order_by(Token.id)):
            state = "revoked" if t.revoked else "active"
            scope = "all projects" if t.projects is None else "projects " + ",".join(map(str, t.projects))
            typer.echo(f"{t.id}\t{t.role}\t{state}\t{t.name}\t{scope}\tlast used {t.last_used_at or 'never'}")


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (see `s4al token list`); its live leases go back to the queue at once."""
    from service.auth import revoke_token

    with common.session(common.settings()) as session:
        if revoke_token(session, token_id) is None:
            typer.echo(f"no token with id {token_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"token {token_id} revoked")
