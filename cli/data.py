"""`s4al data ...`: demo dataset generators. (no torch imported here)."""

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Generate demo datasets in the dataset folder layout.", no_args_is_help=True)


@data_app.command("fashion-scenes")
def fashion_scenes(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (DESIGN §3 layout).")],
    n_train: Annotated[int, typer.Option(help="Training scenes.")] = 600,
    n_val: Annotated[int, typer.Option(help="Validation scenes (unseen garments).")] = 100,
    size: Annotated[int, typer.Option(help="Scene side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a previous dataset in OUT_DIR.")] = False,
) -> None:
    """Scenes of 2-6 Fashion-MNIST garments on textured backgrounds, 11 classes, exact masks."""
    from worker.data.fashion_scenes import generate

    _run(generate, out_dir, n_train, n_val, size, seed, force)


@data_app.command("aerial-maps")
def aerial_maps(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (DESIGN §3 layout).")],
    n_train: Annotated[int, typer.Option(help="Training maps.")] = 200,
    n_val: Annotated[int, typer.Option(help="Validation maps.")] = 40,
    size: Annotated[int, typer.Option(help="Map side in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a previous dataset in OUT_DIR.")] = False,
) -> None:
    """Top-down maps: large smooth fields, forest and lakes; thin rivers and roads; small buildings."""
    from worker.data.aerial_maps import generate

    _run(generate, out_dir, n_train, n_val, size, seed, force)


@data_app.command("long-tail")
def long_tail(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (DESIGN §3 layout).")],
    n_train: Annotated[int, typer.Option(help="Training scenes.")] = 400,
    n_val: Annotated[int, typer.Option(help="Validation scenes.")] = 100,
    size: Annotated[int, typer.Option(help="Scene side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a previous dataset in OUT_DIR.")] = False,
) -> None:
    """Six shape classes whose frequencies halve from one class to the next (a long tail)."""
    from worker.data.long_tail import generate

    _run(generate, out_dir, n_train, n_val, size, seed, force)


def _run(generate, out_dir: Path, n_train: int, n_val: int, size: int, seed: int, force: bool) -> None:
    try:
        summary = generate(out_dir, n_train=n_train, n_val=n_val, size=size, seed=seed, force=force)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _echo(summary)


def _echo(summary: dict) -> None:
    size = summary["size"]
    typer.echo(f"wrote {summary['train']} train + {summary['val']} val scenes of {size}x{size} px "
               f"to {summary['out_dir']}")
    shares = ", ".join(f"{k} {v:.1%}" for k, v in summary["class_pixel_share"].items())
    typer.echo(f"pixel share per class: {shares}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
