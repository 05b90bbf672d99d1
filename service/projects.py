"""Finding a project by what a person types: the one rule the CLI and the pages share."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Project

MAX_ID = 2**31 - 1  # the id column is a 32-bit integer on PostgreSQL


def project_by_ref(session: Session, ref: str) -> Project | None:
    """All digits is an id; anything else is a name. A project whose name is all digits is therefore
    reached by its id only, as on the pages (web/annotate.js)."""
    ref = ref.strip()
    if ref.isdigit():
        return session.get(Project, int(ref)) if int(ref) <= MAX_ID else None
    return session.scalar(select(Project).where(Project.name == ref))
