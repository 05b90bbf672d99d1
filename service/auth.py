"""Bearer tokens with roles. Tokens are random (256 bits), so a plain SHA-256 hash is enough to store.

Every request is authenticated, so the lookup is on every request's path: each API worker keeps what it
read for `settings.token_cache_seconds` (a revocation through this worker's API applies at once; one by
another worker or the CLI within that time). A hit costs no database trip and no thread-pool hop.
"""

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.db import get_session
from service.models import Project, Token, utcnow
from service.queue import release_token_leases
from service.schemas.token import TokenPublic

ROLES = ("admin", "reviewer", "annotator")
_bearer = HTTPBearer(auto_error=False)
_BY_HASH = select(Token).where(Token.token_hash == bindparam("h"))  # built once: every request runs it


class TokenCache:
    """Callers (TokenPublic) by token hash, each trusted for `ttl` seconds; at most `size` of them
    (least recently stored out)."""

    def __init__(self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[str, tuple[float, TokenPublic]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> TokenPublic | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def put(self, token_hash: str, caller: TokenPublic) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[token_hash] = (self.clock() + self.ttl, caller)
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, token_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, c) in self._entries.items() if c.id == token_id]:
                del self._entries[key]


def token_cache(request: Request) -> TokenCache:
    return request.app.state.token_cache


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str, projects: list[int] | None = None) -> str:
    """Store a new token's hash and return the token itself: the only time it is seen. `projects`
    limits an annotator token to those project ids (None = every project); they must exist."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if projects is not None:
        if role == "admin":
            raise ValueError("an admin token covers every project; project scopes are for annotators")
        projects = sorted(set(projects))
        known = set(session.scalars(select(Project.id).where(Project.id.in_(projects))))
        if missing := [p for p in projects if p not in known]:
            raise ValueError(f"no project with id {', '.join(map(str, missing))}")
    token = "s4al_" + secrets.token_urlsafe(32)
    session.add(Token(name=name, role=role, token_hash=hash_token(token), projects=projects))
    session.commit()
    return token


def revoke_token(session: Session, token_id: int) -> Token | None:
    """Revoke a token and give its live leases back to the queue at once (not at their expiry)."""
    token = session.get(Token, token_id)
    if token is None:
        return None
    token.revoked = True
    session.commit()
    release_token_leases(session, token_id)
    return token


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def load_caller(session: Session, token_hash: str) -> TokenPublic:
    """Read a token by its hash (401 if unknown or revoked), touching last_used_at at most once a minute
    so that reads do not turn into writes."""
    token = session.scalar(_BY_HASH, {"h": token_hash})
    if token is None or token.revoked:
        raise _unauthorized("invalid or revoked token")
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
        session.commit()
    return TokenPublic.model_validate(token)


async def current_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[Session, Depends(get_session)],
) -> TokenPublic:
    if creds is None or creds.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    token_hash = hash_token(creds.credentials)
    cache = token_cache(request)
    caller = cache.get(token_hash)
    if caller is None:
        caller = await run_in_threadpool(load_caller, session, token_hash)
        cache.put(token_hash, caller)
    return caller


async def require_admin(token: Annotated[TokenPublic, Depends(current_token)]) -> TokenPublic:
    if token.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this action needs an admin token")
    return token


async def require_reviewer(token: Annotated[TokenPublic, Depends(current_token)]) -> TokenPublic:
    if token.role not in ("admin", "reviewer"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this action needs a reviewer or admin token")
    return token


CurrentToken = Annotated[TokenPublic, Depends(current_token)]
ReviewerToken = Annotated[TokenPublic, Depends(require_reviewer)]
AdminToken = Annotated[TokenPublic, Depends(require_admin)]
SessionDep = Annotated[Session, Depends(get_session)]
