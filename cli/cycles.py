"""`s4al cycle start|list|show` and `s4al oracle`. No torch here: cycles run in a worker.

`cycle start` and `oracle` work on the database directly (like `token` and `import`), so they need no
running API, only a worker listening to the broker.
"""

import time
from collections.abc import Callable
from typing import Annotated

import typer

from cli import common

cycle_app = typer.Typer(help="Cycles: start one (and watch it), list a project's, show one.",
                        no_args_is_help=True)
FINAL = ("succeeded", "failed", "cancelled")


def cycle_line(c: dict) -> str:
    m = c.get("metrics") or {}
    miou = f"mIoU {m['miou']:.3f}" if m.get("miou") is not None else "mIoU -"
    frac = f"labeled {m['labeled_fraction']:.1%}" if m.get("labeled_fraction") is not None else ""
    regions = f"{m['regions']} regions queued" if "regions" in m else ""
    took = ""
    if c.get("started_at") and c.get("finished_at"):
        took = f"{_seconds(c['finished_at']) - _seconds(c['started_at']):.1f}s"
    parts = [f"cycle {c['number']} (id {c['id']})", c["status"], frac, miou, regions, took]
    if c["status"] in ("queued", "running") and c.get("phase"):
        parts.append(f"{c['phase']} {c['step']}/{c['total']}")
    return "  ".join(p for p in parts if p)


def _seconds(ts) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(ts) if isinstance(ts, str) else ts).timestamp()


def watch(fetch: Callable[[], dict], interval: float = 0.5, echo=typer.echo) -> dict:
    """Show a progress bar (phase, step/total, loss, ETA) until the cycle ends; returns its last state."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("queued", total=None, info="waiting for a worker")
        while True:
            c = fetch()
            if c["status"] in FINAL:
                if c["status"] == "succeeded":
                    total = bar.tasks[0].total or c["total"] or 1
                    bar.update(task, description="done", completed=total, total=total, info="")
                break
            if c["status"] == "running" and c.get("phase"):
                info = []
                if c.get("loss") is not None:
                    info.append(f"loss {c['loss']:.3f}")
                if c.get("eta_seconds") is not None:
                    info.append(f"ETA {c['eta_seconds']:.0f}s")
                bar.update(task, description=c["phase"], completed=c["step"], total=c["total"] or None,
                           info="  ".join(info))
            time.sleep(interval)
    echo(cycle_line(c))
    if c.get("error"):
        echo(c["error"].splitlines()[0], err=True)
    return c


def _public(cycle) -> dict:
    from service.schemas.cycle import CyclePublic

    return CyclePublic.model_validate(cycle).model_dump(mode="json")


@cycle_app.command("start")
def cycle_start(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    wait: Annotated[bool, typer.Option(help="Show a progress bar until the cycle ends.")] = False,
) -> None:
    """Queue the project's next cycle for a worker (409-like error while one is active)."""
    from service.cycles import CycleConflict, create_cycle, send_run_cycle
    from service.models import Cycle

    settings = common.settings()
    with common.session(settings) as session:
        p = common.find_project(session, project)
        try:
            cycle = create_cycle(session, p)
        except CycleConflict as exc:
            typer.echo(f"not started: {exc}", err=True)
            raise typer.Exit(1) from exc
        send_run_cycle(settings, cycle.id)
        typer.echo(f"cycle {cycle.number} (id {cycle.id}) of {p.name!r} queued")
        if not wait:
            return

        def fetch() -> dict:
            session.expire_all()
            return _public(session.get(Cycle, cycle.id))

        final = watch(fetch)
    if final["status"] != "succeeded":
        raise typer.Exit(1)


@cycle_app.command("list")
def cycle_list(project: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """One line per cycle of the project: status, labeled share, mIoU, regions queued, duration."""
    from service.cycles import project_cycles

    with common.session(common.settings()) as session:
        p = common.find_project(session, project)
        cycles = list(project_cycles(session, p.id))
        if not cycles:
            typer.echo(f"project {p.name!r} has no cycle yet (`s4al cycle start {p.name}`)")
        for c in cycles:
            typer.echo(cycle_line(_public(c)))


@cycle_app.command("show")
def cycle_show(cycle_id: int) -> None:
    """Everything about one cycle, as JSON."""
    import json

    from service.models import Cycle

    with common.session(common.settings()) as session:
        c = session.get(Cycle, cycle_id)
        if c is None:
            typer.echo(f"no cycle {cycle_id}", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(_public(c), indent=2))


def oracle(
    project: Annotated[str, typer.Argument(help="Project name or id (imported with --masks oracle).")],
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many regions; default all.")] = None,
) -> None:
    """Label queued regions from the ground truth, through the annotators' lease + submit path."""
    from service.oracle import NoGroundTruth, run_oracle

    settings = common.settings()
    with common.session(settings) as session:
        p = common.find_project(session, project)
        try:
            result = run_oracle(session, settings, p.id, limit)
        except NoGroundTruth as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"oracle labeled {result.labeled} regions of {p.name!r}; {result.remaining} still queued")


def register(app: typer.Typer) -> None:
    app.add_typer(cycle_app, name="cycle")
    app.command("oracle")(oracle)
