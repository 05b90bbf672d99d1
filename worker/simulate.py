"""`s4al simulate`: the active-learning loop against an oracle annotator, several arms in one run.

The oracle reveals the ground-truth pixels of each selected region. Every arm starts from the same
initial labels (random grid regions covering `initial` of the train pixels) and adds `budget` per cycle:
- `s4al`: the chosen acquisition metric and mix mode;
- `random`: random regions, same mix (what the acquisition metric buys);
- `supervised`: the chosen acquisition, no unlabeled loss (what semi-supervision buys);
- `full`: every train pixel labeled, supervised, at N and 2N iterations (is the reference converged?).
Row i of an arm reports the model trained in cycle i on the labels it had then.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from service.masks import IGNORE

ARMS = ("s4al", "random", "supervised", "full")


@dataclass
class SimulateConfig:
    dataset: str
    out: str
    cycles: int = 4
    initial: float = 0.02
    budget: float = 0.02
    acquisition: str = "entropy"
    mix: str = "classmix"
    model: str = "unet_small"
    # The smallest N at which `full` is converged on fashion-scenes 64 (N vs 2N: 36.28 vs 36.41 mIoU).
    iterations: int = 6000
    compare: list[str] = field(default_factory=lambda: ["random", "supervised", "full"])
    region_size: int = 8
    batch_size: int = 8
    unlabeled_batch_size: int = 8
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    full_check: bool = True  # also train `full` at 2N iterations
    jobs: int = 1  # arms run in this many processes at once (each with the caller's torch threads)
    # --- PseudoSeg ---
    pseudo_label: str = "argmax"  # argmax | pseudoseg: the targets of the arms that mix (s4al, random)
    tags: str = "none"  # none | all: oracle image-level tags (the ground truth's classes) for every image
    # --- end PseudoSeg ---

    def validate(self) -> None:
        """Every argument, before any data is read or any model trained."""
        from worker.engine.acquisition import check_metric
        from worker.engine.trainer import MIX_MODES

        check_metric(self.acquisition)
        if self.mix not in MIX_MODES:
            raise ValueError(f"unknown mix mode {self.mix!r}; expected one of {', '.join(MIX_MODES)}")
        for name in ("initial", "budget"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value <= 1.0):
                raise ValueError(f"--{name} must be in (0, 1], got {value!r}")
        if self.cycles < 1:
            raise ValueError(f"--cycles must be >= 1, got {self.cycles}")
        unknown = sorted(set(self.compare) - set(ARMS[1:]))
        if unknown:
            raise ValueError(f"unknown arm(s) in --compare: {', '.join(unknown)}; "
                             f"known: {', '.join(ARMS[1:])}")
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.region_size < 1:
            raise ValueError(f"--region-size must be >= 1, got {self.region_size}")
        if self.tags not in ("none", "all"):
            raise ValueError(f"--tags must be none or all, got {self.tags!r}")
        self.train_config(self.mix).validate()  # model name, batch sizes, lr

    def train_config(self, mix: str, iterations: int | None = None, seed_offset: int = 0):
        from worker.engine.trainer import TrainConfig

        # Supervised-only runs have no pseudo-labels: PseudoSeg's extra losses would only change them.
        pseudo_label = self.pseudo_label if mix != "none" else "argmax"
        return TrainConfig(model=self.model, iterations=iterations or self.iterations, mix=mix,
                           batch_size=self.batch_size, unlabeled_batch_size=self.unlabeled_batch_size,
                           lr=self.lr, seed=self.seed + seed_offset, device=self.device,
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
    empty = [np.full(t.shape, IGNORE, np.uint8) for t in truth]
    return CycleData(images, empty, val_images, val_truth, ds.num_classes, ds.class_names), truth


def _reveal(labels: list[np.ndarray], truth: list[np.ndarray], regions) -> None:
    """The oracle: copy ground truth into the selected regions (superpixels: only their own pixels)."""
    for r in regions:
        box = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
        if r.mask is None:
            labels[r.image_index][box] = truth[r.image_index][box]
        else:
            labels[r.image_index][box][r.mask] = truth[r.image_index][box][r.mask]


def _fraction(labels: list[np.ndarray]) -> float:
    return sum(int((lab != IGNORE).sum()) for lab in labels) / sum(lab.size for lab in labels)


def simulate(cfg: SimulateConfig, report: Callable[[str], None] = print,
             bar: Callable[[str, int], Callable] | None = None) -> dict:
    """Run every arm; write `out/result.json` and `out/curve.png`; return the result dict.

    `bar(title, total)` returns a progress callback `(phase, step, total, losses)` (None: no bar).
    """
    import torch

    from worker.engine.cycle import AcquisitionConfig, run_cycle
    from worker.engine.pseudoseg_report import oracle_tags

    cfg.validate()
    data, truth = _load(cfg)
    tags = oracle_tags(truth) if cfg.tags == "all" else None  # PseudoSeg
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # The same initial labels for every arm: random cells covering `initial` of the train pixels.
    initial = [lab.copy() for lab in data.labels]
    seed_regions = run_cycle(cfg.train_config("none"), data, AcquisitionConfig(
        metric="random", region_size=cfg.region_size, budget_fraction=cfg.initial, seed=cfg.seed))
    _reveal(initial, truth, seed_regions.regions)
    report(f"{cfg.dataset}: {len(data.images)} train, {len(data.val_images)} val images, "
           f"{data.num_classes} classes; initial labels {_fraction(initial):.2%} of train pixels; "
           f"torch threads {torch.get_num_threads()}")
    result: dict = {"dataset": str(cfg.dataset), "config": asdict(cfg), "arms": {}, "full": None}
    arms = [a for a in ARMS[:3] if a == "s4al" or a in cfg.compare]
    if cfg.jobs > 1:  # arms are independent: one process each, results gathered in arm order
        result.update(_parallel(cfg, arms, initial, report))
        _write(out, result)
    else:
        for arm in arms:
            result["arms"][arm] = []
            _run_arm(cfg, arm, data, truth, initial, tags, report, bar, result["arms"][arm],
                     lambda: _write(out, result))
    if "full" in cfg.compare and cfg.jobs <= 1:
        result["full"] = _full(cfg, data, truth, report, bar)
    _write(out, result)
    plot_curve(result, out / "curve.png")
    report(format_table(result))
    return result


def _run_arm(cfg: SimulateConfig, arm: str, data, truth, initial, tags, report, bar, rows: list,
             saved: Callable[[], None] = lambda: None) -> list:
    """The cycles of one arm from the initial labels, appended to `rows`; `saved()` after each."""
    from worker.engine.cycle import AcquisitionConfig, CycleData, run_cycle
    from worker.engine.pseudoseg_report import checkpoint_quality, format_quality
    from worker.engine.trainer import resolve_device

    metric, mix = {"s4al": (cfg.acquisition, cfg.mix), "random": ("random", cfg.mix),
                   "supervised": (cfg.acquisition, "none")}[arm]
    labels = [lab.copy() for lab in initial]
    for cycle in range(1, cfg.cycles + 1):
        start = time.perf_counter()
        cycle_data = CycleData(data.images, labels, data.val_images, data.val_labels,
                               data.num_classes, data.class_names, tags=tags)
        acq = AcquisitionConfig(metric=metric, region_size=cfg.region_size, budget_fraction=cfg.budget,
                                seed=cfg.seed + cycle)
        progress = bar(f"{arm} cycle {cycle}/{cfg.cycles}", cfg.iterations) if bar else None
        res = run_cycle(cfg.train_config(mix, seed_offset=cycle), cycle_data, acq, progress=progress)
        rows.append({"cycle": cycle, "labeled_fraction": _fraction(labels), "miou": res.metrics["miou"],
                     "per_class_iou": res.metrics["per_class_iou"],
                     "seconds": round(time.perf_counter() - start, 2),
                     "train_seconds": round(res.metrics["train_seconds"], 2),
                     "losses": res.metrics["losses"]})
        report(f"{arm:<11} cycle {cycle}  labeled {rows[-1]['labeled_fraction']:7.2%}  "
               f"mIoU {100 * rows[-1]['miou']:6.2f}  {rows[-1]['seconds']:7.1f}s")
        # PseudoSeg: pseudo-label mIoU on the pixels unlabeled in this cycle's training.
        quality = checkpoint_quality(res.checkpoint, data.images, labels, truth, data.num_classes,
                                     tags=tags, device=resolve_device(cfg.device))
        rows[-1]["pseudo_label_miou"] = quality and {k: quality[k] for k in ("argmax", "pseudoseg")}
        if quality:
            report(f"{'':<11} {format_quality(quality)}")
        _reveal(labels, truth, res.regions)
        saved()
    return rows


def _arm_job(cfg: SimulateConfig, arm: str, initial: list[np.ndarray], threads: int) -> tuple[str, object]:
    """One arm (or `full`) in a child process: reload the data, run, return the rows."""
    import torch

    torch.set_num_threads(threads)
    data, truth = _load(cfg)
    tags = None
    if cfg.tags == "all":
        from worker.engine.pseudoseg_report import oracle_tags

        tags = oracle_tags(truth)

    def report(line: str) -> None:
        print(line, flush=True)

    if arm == "full":
        return arm, _full(cfg, data, truth, report, None)
    return arm, _run_arm(cfg, arm, data, truth, initial, tags, report, None, [])


def _parallel(cfg: SimulateConfig, arms: list[str], initial: list[np.ndarray], report) -> dict:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    # `full` first: its N vs 2N check says early whether N is enough.
    jobs = (["full"] if "full" in cfg.compare else []) + arms
    threads = torch.get_num_threads()
    report(f"running {len(jobs)} arms in {cfg.jobs} processes, {threads} torch thread(s) each")
    with ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_arm_job, cfg, arm, initial, threads) for arm in jobs]
        done = dict(f.result() for f in futures)
    return {"arms": {arm: done[arm] for arm in arms}, "full": done.get("full")}


def _full(cfg: SimulateConfig, data, truth, report, bar) -> dict:
    from worker.engine.cycle import AcquisitionConfig, CycleData, run_cycle

    full_data = CycleData(data.images, [t.copy() for t in truth], data.val_images, data.val_labels,
                          data.num_classes, data.class_names)
    runs = {}
    for n in ([cfg.iterations, 2 * cfg.iterations] if cfg.full_check else [cfg.iterations]):
        start = time.perf_counter()
        progress = bar(f"full {n} it", n) if bar else None
        res = run_cycle(cfg.train_config("none", iterations=n), full_data,
                        AcquisitionConfig(metric="random", region_size=cfg.region_size, budget_regions=1),
                        progress=progress)
        seconds = round(time.perf_counter() - start, 2)
        runs[n] = {"iterations": n, "miou": res.metrics["miou"], "seconds": seconds,
                   "per_class_iou": res.metrics["per_class_iou"]}
        report(f"full        {n} iterations  mIoU {100 * runs[n]['miou']:6.2f}  {runs[n]['seconds']:7.1f}s")
    best = runs[max(runs)]  # the longest run is the reference
    return {"miou": best["miou"], "per_class_iou": best["per_class_iou"], "iterations": best["iterations"],
            "labeled_fraction": 1.0, "runs": list(runs.values()),
            "converged_within_1_point": (abs(runs[cfg.iterations]["miou"] - runs[2 * cfg.iterations]["miou"])
                                         <= 0.01) if cfg.full_check else None}


def _write(out: Path, result: dict) -> None:
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False, default=_none_for_nan))
    tmp.replace(out / "result.json")


def _none_for_nan(value):
    raise TypeError(f"not JSON serialisable: {value!r}")


def format_table(result: dict) -> str:
    arms = result["arms"]
    full = result.get("full")
    cycles = max(len(rows) for rows in arms.values())
    head = f"{'cycle':>5} " + "".join(f"| {a:>26} " for a in arms)
    sub = f"{'':>5} " + "".join(f"| {'labeled %':>9} {'mIoU':>6} {'s':>7}  " for _ in arms)
    lines = [head, sub, "-" * len(sub)]
    for i in range(cycles):
        cells = []
        for rows in arms.values():
            r = rows[i] if i < len(rows) else None
            text = "" if r is None else \
                f"{100 * r['labeled_fraction']:>9.2f} {100 * r['miou']:>6.2f} {r['seconds']:>7.1f}  "
            cells.append(f"| {text:<26}")
        lines.append(f"{i + 1:>5} " + "".join(cells))
    if full:
        runs = ", ".join(f"{100 * r['miou']:.2f} at {r['iterations']} it" for r in full["runs"])
        lines.append(f"full supervision (100% labeled): mIoU {runs}")
        s4al = arms["s4al"]
        share = max(r["miou"] for r in s4al) / full["miou"] if full["miou"] else math.nan
        best = max(s4al, key=lambda r: r["miou"])
        lines.append(f"s4al best: {100 * best['miou']:.2f} mIoU = {100 * share:.1f}% of full "
                     f"with {100 * best['labeled_fraction']:.2f}% of pixels labeled")
    return "\n".join(lines)


def plot_curve(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for arm, rows in result["arms"].items():
        xs, ys = [100 * r["labeled_fraction"] for r in rows], [100 * r["miou"] for r in rows]
        ax.plot(xs, ys, marker="o", label=arm)
    if result.get("full"):
        level = 100 * result["full"]["miou"]
        ax.axhline(level, color="k", linestyle="--", label=f"full supervision ({level:.1f})")
        ax.axhline(0.95 * level, color="gray", linestyle=":", label="95% of full")
    ax.set_xlabel("labeled pixels (%)")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(Path(result["dataset"]).name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
