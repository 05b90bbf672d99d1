"""The project's training schema and the engine's TrainConfig share names and defaults."""

from dataclasses import fields

import pytest

from service.models import Project
from service.schemas.project import TrainingSettings
from service.settings import Settings
from worker.engine.config import TrainConfig
from worker.engine.cycle import AcquisitionConfig
from worker.training_config import ACQUISITION_FIELDS, BadTrainingSettings, resolve_configs


def test_every_training_field_is_a_train_config_field_with_the_same_default():
    config = {f.name: f for f in fields(TrainConfig)}
    schema = TrainingSettings()
    for name in TrainingSettings.model_fields:
        if name in ACQUISITION_FIELDS:
            continue
        assert name in config, f"{name} is not a TrainConfig field"
        assert getattr(schema, name) == config[name].default, name


def test_acquisition_fields_have_the_engine_defaults_and_reach_it():
    engine, schema = AcquisitionConfig(), TrainingSettings()
    assert (schema.acquisition, schema.acquisition_cost, schema.acquisition_cost_rule) == (
        engine.metric, engine.cost, engine.cost_rule)
    project = _project(acquisition_cost="clicks", acquisition_cost_rule="below_median")
    _, acq, resolved = resolve_configs(project, Settings(_env_file=None))
    assert (acq.cost, acq.cost_rule) == ("clicks", "below_median")
    assert resolved["acquisition"]["cost"] == "clicks"
    with pytest.raises(ValueError, match="acquisition_cost"):
        TrainingSettings(acquisition_cost="dollars")


def _project(**training) -> Project:
    return Project(name="p", classes=[], region={"kind": "grid", "size": 16}, training=training)


def test_settings_reach_the_engine_by_name():
    cfg, acq, resolved = resolve_configs(_project(iterations=7, ema_momentum=0.9, crop_size=32, base_size=48,
                                                  replay_size=0, init="random"), Settings(_env_file=None))
    assert (cfg.iterations, cfg.ema_momentum, cfg.crop, cfg.base, cfg.mix, cfg.init) == (
        7, 0.9, 32, 48, "classmix", "random")
    assert resolve_configs(_project(), Settings(_env_file=None))[0].mix == "balanced_classmix"
    assert resolved["project_training"]["ema_momentum"] == 0.9
    # Settings stored under the schema's earlier name still load.
    assert resolve_configs(_project(ema=0.95), Settings(_env_file=None))[0].ema_momentum == 0.95


def test_a_crop_larger_than_the_base_size_is_refused():
    with pytest.raises(ValueError, match="crop_size 64 is larger than base_size 32"):
        TrainingSettings(crop_size=64, base_size=32)
    with pytest.raises(BadTrainingSettings, match="crop_size 2048 is larger than base_size 1024"):
        resolve_configs(_project(model="deeplabv3plus_mobilenetv2", crop_size=2048), Settings(_env_file=None))


def test_the_gate_is_on_by_default_and_can_be_turned_off():
    on, _, resolved = resolve_configs(_project(), Settings(_env_file=None))
    assert on.unsup_gate == "measured" and resolved["train"]["unsup_gate"] == "measured"
    off, _, _ = resolve_configs(_project(unsup_gate="off"), Settings(_env_file=None))
    assert off.unsup_gate == "off"


def test_a_project_starts_with_the_cpu_pretrained_model():
    config, _, _ = resolve_configs(_project(), Settings(_env_file=None))
    assert config.model == "lraspp_mobilenetv2" and config.learning_rate == 1e-2


def test_a_click_budget_reaches_the_engine_as_predicted_clicks_per_cycle():
    _, acq, resolved = resolve_configs(_project(budget=500, budget_unit="clicks"), Settings(_env_file=None))
    assert (acq.budget_unit, acq.budget_clicks) == ("clicks", 500)
    assert acq.budget_regions is None and acq.per_image is None
    assert resolved["acquisition"]["budget_clicks"] == 500
    _, regions, _ = resolve_configs(_project(budget=500), Settings(_env_file=None))
    assert (regions.budget_unit, regions.budget_regions, regions.budget_clicks) == ("regions", 500, None)
    assert TrainingSettings().budget_unit == AcquisitionConfig().budget_unit == "regions"
    # Dominant-class superpixels cost one click each: the engine predicts them so.
    region = {"kind": "superpixel", "size": 16, "annotation": "dominant"}
    project = Project(name="p", classes=[], region=region, training={"budget": 40, "budget_unit": "clicks"})
    assert resolve_configs(project, Settings(_env_file=None))[1].dominant


def test_a_click_budget_without_its_number_or_in_another_unit_is_refused():
    with pytest.raises(ValueError, match="budget_unit 'clicks' needs budget"):
        TrainingSettings(budget_unit="clicks", budget_per_image=4)
    with pytest.raises(ValueError, match="budget_unit"):
        TrainingSettings(budget=100, budget_unit="seconds")
    with pytest.raises(BadTrainingSettings, match="budget_unit 'clicks' needs budget"):
        resolve_configs(_project(budget_unit="clicks"), Settings(_env_file=None))
