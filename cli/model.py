"""`s4al model export|best` and `s4al predict`: a cycle's model as a file, and that file run on a folder.

Both run here, in-process (torch is imported only inside the commands): `model export` reads the cycle's
checkpoint from the storage; `predict` needs only the exported file and its sidecar, no service at all.
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli import common

model_app = typer.Typer(help="A cycle's model: export it, find the project's best.", no_args_is_help=True)


class Format(StrEnum):
    torchscript = "torchscript"
    onnx = "onnx"


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.command("predict")(predict)


@model_app.command("export")
def model_export(
    cycle_id: Annotated[int, typer.Argument(help="Cycle id (see `s4al cycle list PROJECT`).")],
    out: Annotated[Path, typer.Option(help="Model file to write; its sidecar goes to OUT.json.")],
    format: Annotated[Format, typer.Option(help="torchscript or onnx.")] = Format.onnx,
) -> None:
    """Write the cycle's teacher as TorchScript or ONNX, with a JSON sidecar (classes, input, metrics)."""
    import time

    from service.model_files import NoModel
    from service.storage import storage_for
    from worker.model_io import export_cycle_model

    settings = common.settings()
    t0 = time.perf_counter()
    with common.session(settings) as session:
        try:
            path = export_cycle_model(session, storage_for(settings), cycle_id, format.value, out)
        except (LookupError, NoModel) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.name}.json "
               f"in {time.perf_counter() - t0:.1f}s")


@model_app.command("best")
def model_best(project: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """The project's best cycle by validation mIoU (the one to export), as `id number mIoU`."""
    from service.model_files import best_cycle

    with common.session(common.settings()) as session:
        p = common.find_project(session, project)
        best = best_cycle(session, p.id)
        if best is None:
            typer.echo(f"error: project {p.name!r} has no cycle with a model yet", err=True)
            raise typer.Exit(1)
        miou = (best.metrics or {}).get("miou")
        typer.echo(f"cycle {best.number} (id {best.id})  mIoU {'-' if miou is None else f'{miou:.3f}'}")


def predict(
    model_file: Annotated[Path, typer.Argument(help="An exported model (.onnx or .torchscript.pt) with "
                                                    "its sidecar MODEL_FILE.json.")],
    images_dir: Annotated[Path, typer.Argument(help="Folder of images (png, jpg, ...).")],
    out: Annotated[Path, typer.Option(help="Output folder: masks/<stem>.png (class ids), "
                                           "confidence/<stem>.png.")],
    confidence: Annotated[bool, typer.Option(help="Also write the max softmax × 255 as 8-bit PNGs.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch (same-size neighbours).")] = 8,
    device: Annotated[str, typer.Option(help="cpu or cuda (TorchScript; ONNX uses CUDA when "
                                             "onnxruntime-gpu is installed).")] = "cpu",
) -> None:
    """Predict every image of a folder, streaming in batches; undecodable files are listed and skipped
    (exit code 1 at the end)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from worker.predict import ExportedModel, NotOurModel, list_images, predict_folder

    if not images_dir.is_dir():
        typer.echo(f"error: {images_dir} is not a folder", err=True)
        raise typer.Exit(2)
    try:
        model = ExportedModel(model_file, device=device)
    except NotOurModel as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    total = len(list_images(images_dir))
    t0 = time.perf_counter()
    with Progress("[bold]predict", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("predict", total=total)
        report = predict_folder(model, images_dir, out, confidence=confidence, batch_size=batch_size,
                                progress=lambda n: bar.update(task, completed=n))
    took = time.perf_counter() - t0
    typer.echo(f"predicted {report.predicted} images ({report.pixels / 1e6:.1f} Mpx) in {took:.1f}s "
               f"into {out}")
    if report.failed:
        typer.echo(f"{len(report.failed)} files could not be decoded and were skipped:", err=True)
        for name, why in report.failed:
            typer.echo(f"  {name}: {why}", err=True)
        raise typer.Exit(1)
