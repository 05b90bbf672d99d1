"""Engine and session factory. One engine per URL; the API gets sessions through `get_session`."""

from collections.abc import AsyncIterator
from functools import lru_cache

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers run beside the one writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=40)


@lru_cache
def engine_for(url: str) -> Engine:
    return make_engine(url)


@lru_cache
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: one session per request, on the app's own database.

    Async, because a sync dependency costs two trips through the thread pool per request (open, close)
    and opening a Session does no I/O (it connects on first use). Closing one that still holds a
    transaction is a ROLLBACK round trip, so that close goes to the pool; one whose work was committed
    holds no connection and closes in place.
    """
    session = session_factory(request.app.state.settings.sqlalchemy_url)()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()
