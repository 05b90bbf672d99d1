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
) -> None:
    """Create a token and print it. It is stored hashed: this is the only time it is shown."""
    from service.auth import create_token

    with common.session(common.settings()) as session:
        typer.echo(create_token(session, name, role.value))


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their values)."""
    from sqlalchemy import select

    from service.models import Token

    with common.session(common.settings()) as session:
        for t in session.scalars(select(Token).order_by(Token.id)):
            state = "revoked" if t.revoked else "active"
            typer.echo(f"{t.id}\t{t.role}\t{state}\t{t.name}\tlast used {t.last_used_at or 'never'}")


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (see `s4al token list`)."""
    from service.models import Token

    with common.session(common.settings()) as session:
        token = session.get(Token, token_id)
        if token is None:
            typer.echo(f"no token with id {token_id}", err=True)
            raise typer.Exit(1)
        token.revoked = True
        session.commit()
    typer.echo(f"token {token_id} revoked")
