"""`s4al simulate`: the active-learning loop against an oracle annotator, several arms, several seeds.

The oracle labels each selected region (its ground truth, or with `annotation="dominant"` its majority
class). For each seed, every arm starts from the same initial labels (random regions covering `initial`
of the train pixels) and adds `budget` per cycle (or `budget_per_image` regions per image), counted in
`budget_unit`: `regions` (`budget` is a share of the pool's pixels) or `clicks` (`budget` is a share of
the clicks that labeling the whole pool costs, spent in the model's predicted clicks):
- `s4al`: the chosen acquisition metric and mix mode;
- `random`: random regions, same mix (what the acquisition metric buys);
- `supervised`: the chosen acquisition, no unlabeled loss (what semi-supervision buys);
- `full`: every train pixel labeled, supervised, at N and 2N iterations (is the reference converged?),
  at the first seed, cached on disk (worker/simulate_full.py).
Row i of an arm reports the model trained in cycle i on the labels it had then, and what those labels
cost the annotator so far (worker/simulate_oracle.py); seeds are folded into mean ± std per cycle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from service.masks import IGNORE
from worker.simulate_full import cached_full, run_full
from worker.simulate_oracle import ANNOTATIONS, labeled_fraction, pool_clicks, reveal
from worker.simulate_report import COSTS, aggregate, format_table, plot_curve, targets

ARMS = ("s4al", "random", "supervised", "full")


@dataclass
class SimulateConfig:
    dataset: str
    out: str
    cycles: int = 4
    initial: float = 0.02
    budget: float = 0.02
    budget_per_image: int | None = None  # regions per image per cycle instead of the global share
    # regions | clicks: with clicks, each cycle's arms spend `budget` x the pool's TRUE total clicks
    # (what random regions covering that share of the pixels cost on average) in PREDICTED clicks; the
    # table still counts the true clicks, so a misprediction shows as a cost above or below it.
    budget_unit: str = "regions"
    acquisition: str = "entropy"
    # Cost-aware acquisition of the arms that use `acquisition` (s4al, supervised; not random):
    # none | clicks | corrected, weighed by ratio | below_median (worker/engine/predicted_cost.py).
    acquisition_cost: str = "none"
    acquisition_cost_rule: str = "ratio"
    class_balance: bool = False
    mix: str = "classmix"
    model: str | None = None  # None: the engine's default (TrainConfig.model)
    # The smallest N at which `full` is converged on fashion-scenes 64 (N vs 2N: 36.28 vs 36.41 mIoU).
    iterations: int = 6000
    init: str = "pretrained"  # pretrained: a fresh model each cycle | previous: warm start from the last
    iterations_after_first: int | None = None  # with init previous: fine-tuning steps of cycles 2..
    compare: list[str] = field(default_factory=lambda: ["random", "supervised", "full"])
    region_kind: str = "grid"
    region_size: int = 8
    annotation: str = "exact"  # exact | dominant (superpixels: their majority class, one click)
    crop_size: int | None = None  # None: the model's default (worker/engine/config.py)
    batch_size: int = 8
    unlabeled_batch_size: int = 8
    lr: float | None = None
    seed: int = 0
    seeds: int = 1  # every arm runs with seeds seed, seed+1, ...
    cost: str = "pixels"  # the curve's x axis: pixels | corrected | clicks
    device: str = "auto"
    full_check: bool = True  # also train `full` at 2N iterations
    # The reference's N when the arms train for fewer steps than convergence needs (a short protocol
    # still compares against what full supervision reaches); None: `iterations`.
    full_iterations: int | None = None
    cache_dir: str | None = None  # of the full runs; None: $S4AL_CACHE_DIR or ~/.cache/s4al
    jobs: int = 1  # (seed, arm) runs in this many processes at once (each with the caller's torch threads)
    base_size: int | None = None  # None: the model's default (worker/engine/config.py)
    pseudo_label: str = "argmax"  # argmax | pseudoseg: the targets of the arms that mix (s4al, random)
    tags: str = "none"  # none | all: oracle image-level tags (the ground truth's classes) for every image

    def __post_init__(self) -> None:
        if self.model is None:
            from worker.engine.config import TrainConfig

            self.model = TrainConfig.model

    def validate(self) -> None:
        """Every argument, before any data is read or any model trained."""
        from worker.engine.trainer import MIX_MODES

        if self.mix not in MIX_MODES:
            raise ValueError(f"unknown mix mode {self.mix!r}; expected one of {', '.join(MIX_MODES)}")
        for name in ("initial", "budget"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value <= 1.0):
                raise ValueError(f"--{name} must be in (0, 1], got {value!r}")
        positive = {"cycles": self.cycles, "jobs": self.jobs, "region-size": self.region_size,
                    "seeds": self.seeds}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        unknown = sorted(set(self.compare) - set(ARMS[1:]))
        if unknown:
            raise ValueError(f"unknown arm(s) in --compare: {', '.join(unknown)}; "
                             f"known: {', '.join(ARMS[1:])}")
        if self.tags not in ("none", "all"):
            raise ValueError(f"--tags must be none or all, got {self.tags!r}")
        if self.annotation not in ANNOTATIONS:
            raise ValueError(f"unknown annotation {self.annotation!r}; "
                             f"expected one of {', '.join(ANNOTATIONS)}")
        if self.annotation == "dominant" and self.region_kind != "superpixel":
            raise ValueError("--annotation dominant labels a superpixel with its majority class: "
                             "it needs --region-kind superpixel")
        if self.cost not in COSTS:
            raise ValueError(f"unknown cost currency {self.cost!r}; expected one of {', '.join(COSTS)}")
        if self.full_iterations is not None and self.full_iterations < 1:
            raise ValueError(f"--full-iterations must be >= 1, got {self.full_iterations}")
        if self.iterations_after_first is not None and self.iterations_after_first < 1:
            raise ValueError(f"--iterations-after-first must be >= 1, got {self.iterations_after_first}")
        if self.budget_unit == "clicks" and self.budget_per_image is not None:
            raise ValueError("--budget-unit clicks spends --budget as a share of the pool's clicks; "
                             "--budget-per-image counts regions")
        # The pool's clicks are counted once the data is read: any positive count checks the same.
        self.acquisition_config(1, pool_clicks=1).validate()  # metric, region kind and size, budget
        self.train_config(self.mix).validate()  # model name, init, batch sizes, crop size, lr

    def acquisition_config(self, cycle: int, seed: int | None = None, metric: str | None = None,
                           pool_clicks: int | None = None):
        """`pool_clicks`: the true clicks of labeling the whole pool (a click budget's 100%)."""
        from worker.engine.cycle import AcquisitionConfig

        per_image = self.budget_per_image
        metric = metric or self.acquisition
        # The random arm is the plain baseline: never cost-aware.
        cost = "none" if metric == "random" else self.acquisition_cost
        budget = {"per_image": per_image, "budget_fraction": None if per_image else self.budget}
        if self.budget_unit == "clicks":
            clicks = None if pool_clicks is None else max(1, round(self.budget * pool_clicks))
            budget = {"per_image": per_image, "budget_clicks": clicks}
        return AcquisitionConfig(metric=metric, region_kind=self.region_kind,
                                 region_size=self.region_size, class_balance=self.class_balance,
                                 seed=(self.seed if seed is None else seed) + cycle, cost=cost,
                                 cost_rule=self.acquisition_cost_rule, dominant=self.annotation == "dominant",
                                 budget_unit=self.budget_unit, **budget)

    def train_config(self, mix: str, iterations: int | None = None, seed: int | None = None,
                     init: str | None = None):
        from worker.engine.trainer import TrainConfig

        # Supervised-only runs have no pseudo-labels: PseudoSeg's extra losses would only change them.
        pseudo_label = self.pseudo_label if mix != "none" else "argmax"
        return TrainConfig(model=self.model, iterations=iterations or self.iterations, mix=mix,
                           init=init or self.init, crop_size=self.crop_size, base_size=self.base_size,
                           batch_size=self.batch_size, unlabeled_batch_size=self.unlabeled_batch_size,
                           lr=self.lr, seed=self.seed if seed is None else seed, device=self.device,
                           pseudo_label=pseudo_label)


def _load(cfg: SimulateConfig):
    from worker.datasets import read_dataset
    from worker.engine.cycle import CycleData

    ds = read_dataset(cfg.dataset, require_masks=True)
    train_stems, val_stems = ds.simulation_split()
    if not train_stems or not val_stems:
        raise ValueError(f"{cfg.dataset}: simulation needs train and val images "
                         f"(got {len(train_stems)} train, {len(val_stems)} val)")
    images, truth = ds.load(train_stems)
    val_images, val_truth = ds.load(val_stems)
    if cfg.region_kind == "superpixel":
        side = min(min(im.shape[:2]) for im in images)
        if cfg.region_size > side:
            raise ValueError(f"--region-size {cfg.region_size} gives fewer than one superpixel per image: "
                             f"the smallest train image is {side} px on its short side")
    empty = [np.full(t.shape, IGNORE, np.uint8) for t in truth]
    return CycleData(images, empty, val_images, val_truth, ds.num_classes, ds.class_names), truth


def _initial(cfg: SimulateConfig, data, truth, seed: int) -> tuple[list[np.ndarray], dict]:
    """The initial labels of one seed (random regions, no model: every pixel painted) and their cost."""
    from worker.engine.cycle import run_cycle

    labels = [lab.copy() for lab in data.labels]
    acq = cfg.acquisition_config(0, seed, metric="random")
    acq.budget_fraction, acq.per_image, acq.seed = cfg.initial, None, seed
    acq.budget_unit, acq.budget_clicks = "regions", None  # the initial labels are a share of the pixels
    cold = run_cycle(cfg.train_config("none"), data, acq)
    return labels, reveal(labels, truth, cold.regions, cfg.annotation).as_dict()


def simulate(cfg: SimulateConfig, report: Callable[[str], None] = print,
             bar: Callable[[str, int], Callable] | None = None) -> dict:
    """Run every arm for every seed; write `out/result.json` and `out/curve.png`; return the result dict.

    `bar(title, total)` returns a progress callback `(phase, step, total, losses)` (None: no bar).
    """
    import torch

    cfg.validate()
    data, truth = _load(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [cfg.seed + k for k in range(cfg.seeds)]
    starts = {s: _initial(cfg, data, truth, s) for s in seeds}
    pool = {"pixels": sum(t.size for t in truth),
            "clicks": pool_clicks(truth, data.images, cfg.region_kind, cfg.region_size, cfg.annotation)}
    report(f"{cfg.dataset}: {len(data.images)} train, {len(data.val_images)} val images, "
           f"{data.num_classes} classes; initial labels {labeled_fraction(starts[seeds[0]][0]):.2%} of train "
           f"pixels; labeling the whole pool costs {pool['clicks']} clicks; seeds {seeds}; "
           f"torch threads {torch.get_num_threads()}")
    result: dict = {"dataset": str(cfg.dataset), "config": asdict(cfg), "pool": pool, "runs": [],
                    "arms": {}, "full": None}
    arms = [a for a in ARMS[:3] if a == "s4al" or a in cfg.compare]
    full = cached_full(cfg, data, truth) if "full" in cfg.compare else None
    jobs = [(arm, s) for s in seeds for arm in arms]
    per_run: dict = {}
    if cfg.jobs > 1:
        per_run, computed = _parallel(cfg, jobs, starts, pool, full is None and "full" in cfg.compare, report,
                                      lambda done: _write_partial(out, done))
        full = full or computed
    else:
        for arm, s in jobs:
            per_run[arm, s] = _run_arm(cfg, arm, s, data, truth, starts[s], pool, report, bar)
            _write_partial(out, per_run)
        if full is None and "full" in cfg.compare:
            full = run_full(cfg, data, truth, report, bar)
    result["runs"] = [{"seed": s, "arms": {arm: per_run[arm, s] for arm in arms}} for s in seeds]
    result["arms"] = {arm: aggregate([per_run[arm, s] for s in seeds]) for arm in arms}
    result["full"] = full
    result["targets"] = targets(result)
    _write(out, result)
    plot_curve(result, out / "curve.png", cfg.cost)
    report(format_table(result))
    return result


def _run_arm(cfg: SimulateConfig, arm: str, seed: int, data, truth, start, pool: dict, report, bar) -> list:
    """The cycles of one arm for one seed, from that seed's initial labels."""
    from worker.engine.cycle import CycleData, run_cycle
    from worker.engine.pseudoseg_report import checkpoint_quality, format_quality, oracle_tags
    from worker.engine.trainer import resolve_device

    metric, mix = {"s4al": (cfg.acquisition, cfg.mix), "random": ("random", cfg.mix),
                   "supervised": (cfg.acquisition, "none")}[arm]
    tags = oracle_tags(truth) if cfg.tags == "all" else None
    labels = [lab.copy() for lab in start[0]]
    added, spent = dict(start[1]), dict(start[1])
    rows: list[dict] = []
    previous = None
    for cycle in range(1, cfg.cycles + 1):
        began = time.perf_counter()
        cycle_data = CycleData(data.images, labels, data.val_images, data.val_labels,
                               data.num_classes, data.class_names, tags=tags)
        iterations = cfg.iterations_after_first if cycle > 1 and cfg.init == "previous" else None
        train_cfg = cfg.train_config(mix, iterations=iterations, seed=seed + cycle)
        progress = bar(f"{arm} seed {seed} cycle {cycle}/{cfg.cycles}", train_cfg.iterations) if bar else None
        acquisition = cfg.acquisition_config(cycle, seed, metric, pool_clicks=pool["clicks"])
        res = run_cycle(train_cfg, cycle_data, acquisition, progress=progress, init_checkpoint=previous)
        previous = res.checkpoint if cfg.init == "previous" else None
        rows.append({"cycle": cycle, "seed": seed, "labeled_fraction": labeled_fraction(labels),
                     "corrected_fraction": spent["corrected"] / pool["pixels"], "clicks": spent["clicks"],
                     "clicks_fraction": spent["clicks"] / max(1, pool["clicks"]), "added": added,
                     "miou": res.metrics["miou"], "per_class_iou": res.metrics["per_class_iou"],
                     "iterations": train_cfg.iterations, "seconds": round(time.perf_counter() - began, 2),
                     "train_seconds": round(res.metrics["train_seconds"], 2),
                     "losses": res.metrics["losses"]})
        r = rows[-1]
        report(f"{arm:<11} seed {seed} cycle {cycle}  labeled {r['labeled_fraction']:7.2%}  corrected "
               f"{r['corrected_fraction']:7.2%}  clicks {r['clicks']:>7}  mIoU {100 * r['miou']:6.2f}  "
               f"{r['seconds']:7.1f}s")
        quality = checkpoint_quality(res.checkpoint, data.images, labels, truth, data.num_classes,
                                     tags=tags, device=resolve_device(cfg.device))
        r["pseudo_label_miou"] = quality and {k: quality[k] for k in ("argmax", "pseudoseg")}
        if quality:
            report(f"{'':<11} {format_quality(quality)}")
        # The annotator sees this cycle's prediction as the pre-label of the regions it selected.
        added = reveal(labels, truth, res.regions, cfg.annotation).as_dict()
        if "selected_predicted_clicks" in res.metrics:  # beside the true clicks: the misprediction
            added["predicted_clicks"] = res.metrics["selected_predicted_clicks"]
        spent = {k: spent[k] + added[k] for k in spent}
    return rows


def _job(cfg: SimulateConfig, arm: str, seed: int | None, start, pool: dict, threads: int):
    """One (arm, seed) run, or `full`, in a child process: reload the data, run, return the rows."""
    import torch

    torch.set_num_threads(threads)
    data, truth = _load(cfg)

    def report(line: str) -> None:
        print(line, flush=True)

    if arm == "full":
        return (arm, seed), run_full(cfg, data, truth, report, None)
    return (arm, seed), _run_arm(cfg, arm, seed, data, truth, start, pool, report, None)


def _parallel(cfg: SimulateConfig, jobs: list, starts: dict, pool: dict, with_full: bool, report,
              saved: Callable[[dict], None]):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    # `full` first: its N vs 2N check says early whether N is enough.
    work = ([("full", None)] if with_full else []) + jobs
    threads = torch.get_num_threads()
    report(f"running {len(work)} runs in {cfg.jobs} processes, {threads} torch thread(s) each")
    with ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn")) as executor:
        futures = [executor.submit(_job, cfg, arm, s, None if s is None else starts[s], pool, threads)
                   for arm, s in work]
        done = {}
        for future in as_completed(futures):
            key, rows = future.result()
            done[key] = rows
            saved({k: v for k, v in done.items() if k[0] != "full"})
    full = done.pop(("full", None), None)
    return done, full


def _write_partial(out: Path, per_run: dict) -> None:
    """The (arm, seed) runs finished so far, so that an interrupted simulation keeps them."""
    runs = [{"arm": arm, "seed": seed, "rows": rows} for (arm, seed), rows in per_run.items()]
    tmp = out / "partial.json.tmp"
    tmp.write_text(json.dumps(runs, indent=1, default=_none_for_nan))
    tmp.replace(out / "partial.json")


def _write(out: Path, result: dict) -> None:
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False, default=_none_for_nan))
    tmp.replace(out / "result.json")


def _none_for_nan(value):
    raise TypeError(f"not JSON serialisable: {value!r}")
