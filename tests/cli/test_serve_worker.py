"""`s4al serve` in embedded mode runs the API and a Celery worker; Ctrl-C (or SIGTERM) stops both, and
a worker whose serve was killed -9 exits by itself. Embedded mode means SQLite + the SQLite broker file.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service.db import session_factory
from service.settings import Settings
from tests.worker.tiny import label_with_oracle, make_project

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers_of(parent: int) -> list[int]:
    """Pids of processes started with S4AL_PARENT_PID=parent (the embedded worker and its pool)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = (d / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"S4AL_PARENT_PID={parent}".encode() in env:
                found.append(int(d.name))
    return found


def _gone(pids: list[int], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not [p for p in pids if Path(f"/proc/{p}").exists() and _alive(p)]:
            return True
        time.sleep(0.2)
    return False


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Serve:
    def __init__(self, tmp_path: Path, **settings: str):
        self.port = _free_port()
        self.data = tmp_path / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("S4AL_")}
        env.update(S4AL_DATA_DIR=str(self.data), S4AL_IMPORT_ROOT=str(tmp_path), S4AL_DEVICE="cpu",
                   S4AL_PORT=str(self.port), **settings)
        self.log = tmp_path / "serve.log"
        s4al = str(Path(sys.executable).parent / "s4al")
        self.proc = subprocess.Popen([s4al, "serve"], cwd=tmp_path, env=env, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT)
        self.settings = Settings(data_dir=self.data, import_root=tmp_path, _env_file=None)
        end = time.monotonic() + 90
        while time.monotonic() < end:
            try:
                self.get("/api/health")
                break
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.3)
        self.token = (self.data / "admin-token").read_text().strip()

    def get(self, path: str, method: str = "GET") -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers={"Authorization": f"Bearer {getattr(self, 'token', '')}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _stop(s: Serve) -> None:
    parent = s.proc.pid
    s.kill()
    for pid in _workers_of(parent):  # never leave a worker behind, whatever the test did
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def serve(tmp_path):
    s = Serve(tmp_path)
    yield s
    _stop(s)


def test_serve_runs_cycles_and_ctrl_c_stops_api_and_worker(serve, tmp_path):
    with session_factory(serve.settings.sqlalchemy_url)() as session:
        project = make_project(session, serve.settings, tmp_path)
        label_with_oracle(session, serve.settings, project)
        pid = project.id
    cycle = serve.get(f"/api/projects/{pid}/cycles", method="POST")
    end = time.monotonic() + 240
    while time.monotonic() < end:
        c = serve.get(f"/api/cycles/{cycle['id']}")
        if c["status"] not in ("queued", "running"):
            break
        time.sleep(0.3)
    assert c["status"] == "succeeded", (c, (serve.data / "worker.log").read_text()[-3000:])
    assert c["metrics"]["regions"] == 3
    workers = _workers_of(serve.proc.pid)
    assert workers, "serve started no worker"
    serve.proc.send_signal(signal.SIGINT)
    assert serve.proc.wait(60) is not None
    assert _gone(workers, 30), "the worker outlived serve"
    assert "Cold shutdown" in (serve.data / "worker.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_worker_never_outlives_serve(serve, sig):
    workers = []
    end = time.monotonic() + 60
    while time.monotonic() < end and not workers:
        workers = _workers_of(serve.proc.pid)
        time.sleep(0.2)
    assert workers
    serve.proc.send_signal(sig)
    serve.proc.wait(60)
    assert _gone(workers, 40), f"worker {workers} still running after serve got {sig!r}"


def _wait_cycle(s: Serve, cycle_id: int, pred, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = s.get(f"/api/cycles/{cycle_id}")
        if pred(c):
            return c
        time.sleep(0.2)
    raise AssertionError(f"cycle {cycle_id}: {c}\n{(s.data / 'worker.log').read_text()[-3000:]}")


def test_kill_9_of_serve_mid_cycle_the_worker_dies_within_the_grace_and_the_cycle_is_requeued(tmp_path):
    grace = 5.0
    fast = dict(S4AL_WORKER_STOP_GRACE_SECONDS=str(grace), S4AL_HEARTBEAT_STALE_SECONDS="3",
                S4AL_REAPER_INTERVAL_SECONDS="1", S4AL_STALE_CYCLE_ACTION="requeue")
    first = Serve(tmp_path, **fast)
    second = None
    try:
        with session_factory(first.settings.sqlalchemy_url)() as session:
            project = make_project(session, first.settings, tmp_path, training={"iterations": 100_000})
            label_with_oracle(session, first.settings, project)
            pid = project.id
        cycle = first.get(f"/api/projects/{pid}/cycles", method="POST")
        _wait_cycle(first, cycle["id"], lambda c: c["phase"] == "train" and c["step"] > 0, 180)
        workers = _workers_of(first.proc.pid)
        assert len(workers) >= 2, "expected the worker and its busy pool child"
        killed = time.monotonic()
        first.kill()  # SIGKILL: serve cannot stop anything itself
        assert _gone(workers, grace + 10), f"worker {workers} still running {grace + 10} s after kill -9"
        took = time.monotonic() - killed
        # The worker notices within its 1 s parent check, then has `grace` seconds before SIGKILL.
        print(f"\nworker and pool gone {took:.1f} s after kill -9 of serve (grace {grace:.0f} s)")
        assert took <= grace + 2.5, f"the worker took {took:.1f} s to die (grace {grace} s)"
        second = Serve(tmp_path, **fast)  # the reaper of the new worker re-queues the orphaned cycle
        c = _wait_cycle(second, cycle["id"], lambda c: c["attempts"] == 2 and c["status"] == "running", 120)
        assert c["error"] is None
        second.get(f"/api/cycles/{cycle['id']}/cancel", method="POST")
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
