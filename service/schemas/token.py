"""Token schemas. TokenPublic is also who a request comes from: the auth dependency hands it to the
routes and keeps it in the token cache, hence frozen."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import IdItem, InputModel


class TokenCreate(InputModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    role: Literal["admin", "reviewer", "annotator"] = "annotator"
    projects: list[IdItem] | None = Field(
        None, max_length=1000, description="Project ids an annotator token may see and label; null (the "
        "default) = every project. Admin tokens always cover every project.")


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    name: str
    role: str
    revoked: bool
    created_at: datetime
    last_used_at: datetime | None
    projects: tuple[int, ...] | None = Field(None, description="Project ids it may use; null = all.")

    def can_see(self, project_id: int) -> bool:
        return self.projects is None or project_id in self.projects


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token itself; it is stored hashed and never shown again.")
