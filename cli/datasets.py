"""`s4al import` and `s4al export`: a dataset folder (DESIGN §3) into a project, and a project back out."""

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli import common


class MaskMode(StrEnum):
    none = "none"
    initial = "initial"
    oracle = "oracle"


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("export")(export)


def import_cmd(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (DESIGN §3), under S4AL_IMPORT_ROOT.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    masks: Annotated[MaskMode, typer.Option(help="masks/: initial labels, oracle ground truth, or none.")]
    = MaskMode.none,
    create: Annotated[bool, typer.Option(help="Create the project from classes.json if missing.")] = True,
) -> None:
    """Import a dataset folder; everything is checked first, and nothing is written on any error."""
    from service.importer import ImportFailed, import_dataset

    settings = common.settings()
    try:
        with common.session(settings) as session:
            summary = import_dataset(session, settings, directory, project, masks.value, create=create)
    except ImportFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(summary))


class ExportFormat(StrEnum):
    dataset = "dataset"
    coco = "coco"


class FillMode(StrEnum):
    none = "none"
    model = "model"


def export(project: str = typer.Argument(..., help="Project name or id."),
           out_dir: Path = typer.Argument(..., help="Folder to create (must be empty or absent)."),
           format: Annotated[ExportFormat, typer.Option(help="dataset: the folder layout s4al imports; "
                                                              "coco: COCO JSON with RLE masks.")]
           = ExportFormat.dataset,
           fill: Annotated[FillMode, typer.Option(help="model: fill unlabeled pixels with a cycle's "
                                                       "confident predictions.")] = FillMode.none,
           cycle: Annotated[int | None, typer.Option(help="--fill model: the cycle id (default: the "
                                                          "project's best by val mIoU).")] = None,
           min_confidence: Annotated[float, typer.Option(help="--fill model: lowest confidence kept, "
                                                              "in (0, 1].")] = 0.9) -> None:
    """Export a project in the dataset folder layout (classes.json, images/, masks/, splits/) or as
    COCO JSON with RLE masks; with --fill model also sources/ (0 unlabeled, 1 human, 2 model) and
    report.json."""
    from service.export import EXPORT_FORMATS, write_folder
    from service.fill import BadThreshold, Fill, check_threshold
    from service.storage import storage_for

    settings = common.settings()
    storage = storage_for(settings)
    with common.session(settings) as session:
        row = common.find_project(session, project)
        spec = None
        try:
            if fill == FillMode.model:
                threshold = check_threshold(min_confidence)
                spec = Fill(_fill_cycle(session, storage, settings, row, cycle), threshold)
            n = write_folder(EXPORT_FORMATS[format.value](session, storage, row, spec), out_dir)
        except (FileExistsError, BadThreshold) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"exported project {row.name!r}: {n} files into {out_dir}")
    if spec is not None:
        shares = spec.report()["shares"]
        typer.echo(f"filled with cycle {spec.cycle.number} (id {spec.cycle.id}) at confidence >= "
                   f"{spec.min_confidence}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))


def _fill_cycle(session, storage, settings, project, cycle_id: int | None):
    """The cycle to fill with, its predictions of every image computed here first when missing."""
    from service.model_files import NoModel, best_cycle, missing_predictions, require_model
    from service.models import Cycle

    cycle = best_cycle(session, project.id) if cycle_id is None else session.get(Cycle, cycle_id)
    try:
        if cycle is None or cycle.project_id != project.id:
            raise NoModel(f"project {project.name!r} has no cycle with a model yet" if cycle_id is None
                          else f"no cycle {cycle_id} in project {project.name!r}")
        require_model(cycle)
    except NoModel as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    missing = missing_predictions(session, storage, cycle)
    if missing:
        from worker.model_io import predict_cycle_images

        typer.echo(f"predicting {len(missing)} images with cycle {cycle.number} ...")
        done = predict_cycle_images(session, storage, cycle.id, missing, device=settings.device)
        if done["failed"]:
            typer.echo(f"error: {len(done['failed'])} images could not be read: {done['failed'][:3]}",
                       err=True)
            raise typer.Exit(1)
    return cycle
