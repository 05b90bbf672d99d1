"""Row-or-404 lookups every router shares: a missing id is a 404 that names what was asked for.

Given the caller's token, a row of a project the token may not use is a 404 too, worded the same, so
another project's ids are not even confirmed to exist.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.models import Base, Cycle, Image, Project, Region
from service.schemas.token import TokenPublic

T = TypeVar("T", bound=Base)
RETRY_SECONDS = 5  # what a 202 asks the client to wait before asking again
log = logging.getLogger(__name__)


def _row_or_404(session: Session, model: type[T], row_id: int, what: str,
                token: TokenPublic | None = None) -> T:
    row = session.get(model, row_id)
    project_id = row_id if model is Project else getattr(row, "project_id", None)
    if row is None or token is not None and not token.can_see(project_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {row_id} not found")
    return row


def in_scope(token: TokenPublic, project_id: int) -> None:
    """404 unless the token may use the project (checked before any database read)."""
    if not token.can_see(project_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {project_id} not found")


def project_or_404(session: Session, project_id: int, token: TokenPublic | None = None) -> Project:
    return _row_or_404(session, Project, project_id, "project", token)


def cycle_or_404(session: Session, cycle_id: int, token: TokenPublic | None = None) -> Cycle:
    return _row_or_404(session, Cycle, cycle_id, "cycle", token)


def region_or_404(session: Session, region_id: int, token: TokenPublic | None = None) -> Region:
    return _row_or_404(session, Region, region_id, "region", token)


def image_or_404(session: Session, image_id: int, token: TokenPublic | None = None) -> Image:
    return _row_or_404(session, Image, image_id, "image", token)


def ask_a_worker(send: Callable[[], None], what: str, body: dict) -> JSONResponse:
    """Send a task to the workers and answer 202 with `body` and a Retry-After; a broker that refuses
    the task is a 503 that says what could not be sent."""
    try:
        send()
    except Exception as exc:
        log.exception("could not send %s to a worker", what)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"{what} could not be sent to a worker: {exc}") from exc
    return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED,
                        headers={"Retry-After": str(RETRY_SECONDS)})
