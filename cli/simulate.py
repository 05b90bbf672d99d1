"""`s4al simulate`: the active-learning loop against an oracle, several arms compared.

Torch and the engine are imported inside the command body: importing this module (which every `s4al`
invocation does) must stay fast and torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def simulate(
    dataset_dir: Annotated[Path, typer.Argument(help="Dataset folder (DESIGN §3) with ground-truth masks.")],
    out: Annotated[Path, Opt("--out", help="Folder for result.json and curve.png.")],
    cycles: Annotated[int, Opt(help="Active-learning cycles per arm.")] = 4,
    initial: Annotated[float, Opt(help="Share of train pixels labeled at the start (random).")] = 0.02,
    budget: Annotated[float, Opt(help="Share of train pixels the oracle labels per cycle (--budget-unit "
                                      "clicks: share of the clicks labeling all of them costs).")] = 0.02,
    budget_unit: Annotated[str, Opt(help="regions (--budget counts pixels) | clicks (--budget is spent in "
                                         "predicted clicks: cheaper regions buy more regions).")] = "regions",
    budget_per_image: Annotated[int | None, Opt(help="Regions per image per cycle (instead of --budget).")] =
        None,
    acquisition: Annotated[str, Opt(help="random | least_confidence | entropy | margin.")] = "entropy",
    acquisition_cost: Annotated[str, Opt(help="Weigh uncertainty by the predicted annotation cost: none | "
                                              "clicks | corrected (s4al and supervised arms).")] = "none",
    acquisition_cost_rule: Annotated[str, Opt(help="How the predicted cost weighs: ratio | below_median.")] =
        "ratio",
    class_balance: Annotated[bool, Opt(help="Rank regions with tail classes first.")] = False,
    mix: Annotated[str, Opt(help="classmix | balanced_classmix | cutmix | cowmix | cowout | none.")] =
        "classmix",
    model: Annotated[str | None, Opt(help="unet_small | lraspp_mobilenetv2 | deeplabv3plus_mobilenetv2 "
                                          "(default: the engine's, lraspp_mobilenetv2).")] = None,
    iterations: Annotated[int, Opt(help="Training iterations per cycle (N; full also runs 2N).")] = 6000,
    init: Annotated[str, Opt(help="pretrained (a fresh model each cycle) | previous (warm start).")] =
        "pretrained",
    iterations_after_first: Annotated[int | None, Opt(
        help="With --init previous: iterations of cycles 2.. (default: --iterations).")] = None,
    compare: Annotated[str, Opt(help="Other arms, comma-separated: random,supervised,full.")] =
        "random,supervised,full",
    region_kind: Annotated[str, Opt(help="grid | superpixel (SLIC).")] = "grid",
    region_size: Annotated[int, Opt(help="Grid cell side, or superpixel side, in pixels.")] = 8,
    annotation: Annotated[str, Opt(help="exact | dominant (a superpixel gets its majority class).")] =
        "exact",
    batch_size: Annotated[int, Opt(help="Labeled crops per step.")] = 8,
    unlabeled_batch_size: Annotated[int, Opt(help="Unlabeled crops per step (mixed in pairs).")] = 8,
    lr: Annotated[float | None, Opt(help="Learning rate (default: the model's).")] = None,
    seed: Annotated[int, Opt(help="First seed (initial regions, training).")] = 0,
    seeds: Annotated[int, Opt(help="Run every arm with this many seeds; report mean ± std.")] = 1,
    cost: Annotated[str, Opt(help="The curve's x axis: pixels | corrected | clicks.")] = "pixels",
    device: Annotated[str, Opt(help="auto | cpu | cuda.")] = "auto",
    threads: Annotated[int | None, Opt(help="torch CPU threads (default: torch's choice).")] = None,
    full_check: Annotated[bool, Opt(help="Also train full at 2N to show it converged.")] = True,
    full_iterations: Annotated[int | None, Opt(
        help="N of the full reference (and 2N) when the arms train shorter (default: --iterations).")] = \
        None,
    cache_dir: Annotated[str | None, Opt(help="Cache of full runs ($S4AL_CACHE_DIR or ~/.cache/s4al).")] =
        None,
    jobs: Annotated[int, Opt(help="Run the (arm, seed) runs in this many processes at once.")] = 1,
    pseudo_label: Annotated[str, Opt(help="argmax | pseudoseg (PseudoSeg's fused targets).")] = "argmax",
    tags: Annotated[str, Opt(help="none | all: oracle image-level tags for every train image.")] = "none",
    crop_size: Annotated[int | None, Opt(help="Training crop side (default: the model's).")] = None,
    base_size: Annotated[int | None, Opt(help="Long side images are resized to (default: the model's).")] =
        None,
) -> None:
    """Simulate active learning with an oracle annotator; compare arms; write result.json + curve.png."""
    from worker.simulate import SimulateConfig

    cfg = SimulateConfig(dataset=str(dataset_dir), out=str(out), cycles=cycles, initial=initial,
                         budget=budget, budget_per_image=budget_per_image, budget_unit=budget_unit,
                         acquisition=acquisition,
                         acquisition_cost=acquisition_cost, acquisition_cost_rule=acquisition_cost_rule,
                         class_balance=class_balance, mix=mix, model=model, iterations=iterations, init=init,
                         iterations_after_first=iterations_after_first,
                         compare=[a.strip() for a in compare.split(",") if a.strip()],
                         region_kind=region_kind, region_size=region_size, annotation=annotation,
                         crop_size=crop_size, base_size=base_size, batch_size=batch_size,
                         unlabeled_batch_size=unlabeled_batch_size, lr=lr, seed=seed, seeds=seeds,
                         cost=cost, device=device, full_check=full_check, full_iterations=full_iterations,
                         cache_dir=cache_dir, jobs=jobs, pseudo_label=pseudo_label, tags=tags)
    try:
        cfg.validate()  # bad arguments fail here, before torch trains anything
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _run_simulation(cfg, threads)


def _run_simulation(cfg, threads: int | None) -> None:
    import torch
    from tqdm import tqdm

    from worker.datasets import DatasetError
    from worker.simulate import simulate as run

    if threads:
        torch.set_num_threads(threads)

    def bar(title: str, total: int):
        state: dict = {}

        def progress(phase: str, step: int, count: int, losses: dict) -> None:
            if phase != "train":
                return
            if "bar" not in state:
                state["bar"] = tqdm(total=count, desc=title, leave=False, unit="it")
            state["bar"].update(step - state["bar"].n)
            if step % 25 == 0 and losses:
                state["bar"].set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k in ("sup", "unsup")})
            if step >= count:
                state["bar"].close()

        return progress

    try:
        run(cfg, report=lambda line: tqdm.write(line), bar=bar)
    except (DatasetError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {Path(cfg.out) / 'result.json'} and {Path(cfg.out) / 'curve.png'}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
