"""Going back: the caller's recent submissions, and whether each can still be edited."""

from datetime import datetime

from pydantic import BaseModel, Field

from service.schemas.queue import CropBox, ImageBrief, RegionPublic


class RecentSubmission(BaseModel):
    """One of the caller's recent submissions, with what the page needs to reopen it."""

    annotation_id: int
    created_at: datetime
    region: RegionPublic
    image: ImageBrief
    crop: CropBox
    prelabel_url: str | None
    mask_url: str = Field(description="GET: the submitted mask (8-bit class ids, 255 = unlabeled); POST a "
                                      "new mask to the same address to revise it (multipart `mask`, as a "
                                      "lease's submission).")
    editable: bool
    reason: str | None = Field(None, description="Why it can no longer be edited (when not editable).")
