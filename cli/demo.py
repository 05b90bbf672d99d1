"""`s4al demo`: fashion-scenes, a project with its ground truth as oracle, the service and a worker, a
first cycle on CPU with a progress bar, then the annotation page's URL. Serves until Ctrl-C.

A project with no labels starts cold: its first cycle trains nothing and queues random regions. The demo
lets the oracle label those (the ground truth, through the annotators' own lease + submit path), so the
next cycle trains a model on CPU; the regions it queues, with its pre-labels, wait on the page.
"""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from cli import common
from cli.cycles import watch

DEMO_PROJECT = "fashion-scenes demo"
# Small enough for a laptop CPU: a cycle trains in a minute or two on 600 scenes of 64x64 px. The ImageNet
# encoder: on the first trained cycle's labels (240 random 16 px cells, 2.5% of the pixels), 300 steps
# supervised gave 12.9 val mIoU (seeds 0, 1: 11.2, 14.6) against unet_small's 10.2 (10.3, 10.1), at about
# 1.2x unet_small's CPU time per semi-supervised step (bench/semisup_diagnosis.py, bench/engine_speed.py).
DEMO_TRAINING = {"model": "lraspp_mobilenetv2", "iterations": 300, "batch_size": 8, "unlabeled_batch_size": 8,
                 "replay_size": 0, "mix": "classmix", "acquisition": "entropy", "budget": 240,
                 "seed": 0}
DEMO_REGION = {"kind": "grid", "size": 16}
# The loop runs itself: a quarter of a cycle's budget labeled, or an empty queue, starts the next cycle.
DEMO_AUTO_CYCLE = {"enabled": True, "after_labeled": 60, "when_queue_below": 1}


class Api:
    """The few calls the demo makes to its own service, over HTTP like any client."""

    def __init__(self, base: str, token: str):
        self.base, self.headers = base.rstrip("/"), {"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"null")

    def wait_up(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self.call("GET", "/api/health")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"the API at {self.base} did not come up")

    def run_cycle(self, project_id: int, label: str) -> dict:
        active = [c for c in self.call("GET", f"/api/projects/{project_id}/cycles")
                  if c["status"] in ("queued", "running")]
        cycle = active[0] if active else self.call("POST", f"/api/projects/{project_id}/cycles")
        typer.echo(f"\n{label}: cycle {cycle['number']}")
        return watch(lambda: self.call("GET", f"/api/cycles/{cycle['id']}"))


def ensure_dataset(settings) -> Path:
    from worker.data.fashion_scenes import generate

    folder = settings.data_dir / "datasets" / "fashion-scenes"
    if not (folder / "classes.json").is_file():
        typer.echo(f"building the fashion-scenes dataset in {folder} ...")
        summary = generate(folder, force=True)
        typer.echo(f"  {summary['train']} train + {summary['val']} val scenes of {summary['size']} px")
    return folder


def ensure_project(settings, folder) -> int:
    from sqlalchemy import select

    from service.importer import import_dataset
    from service.models import Project

    with common.session(settings) as session:
        project = session.scalar(select(Project).where(Project.name == DEMO_PROJECT))
        if project is not None:
            return project.id
        scoped = settings.model_copy(update={"import_root": folder.parent})
        summary = import_dataset(session, scoped, folder, DEMO_PROJECT, "oracle")
        project = session.get(Project, summary["project_id"])
        project.training = {**project.training, **DEMO_TRAINING}
        project.region = DEMO_REGION
        project.auto_cycle = DEMO_AUTO_CYCLE
        session.commit()
        typer.echo(f"project {DEMO_PROJECT!r}: {summary['train']} train + {summary['val']} val images, "
                   "ground truth kept as oracle")
        return project.id


def _labeled(settings, project_id: int) -> int:
    from sqlalchemy import func, select

    from service.models import Annotation, Image

    with common.session(settings) as session:
        return session.scalar(select(func.count()).select_from(Annotation).join(Image).where(
            Image.project_id == project_id)) or 0


def _require_free_port(host: str, port: int) -> None:
    # Otherwise the demo would wait on whatever already answers there (another s4al) and fail with 401.
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            typer.echo(f"error: {host}:{port} is not free ({exc.strerror}); pass --port or set S4AL_PORT",
                       err=True)
            raise typer.Exit(1) from None


def demo(
    port: Annotated[int | None, typer.Option(help="Default: S4AL_PORT.")] = None,
    serve: Annotated[bool, typer.Option(help="Keep serving after the first cycle (Ctrl-C stops).")] = True,
) -> None:
    """Fashion-scenes end to end on this machine: dataset, project, service + worker, a first cycle on
    CPU with a progress bar, then the URL of the annotation page where its regions wait."""
    import uvicorn

    from cli.embedded_worker import EmbeddedWorker
    from cli.server import ensure_admin_token
    from service.auth import create_token
    from service.cycles import broker_url
    from service.main import create_app
    from service.migrate import prepare_embedded

    settings = common.settings(port=port)
    _require_free_port(settings.host, settings.port)
    t0 = time.monotonic()
    prepare_embedded(settings)
    folder = ensure_dataset(settings)
    project_id = ensure_project(settings, folder)
    admin, _ = ensure_admin_token(settings)
    with common.session(settings) as session:
        annotator = create_token(session, "demo-annotator", "annotator")
    embedded = settings.broker_url is None
    worker = EmbeddedWorker(settings).start() if embedded else None
    if not embedded:
        typer.echo(f"broker {broker_url(settings)}: cycles run on the deployment's workers")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    try:
        api = Api(f"http://127.0.0.1:{settings.port}", admin)
        api.wait_up()
        typer.echo(f"service at {settings.base_url}" + (f", worker log {worker.log_path}" if worker else ""))
        if _labeled(settings, project_id) == 0:
            cold = api.run_cycle(project_id, "cold start (no labels yet: random regions)")
            if cold["status"] != "succeeded":
                raise typer.Exit(1)
            # With the auto-cycle rule on, these labels start the next cycle by themselves.
            done = api.call("POST", f"/api/projects/{project_id}/oracle")
            typer.echo(f"the oracle labeled those {done['labeled']} regions from the ground truth")
        first = api.run_cycle(project_id, "training on CPU")
        if first["status"] != "succeeded":
            raise typer.Exit(1)
        took = _duration(first)
        typer.echo(f"\nthe training cycle took {took:.0f}s on {first['metrics'].get('device', 'cpu')}; "
                   f"whole demo so far {time.monotonic() - t0:.0f}s")
        typer.echo(f"\nannotate its {first['metrics']['regions']} queued regions here:\n"
                   f"  {settings.base_url}/annotate/{project_id}#token={annotator}\n"
                   f"admin token: {admin}")
        typer.echo(_auto_cycle_line(api.call("GET", f"/api/projects/{project_id}/auto-cycle")))
        if serve:
            typer.echo("serving; Ctrl-C stops the service and the worker")
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping ...")
    finally:
        server.should_exit = True
        thread.join(10)
        if worker is not None:
            worker.stop()


def _auto_cycle_line(status: dict) -> str:
    if not status["enabled"]:
        return "the next cycle starts when an admin starts it (auto cycle is off)"
    rules = [f"{status['after_labeled']} regions are labeled"] if status["after_labeled"] else []
    if status["when_queue_below"]:
        rules.append("the queue is empty" if status["when_queue_below"] == 1
                     else f"fewer than {status['when_queue_below']} regions wait")
    return f"the next cycle starts by itself once {' or '.join(rules)} (see the dashboard)"


def _duration(c: dict) -> float:
    from datetime import datetime

    start, end = datetime.fromisoformat(c["started_at"]), datetime.fromisoformat(c["finished_at"])
    return (end - start).total_seconds()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
