from service.models import Project
from service.settings import Settings
from worker.training_config import resolve_configs


def _project(training: dict) -> Project:
    return Project(name="p", classes=[], region={"kind": "grid", "size": 16}, training=training)


def test_the_gate_is_on_by_default_and_can_be_turned_off():
    on, _, resolved = resolve_configs(_project({}), Settings())
    assert on.unsup_gate == "measured" and resolved["train"]["unsup_gate"] == "measured"
    off, _, _ = resolve_configs(_project({"unsup_gate": "off"}), Settings())
    assert off.unsup_gate == "off"


def test_a_project_can_choose_the_cpu_pretrained_model():
    config, _, _ = resolve_configs(_project({"model": "lraspp_mobilenetv2"}), Settings())
    assert config.model == "lraspp_mobilenetv2" and config.learning_rate == 1e-2
