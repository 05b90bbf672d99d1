"""Project settings → the engine's TrainConfig and AcquisitionConfig, validated.

Project.training holds service.schemas.project.TrainingSettings (validated again here: the column may
have been written by an older version); Project.region holds RegionSettings. The training fields carry
TrainConfig's names and defaults (tests/worker/test_training_config.py pins both), so they are copied
by name; only the acquisition fields and the replay buffer switch are translated. The device and the
loader processes come from the worker's own settings (S4AL_DEVICE, S4AL_LOADER_WORKERS), since the same
project may run on a CPU or a GPU worker.
"""

from dataclasses import fields

from pydantic import ValidationError

from service.models import Project
from service.schemas.project import RegionSettings, TrainingSettings
from service.settings import Settings

# Schema fields that are not TrainConfig fields: they choose regions, not how to train.
ACQUISITION_FIELDS = ("acquisition", "acquisition_cost", "acquisition_cost_rule", "budget",
                      "budget_per_image", "budget_unit")


class BadTrainingSettings(ValueError):
    """The project's training settings cannot run; the message says which and why."""


def resolve_configs(project: Project, settings: Settings):
    """Returns (TrainConfig, AcquisitionConfig, resolved) where `resolved` is the JSON-able record of
    what the cycle ran with (stored on the cycle row)."""
    from worker.engine.cycle import AcquisitionConfig
    from worker.engine.trainer import TrainConfig

    try:
        t = TrainingSettings.model_validate(project.training or {})
        r = RegionSettings.model_validate(project.region or {})
    except ValidationError as exc:
        raise BadTrainingSettings(f"invalid project settings: {exc}") from exc
    names = {f.name for f in fields(TrainConfig)}
    train = {k: v for k, v in t.model_dump().items() if k in names}
    # The schema's one mix name covers both ClassMix variants: with a replay buffer it is S4AL's balanced
    # ClassMix (a second, tail-biased term on replayed pairs), without one (replay_size 0) plain ClassMix.
    if t.mix == "classmix" and t.replay_size > 0:
        train["mix"] = "balanced_classmix"
    train.update(replay_size=max(2, t.replay_size), unlabeled_batch_size=max(2, t.unlabeled_batch_size),
                 warmup_fraction=min(t.warmup_fraction, 0.99), device=settings.device,
                 loader_workers=settings.loader_workers)
    try:
        train_config = TrainConfig.from_dict(train)
        train_config.validate()
    except ValueError as exc:
        raise BadTrainingSettings(f"invalid training settings: {exc}") from exc
    in_clicks = t.budget_unit == "clicks"
    acquisition = AcquisitionConfig(metric=t.acquisition, region_kind=r.kind, region_size=r.size,
                                    budget_regions=None if in_clicks else t.budget,
                                    per_image=None if t.budget is not None else t.budget_per_image,
                                    budget_unit=t.budget_unit, budget_clicks=t.budget if in_clicks else None,
                                    seed=t.seed, cost=t.acquisition_cost, cost_rule=t.acquisition_cost_rule,
                                    dominant=r.annotation == "dominant")
    try:
        acquisition.validate()
    except ValueError as exc:
        raise BadTrainingSettings(f"invalid acquisition settings: {exc}") from exc
    resolved = {"train": train_config.to_dict(), "acquisition": dict(vars(acquisition)),
                "project_training": t.model_dump(), "region": r.model_dump()}
    return train_config, acquisition, resolved
