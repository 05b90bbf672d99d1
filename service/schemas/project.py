"""Project schemas: classes, region settings, training settings (defaults from DESIGN §1)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from service.masks import IGNORE
from service.schemas.common import INT32_MAX, InputModel

MAX_CLASSES = 255  # ids 0..254; 255 is the ignore index


class ClassDef(InputModel):
    id: int = Field(ge=0, le=MAX_CLASSES - 1)
    name: str = Field(min_length=1, max_length=100)
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")


def check_classes(classes: list[ClassDef]) -> list[ClassDef]:
    """Ids unique and contiguous 0..K-1, names unique, at most 255 classes; returned sorted by id."""
    if not classes:
        raise ValueError("at least one class is needed")
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"at most {MAX_CLASSES} classes (255 is the ignore index), got {len(classes)}")
    ids = [c.id for c in classes]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate class ids: {dup}")
    if sorted(ids) != list(range(len(ids))):
        raise ValueError(f"class ids must be contiguous 0..{len(ids) - 1}, got {sorted(ids)}")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ValueError("duplicate class names")
    return sorted(classes, key=lambda c: c.id)


class AutoCycleSettings(InputModel):
    """Start the next cycle without an admin: checked after every submit and skip, never while a
    cycle is queued or running. Either rule suffices; 0 turns a rule off."""

    enabled: bool = Field(False, strict=True)
    after_labeled: int = Field(0, ge=0, le=1_000_000, strict=True, description=(
        "Start once this many labels were submitted since the last cycle started; 0 = off."))
    when_queue_below: int = Field(1, ge=0, le=1_000_000, strict=True, description=(
        "Start once fewer regions than this wait in the queue (1: when it is empty); 0 = off."))

    @model_validator(mode="after")
    def _some_rule(self) -> "AutoCycleSettings":
        if self.enabled and not (self.after_labeled or self.when_queue_below):
            raise ValueError("enabled with both after_labeled and when_queue_below at 0 would never start "
                             "a cycle")
        return self


class AutoCycleStatus(BaseModel):
    """A project's auto-cycle rule and where it stands: what the dashboard shows."""

    project_id: int
    enabled: bool
    after_labeled: int = Field(description="0: the rule is off")
    when_queue_below: int = Field(description="0: the rule is off")
    last_cycle: int | None = Field(description="Number of the latest cycle; labels are counted since it "
                                               "started")
    active: bool = Field(description="A cycle is queued or running: no other starts until it ends")
    labeled_since: int = Field(description="Labels submitted since the latest cycle started")
    waiting: int = Field(description="Regions waiting to be leased")


class RegionSettings(InputModel):
    kind: Literal["grid", "superpixel"] = "grid"
    size: int = Field(32, ge=4, le=2048, description="Grid cell side, or the mean superpixel side, in px.")
    annotation: Literal["exact", "dominant"] = Field(
        "exact", description="exact: the annotator paints the region's pixels; dominant (superpixel regions "
                             "only): the annotator gives the whole superpixel one class, its majority class "
                             "(one click), and the service stores that class on the superpixel's pixels.")

    @model_validator(mode="after")
    def _dominant_needs_superpixels(self) -> "RegionSettings":
        if self.annotation == "dominant" and self.kind != "superpixel":
            raise ValueError(f"annotation 'dominant' gives a whole superpixel one class, so it needs "
                             f"kind 'superpixel', not {self.kind!r}; {self.kind} regions are labeled with "
                             f"annotation 'exact'")
        return self


class TrainingSettings(InputModel):
    """One cycle's training and acquisition settings. Training fields have the names and defaults of the
    engine's TrainConfig (worker/engine/config.py; a test keeps them equal: the service cannot import it)."""

    iterations: int = Field(2000, ge=1, le=1_000_000)
    batch_size: int = Field(8, ge=1, le=512, description="Labeled images per step.")
    unlabeled_batch_size: int = Field(8, ge=0, le=512, description="Unlabeled images per step.")
    lr: float | None = Field(None, gt=0, le=10, description="None: the model's own default (unet_small 0.1, "
                             "lraspp_mobilenetv2 0.01, deeplabv3plus_mobilenetv2 0.01 as published).")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0, le=1)
    poly_power: float = Field(0.9, ge=0, le=10)
    warmup_fraction: float = Field(0.1, ge=0, le=1, description="Supervised-only share of iterations.")
    ema_momentum: float = Field(0.99, ge=0, lt=1, description="Mean-teacher EMA cap.")
    tau: float = Field(0.97, gt=0, lt=1, description="Confidence threshold of the per-image weight η.")
    unsup_gate: Literal["measured", "off"] = Field(
        "measured", description="measured: the teacher's confidence is its precision measured on "
                                "held-back labeled pixels (the unsupervised term is small while it is poor).")
    mix: Literal["classmix", "cutmix", "cowmix", "none"] = "classmix"
    pseudo_label: Literal["argmax", "pseudoseg"] = Field(
        "argmax", description="Unlabeled targets: the teacher's argmax, or PseudoSeg's fusion with a "
                              "self-attention Grad-CAM (uses image-level tags).")
    replay_size: int = Field(256, ge=0, le=100_000, description="Balanced ClassMix replay buffer; 0 = off.")
    acquisition: Literal["random", "least_confidence", "entropy", "margin"] = "entropy"
    acquisition_cost: Literal["none", "clicks", "corrected"] = Field(
        "none", description="Weigh each region's uncertainty by its annotation cost predicted from the "
                            "model: clicks (the model's components and border crossings in it) or corrected "
                            "(its expected wrong pre-label pixels); none: uncertainty only.")
    acquisition_cost_rule: Literal["ratio", "below_median"] = Field(
        "ratio", description="ratio: uncertainty x area / predicted cost; below_median: uncertainty, among "
                             "each image's regions whose predicted cost is at most the median.")
    budget: int | None = Field(None, ge=1, le=INT32_MAX, description="Per cycle, in budget_unit: regions "
                               "(global top-B; overrides budget_per_image when set) or predicted clicks.")
    budget_per_image: int = Field(4, ge=1, le=10_000, description="Top regions per image per cycle.")
    budget_unit: Literal["regions", "clicks"] = Field(
        "regions", description="regions: budget counts regions; clicks: budget counts the annotator's clicks "
                               "as the model predicts them, so cheaper regions buy more regions (regions are "
                               "taken in ranking order until their predicted clicks reach the budget).")
    # The ImageNet encoder by default: with few labels (what a labeling project starts with) it learns
    # faster than unet_small from random weights, at 1.2x its step cost (bench/model_convergence.py).
    model: Literal["unet_small", "lraspp_mobilenetv2", "deeplabv3plus_mobilenetv2"] = "lraspp_mobilenetv2"
    crop_size: int | None = Field(None, ge=1, le=4096, description="Side of the square training crops, in "
                                  "px after resizing; None: the model's default (unet_small and "
                                  "lraspp_mobilenetv2 64, deeplabv3plus_mobilenetv2 512).")
    base_size: int | None = Field(None, ge=1, le=16384, description="Images whose long side exceeds this are "
                                  "resized to it for training, scoring and evaluation (regions and "
                                  "pre-labels stay in original pixels); None: the model's default "
                                  "(unet_small and lraspp_mobilenetv2 never, deeplabv3plus 1024).")
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="pretrained: a fresh model each cycle (an ImageNet encoder where the model "
                                  "has one); random: a fresh model without ImageNet weights.")
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        """Settings stored before the fields took TrainConfig's names."""
        if isinstance(data, dict) and "ema" in data:
            data = {**{k: v for k, v in data.items() if k != "ema"}, "ema_momentum": data["ema"]}
        return data

    @model_validator(mode="after")
    def _click_budget_is_given(self) -> "TrainingSettings":
        if self.budget_unit == "clicks" and self.budget is None:
            raise ValueError("budget_unit 'clicks' needs budget: the predicted clicks per cycle "
                             "(budget_per_image counts regions)")
        return self

    @model_validator(mode="after")
    def _crop_fits_base(self) -> "TrainingSettings":
        if self.crop_size is not None and self.base_size is not None and self.crop_size > self.base_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than base_size {self.base_size}")
        return self


class QualitySettings(InputModel):
    """How label quality is measured: review, gold regions, consensus (DESIGN §3, label quality)."""

    review: Literal["none", "sample", "all"] = Field(
        "none", description="Which annotations a reviewer sees; with review on, only accepted or fixed "
                            "ones feed training and exports.")
    review_rate: float = Field(0.1, ge=0, le=1, description="Share of annotations reviewed with `sample`.")
    gold_rate: float = Field(0.0, ge=0, le=1, description="Share of leases that are gold regions.")
    min_gold_miou: float = Field(0.5, ge=0, le=1, description="An annotator whose mean gold mIoU is below "
                                                              "this is flagged.")
    review_flagged: bool = Field(False, description="Send every annotation of a flagged annotator to review.")
    overlap: int = Field(1, ge=1, le=10, description="Annotators per region on the consensus sample.")
    overlap_rate: float = Field(0.1, ge=0, le=1,
                                description="Share of regions given to `overlap` annotators.")


class ProjectCreate(InputModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    classes: list[ClassDef]
    region: RegionSettings = Field(default_factory=RegionSettings)
    ignore_index: Literal[255] = IGNORE
    auto_cycle: AutoCycleSettings = Field(default_factory=AutoCycleSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[ClassDef]) -> list[ClassDef]:
        return check_classes(v)


class ProjectUpdate(InputModel):
    """Partial update. `training` is merged into the current settings; `classes` may rename, recolor
    or append classes, never remove or renumber them (stored masks refer to the ids)."""

    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S")
    classes: list[ClassDef] | None = None
    region: RegionSettings | None = None
    auto_cycle: dict | None = Field(None, description="Merged into the current auto-cycle settings.")
    training: dict | None = None
    quality: dict | None = Field(None, description="Merged into the current quality settings.")

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[ClassDef] | None) -> list[ClassDef] | None:
        return None if v is None else check_classes(v)


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    classes: list[ClassDef]
    region: RegionSettings
    ignore_index: int
    # Projects made before the setting existed have none stored: off.
    auto_cycle: Annotated[AutoCycleSettings, BeforeValidator(lambda v: {} if v is None else v)] = Field(
        default_factory=AutoCycleSettings)
    training: TrainingSettings
    quality: QualitySettings = Field(default_factory=QualitySettings)
    created_at: datetime
    updated_at: datetime
    image_count: int = 0

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, v):  # projects made before quality settings existed have none stored
        return QualitySettings() if v is None else v
