"""Queue schemas: leases, the region they hold, annotations submitted for them, and queue statistics."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import InputModel, LeaseIdItem


class LeaseRequest(InputModel):
    holding: list[LeaseIdItem] = Field(default_factory=list, max_length=8,
                               description="Lease ids the page already holds; a lease other than these "
                                           "is returned (the prefetched next region).")
    page: str | None = Field(None, min_length=1, max_length=64,
                             description="This page instance (browser tab): leases belong to a token and a "
                                         "page, so two tabs never get the same region.")


class RegionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    image_id: int
    cycle_id: int | None
    kind: str
    x: int
    y: int
    w: int
    h: int
    superpixel_id: int
    score: float
    status: str
    model_version: str | None
    has_prelabel: bool = False
    annotation: Literal["exact", "dominant"] = Field(
        "exact", description="exact: submit a mask of the region's pixels; dominant: submit one class id "
                             'for the whole superpixel (JSON {"class_id": …}).')


class CropBox(BaseModel):
    """Where the crop lies in the image; the region sits at (region.x - x, region.y - y) inside it."""

    url: str
    context: int
    x: int
    y: int
    w: int
    h: int


class ImageBrief(BaseModel):
    id: int
    stem: str
    width: int
    height: int


class LeasePublic(BaseModel):
    lease_id: str
    expires_at: datetime
    ttl_seconds: int
    region: RegionPublic
    image: ImageBrief
    crop: CropBox
    prelabel_url: str | None


class LeaseState(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    region_id: int
    state: str
    reason: str | None
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None


class SkipRequest(InputModel):
    reason: str = Field(min_length=1, max_length=500, description="Why the region was skipped.")


class ClassAnswer(InputModel):
    """The answer for a region labeled with its dominant class: one class for the whole superpixel."""

    class_id: int = Field(ge=0, le=254, strict=True, description="The class of the superpixel's majority "
                                                                 "of pixels (a class id of the project).")
    active_seconds: float | None = Field(None, ge=0, le=86_400, description="Time the page had focus with "
                                                                            "recent input on this region.")


class AnnotationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    image_id: int
    region_id: int | None
    lease_id: str | None
    source: str
    x: int
    y: int
    w: int
    h: int
    late: bool
    created_at: datetime
    replayed: bool = Field(False, description="True when an Idempotency-Key retry returned the first result.")


class AnnotatorStats(BaseModel):
    token_id: int | None
    name: str
    leased: int
    labeled_today: int
    labeled_total: int


class QueueStats(BaseModel):
    project_id: int
    total: int
    queued: int = Field(description="Waiting for an annotator (expired leases count here).")
    leased: int = Field(description="Held by a live lease.")
    labeled: int
    skipped: int = Field(description="Retired after enough annotators skipped them.")
    labeled_today: int = Field(description="Regions' annotations submitted since 00:00 UTC.")
    annotators: list[AnnotatorStats]
