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


def export(project: str = typer.Argument(..., help="Project name or id."),
           out_dir: Path = typer.Argument(..., help="Folder to create (must be empty or absent).")) -> None:
    """Export a project in the dataset folder layout (classes.json, images/, masks/, splits/)."""
    from service.export import export_entries, write_folder
    from service.storage import storage_for

    settings = common.settings()
    with common.session(settings) as session:
        row = common.find_project(session, project)
        try:
            n = write_folder(export_entries(session, storage_for(settings), row), out_dir)
        except FileExistsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"exported project {row.name!r}: {n} files into {out_dir}")
