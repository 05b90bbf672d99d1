"""Bearer tokens with roles. Tokens are random (256 bits), so a plain SHA-256 hash is enough to store."""

import hashlib
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.db import get_session
from service.models import Token, utcnow

ROLES = ("admin", "annotator")
_bearer = HTTPBearer(auto_error=False)
_BY_HASH = select(Token).where(Token.token_hash == bindparam("h"))  # built once: every request runs it


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    """Store a new token's hash and return the token itself: the only time it is seen."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    token = "s4al_" + secrets.token_urlsafe(32)
    session.add(Token(name=name, role=role, token_hash=hash_token(token)))
    session.commit()
    return token


def current_token(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[Session, Depends(get_session)],
) -> Token:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    token = session.scalar(_BY_HASH, {"h": hash_token(creds.credentials)})
    if token is None or token.revoked:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    now = utcnow()
    # Touch last_used_at at most once a minute so reads do not turn into writes.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
        session.commit()
    return token


def require_admin(token: Annotated[Token, Depends(current_token)]) -> Token:
    if token.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this action needs an admin token")
    return token


CurrentToken = Annotated[Token, Depends(current_token)]
AdminToken = Annotated[Token, Depends(require_admin)]
SessionDep = Annotated[Session, Depends(get_session)]
