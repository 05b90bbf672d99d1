"""Project settings → the engine's TrainConfig and AcquisitionConfig, validated.

Project.training holds service.schemas.project.TrainingSettings (validated again here: the column may
have been written by an older version); Project.region holds RegionSettings. The device comes from the
worker's own settings (S4AL_DEVICE), since the same project may run on a CPU or a GPU worker.
"""

from pydantic import ValidationError

from service.models import Project
from service.schemas.project import RegionSettings, TrainingSettings
from service.settings import Settings


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
    if t.init == "random" and t.model != "unet_small":
        raise BadTrainingSettings(f"init 'random' is not available for {t.model}: its encoder always starts "
                                  "from the ImageNet weights")
    # The schema's one mix name covers both ClassMix variants: with a replay buffer it is S4AL's balanced
    # ClassMix (a second, tail-biased term on replayed pairs), without one plain ClassMix.
    mix = "balanced_classmix" if t.mix == "classmix" and t.replay_size > 0 else t.mix
    train = dict(model=t.model, init="pretrained", iterations=t.iterations, batch_size=t.batch_size,
                 unlabeled_batch_size=max(2, t.unlabeled_batch_size), lr=t.lr, momentum=t.momentum,
                 nesterov=t.nesterov, weight_decay=t.weight_decay, poly_power=t.poly_power,
                 warmup_fraction=min(t.warmup_fraction, 0.99), ema_momentum=t.ema, tau=t.tau, mix=mix,
                 unsup_gate=t.unsup_gate,
                 seed=t.seed, device=settings.device, pseudo_label=t.pseudo_label)
    if t.replay_size > 0:
        train["replay_size"] = max(2, t.replay_size)
    try:
        train_config = TrainConfig.from_dict(train)
        train_config.validate()
    except ValueError as exc:
        raise BadTrainingSettings(f"invalid training settings: {exc}") from exc
    acquisition = AcquisitionConfig(metric=t.acquisition, region_kind=r.kind, region_size=r.size,
                                    budget_regions=t.budget,
                                    per_image=None if t.budget is not None else t.budget_per_image,
                                    seed=t.seed)
    try:
        acquisition.validate()
    except ValueError as exc:
        raise BadTrainingSettings(f"invalid acquisition settings: {exc}") from exc
    resolved = {"train": train_config.to_dict(), "acquisition": dict(vars(acquisition)),
                "project_training": t.model_dump(), "region": r.model_dump()}
    return train_config, acquisition, resolved
