"""Image-level tag schemas: what an annotator sends, what the API shows, the tagging queue's answer."""

from datetime import datetime

from pydantic import BaseModel, Field

from service.schemas.common import InputModel
from service.schemas.image import ImagePublic


class TagUpdate(InputModel):
    class_ids: list[int] = Field(max_length=255, description="Every class present in the image; the "
                                                            "others are taken as absent. May be empty.")


class TagPublic(BaseModel):
    id: int
    image_id: int
    class_ids: list[int]
    token_name: str | None = Field(description="Who tagged (their token's name); null if revoked+deleted.")
    created_at: datetime


class ImageTagsPublic(BaseModel):
    image_id: int
    latest: TagPublic | None = Field(description="The tags in force; null when the image is untagged.")
    history: list[TagPublic] = Field(default_factory=list, description="All tag rows, newest first "
                                                                       "(only with ?history=true).")


class TaggingNext(BaseModel):
    image: ImagePublic | None = Field(description="The next train image to tag; null when all are tagged.")
    uncertainty: float | None = Field(description="The classifier's uncertainty for it at the last cycle.")
    tagged: int
    untagged: int
