"""Token schemas. TokenPublic is also who a request comes from: the auth dependency hands it to the
routes and keeps it in the token cache, hence frozen."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import InputModel


class TokenCreate(InputModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    role: Literal["admin", "annotator"] = "annotator"


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    name: str
    role: str
    revoked: bool
    created_at: datetime
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token itself; it is stored hashed and never shown again.")
