"""A Celery worker subprocess beside the API, for `s4al serve` and `s4al demo` in embedded mode.

It is the same worker a deployment runs (`celery -A worker.celery_app worker -Q gpu -c 1`), started with
the API's own settings as S4AL_* variables, so both sides see the same database, storage and broker. It
runs in its own process group: a Ctrl-C in the terminal reaches `serve` only, which then stops the
worker with a cold shutdown (the running cycle, if any, is interrupted; its message goes back to the
broker and the next start re-runs the cycle). If the worker dies on its own it is restarted.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from service.cycles import broker_url
from service.settings import Settings
from service.storage import private_file

log = logging.getLogger(__name__)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as its S4AL_* variable (paths made absolute: the worker may start elsewhere)."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, Path):
            value = value.resolve()
        env[f"S4AL_{name.upper()}"] = str(value)
    env["S4AL_DATABASE_URL"] = settings.sqlalchemy_url
    env["S4AL_BROKER_URL"] = broker_url(settings)
    return env


def worker_command(settings: Settings, name: str = "embedded") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", settings.cycle_queue,
            "--concurrency", "1", "--loglevel", "info", "--hostname", f"{name}@%h"]


class EmbeddedWorker:
    """Start, supervise (restart when it dies) and stop one worker subprocess."""

    def __init__(self, settings: Settings, log_path: Path | None = None, restart_delay: float = 2.0):
        self.settings = settings
        self.log_path = log_path or settings.data_dir / "worker.log"
        self.restart_delay = restart_delay
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("S4AL_")}
        env.update(settings_env(self.settings))
        env["S4AL_PARENT_PID"] = str(os.getpid())  # the worker exits if this process disappears
        with open(private_file(self.log_path), "ab") as out:
            self.proc = subprocess.Popen(worker_command(self.settings), env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def start(self) -> "EmbeddedWorker":
        _exit_on_sigterm()
        with self._lock:
            self._spawn()
        self._thread.start()
        return self

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            proc = self.proc
            rc = proc.wait()
            if self._stopping.is_set():
                return
            log.warning("the worker exited (code %s); restarting it in %.0fs (log: %s)", rc,
                        self.restart_delay, self.log_path)
            if self._stopping.wait(self.restart_delay):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._spawn()
                    self.restarts += 1

    def stop(self, timeout: float | None = None) -> int | None:
        """Cold shutdown (SIGQUIT): the worker stops now, without waiting for a cycle to finish; SIGKILL
        for it and its pool after `timeout` (default: the worker_stop_grace_seconds setting)."""
        timeout = self.settings.worker_stop_grace_seconds if timeout is None else timeout
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc, signal.SIGQUIT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(10)
        # The pool child is in the same group; make sure nothing of the worker outlives it.
        _signal_group(proc, signal.SIGKILL)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return proc.returncode

    def __enter__(self) -> "EmbeddedWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _exit_on_sigterm() -> None:
    """SIGTERM (a service manager, `kill`) unwinds like Ctrl-C, so `stop()` runs in a `finally`.

    uvicorn restores the handler it found and re-raises the signal once it has shut down; with the
    default handler the process would die right there, leaving the worker behind.
    """
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
