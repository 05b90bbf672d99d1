"""`s4al export PROJECT OUT_DIR`: write a project's images, assembled masks and classes to a folder."""

from pathlib import Path

import typer
from sqlalchemy import select


def export(project: str = typer.Argument(..., help="Project name or id."),
           out_dir: Path = typer.Argument(..., help="Folder to create (must be empty or absent).")) -> None:
    """Export a project in the dataset folder layout (classes.json, images/, masks/, splits/)."""
    from service.cli import _session, _settings
    from service.export import export_entries, write_folder
    from service.models import Project
    from service.storage import storage_for

    settings = _settings()
    with _session(settings) as session:
        row = session.scalar(select(Project).where(Project.name == project))
        if row is None and project.isdigit():
            row = session.get(Project, int(project))
        if row is None:
            typer.echo(f"error: no project named or numbered {project!r}", err=True)
            raise typer.Exit(1)
        try:
            n = write_folder(export_entries(session, storage_for(settings), row), out_dir)
        except FileExistsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"exported project {row.name!r}: {n} files into {out_dir}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
