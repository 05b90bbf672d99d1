"""Cycle schemas: a cycle's status and progress, and a project's learning curve."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import INT32_MAX, InputModel


class CyclePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    number: int
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    trigger: str = Field(description="manual (an admin started it) | auto (the project's auto_cycle rule)")
    phase: str | None = Field(None, description="load | train | score | evaluate | write, while running")
    step: int
    total: int
    loss: float | None
    eta_seconds: float | None
    metrics: dict[str, Any] | None = Field(None, description="miou, per_class_iou, labeled_fraction, "
                                                             "regions, timings ... once succeeded")
    error: str | None
    cancel_requested: bool
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class MetricsPoint(BaseModel):
    cycle_id: int
    number: int
    status: str
    labeled_fraction: float | None
    miou: float | None
    per_class_iou: list[float | None] | None


class ProjectMetrics(BaseModel):
    project_id: int
    class_names: list[str]
    cycles: list[MetricsPoint]
    best_cycle_id: int | None = Field(None, description="the succeeded cycle with a model and the highest "
                                                        "val mIoU: the one to export")


class OracleRequest(InputModel):
    limit: int | None = Field(None, ge=1, le=INT32_MAX,
                              description="Label at most this many regions; default all queued.")


class OracleResult(BaseModel):
    project_id: int
    labeled: int
    remaining: int

