"""Review and label-quality schemas: the review item, review actions, quality and effort figures."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import InputModel
from service.schemas.queue import CropBox, ImageBrief


class ReviewItem(BaseModel):
    """An annotation awaiting review, with what the review page shows around it."""

    annotation_id: int
    region_id: int | None
    x: int
    y: int
    w: int
    h: int
    image: ImageBrief
    crop: CropBox
    mask_url: str
    prelabel_url: str | None
    annotator: str
    created_at: datetime
    active_seconds: float | None
    unchanged: bool | None
    pending: int = Field(description="Annotations of the project awaiting review, this one included.")


class RejectRequest(InputModel):
    reason: str = Field(min_length=1, max_length=500, description="Why: the next annotator is not told, the "
                                                                   "dashboard is.")


class ReviewResult(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    review_state: str | None
    review_reason: str | None
    reviewed_at: datetime | None
    in_labels: bool
    fixed_by_annotation: int | None = None


class GoldRequest(InputModel):
    count: int = Field(10, ge=1, le=10_000,
                       description="Queued regions with an oracle mask to turn into gold.")


class GoldCreated(BaseModel):
    created: int
    total: int


class AnnotatorQuality(BaseModel):
    token_id: int | None
    name: str
    annotations: int
    reviewed: int
    accepted: int
    rejected: int
    fixed: int
    acceptance: float | None = Field(description="Accepted / reviewed (a fix counts as not accepted).")
    gold_scored: int
    gold_accuracy: float | None
    gold_miou: float | None
    flagged: bool = Field(description="Mean gold mIoU below the project's min_gold_miou.")


class QualityStats(BaseModel):
    project_id: int
    review: str
    review_pending: int
    gold_regions: int
    consensus_regions: int
    consensus_complete: int
    agreement_iou: dict[str, float] = Field(description="Per class name, the mean pairwise IoU of the votes "
                                                        "on complete consensus regions.")
    annotators: list[AnnotatorQuality]


class AnnotatorEffort(BaseModel):
    token_id: int | None
    name: str
    annotations: int
    active_hours: float
    seconds_per_region: float | None
    unchanged_share: float | None
    strokes_per_region: float | None
    pixels_changed: int


class EffortPoint(BaseModel):
    number: int
    miou: float | None
    labeled_fraction: float | None
    hours: float = Field(description="Annotation hours (active) submitted before the cycle started.")


class EffortStats(BaseModel):
    project_id: int
    total: AnnotatorEffort = Field(description="Every human annotation of the project (name 'all').")
    annotators: list[AnnotatorEffort]
    curve: list[EffortPoint]
