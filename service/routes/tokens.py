"""Tokens: who am I (any token); create, list and revoke tokens (admin). Values are shown once."""

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select

from service.auth import (
    AdminToken,
    CurrentToken,
    SessionDep,
    create_token,
    hash_token,
    revoke_token,
    token_cache,
)
from service.models import Token
from service.schemas.common import TokenId
from service.schemas.token import TokenCreate, TokenCreated, TokenPublic

router = APIRouter(prefix="/api", tags=["tokens"])


@router.get("/me", response_model=TokenPublic)
def me(token: CurrentToken) -> TokenPublic:
    return token


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create(body: TokenCreate, session: SessionDep, _: AdminToken) -> TokenCreated:
    try:
        value = create_token(session, body.name.strip(), body.role, body.projects)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    row = session.scalar(select(Token).where(Token.token_hash == hash_token(value)))
    return TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=value)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, _: AdminToken) -> list[Token]:
    return list(session.scalars(select(Token).order_by(Token.id)))


@router.delete("/tokens/{token_id}", response_model=TokenPublic)
def revoke(token_id: TokenId, request: Request, session: SessionDep, _: AdminToken) -> Token:
    """Revoke a token; its live leases go back to the queue at once."""
    token = revoke_token(session, token_id)
    if token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"token {token_id} not found")
    token_cache(request).forget(token_id)  # other workers: within settings.token_cache_seconds
    return token
