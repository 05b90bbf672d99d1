"""Row-or-404 lookups every router shares: a missing id is a 404 that names what was asked for."""

from typing import TypeVar

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from service.models import Base, Cycle, Image, Project, Region

T = TypeVar("T", bound=Base)


def _row_or_404(session: Session, model: type[T], row_id: int, what: str) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {row_id} not found")
    return row


def project_or_404(session: Session, project_id: int) -> Project:
    return _row_or_404(session, Project, project_id, "project")


def cycle_or_404(session: Session, cycle_id: int) -> Cycle:
    return _row_or_404(session, Cycle, cycle_id, "cycle")


def region_or_404(session: Session, region_id: int) -> Region:
    return _row_or_404(session, Region, region_id, "region")


def image_or_404(session: Session, image_id: int) -> Image:
    return _row_or_404(session, Image, image_id, "image")
