from fastapi import APIRouter
from sqlalchemy import text

from service.auth import SessionDep

router = APIRouter(tags=["health"])


@router.get("/api/health")
def health(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}
