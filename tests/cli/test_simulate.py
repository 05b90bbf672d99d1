"""`s4al simulate`'s options default to SimulateConfig's values: the CLI spells them out for --help (it
must not import the engine to build its options), so this keeps the two from drifting apart."""

import dataclasses
import inspect

from cli.simulate import simulate
from worker.simulate import SimulateConfig

CLI_ONLY = {"dataset_dir", "threads"}  # a positional argument and a process setting, not config fields


def _config_defaults() -> dict:
    out = {}
    for f in dataclasses.fields(SimulateConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_every_simulate_option_defaults_to_the_config_default():
    config = _config_defaults()
    options = {name: p.default for name, p in inspect.signature(simulate).parameters.items()
               if name not in CLI_ONLY | {"out"}}
    compare = options.pop("compare")
    assert [a for a in compare.split(",")] == config.pop("compare")
    assert options == config


def test_every_config_field_is_an_option():
    fields = {f.name for f in dataclasses.fields(SimulateConfig)}
    params = set(inspect.signature(simulate).parameters) - CLI_ONLY
    assert fields - {"dataset"} == params
