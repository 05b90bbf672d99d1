"""Image schemas: metadata, pages of a listing, per-file upload results, import."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import InputModel


class ImagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    stem: str
    content_type: str
    width: int
    height: int
    split: str
    created_at: datetime


class ImagePage(BaseModel):
    items: list[ImagePublic]
    total: int
    limit: int
    offset: int


class UploadResult(BaseModel):
    filename: str
    status: int = Field(description="201 when this file was stored, else the 4xx that refused it.")
    image: ImagePublic | None = None
    error: str | None = None


class UploadResponse(BaseModel):
    created: int
    failed: int
    prelabel_cycle_id: int | None = Field(None, description="the cycle whose model a worker was asked to "
                                                            "pre-label the new images with (none before "
                                                            "the first trained cycle)")
    results: list[UploadResult]


class ImportRequest(InputModel):
    path: str = Field(min_length=1, description="Dataset folder; relative paths are under the import root.")
    masks: Literal["none", "initial", "oracle"] = "none"


class ImportSummary(BaseModel):
    project_id: int
    project: str
    created_project: bool
    images: int
    train: int
    val: int
    initial_masks: int
    oracle_masks: int
