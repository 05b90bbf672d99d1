"""Engine speed: ms per supervised vs semi-supervised training step, scoring vs plain inference.

    .venv/bin/python bench/engine_speed.py [--model unet_small --size 64 --batch-size 8 --threads 2]
        [--mix classmix] [--out results/engine_speed.json]

Both step kinds run through the real `train()` (warm-up off) with the same labeled and unlabeled batch
sizes; a step is timed from one progress callback to the next, the first steps are dropped, and the
two kinds alternate over `--rounds` so that load from other processes hits both alike; medians are
reported, on the wall clock and in process CPU time (with one thread, CPU time is what the work
costs; on a shared machine the wall clock also counts waiting for a core). Scoring is `score_pool`
(teacher forward, softmax, entropy, grid means, argmax read-back); plain inference is the same model
on the same batches with only the argmax read back (no softmax: the cheapest useful inference).

`--loader` measures the data path instead: training from PNG files (`--loader-width` x `--loader-height`)
with 0 and 2 loader workers, for unet_small at crop 64 and deeplab at crop 512, each file decoded for
every crop or read from decoded copies (cold: written as training first reads each file; warm: written
beforehand, as in every cycle after the first): steps per second and the share of the step spent waiting
for the next batch (target on a 2-core machine: <= 10% of a unet_small step with workers), and the
process CPU time of one crop read in the main process (without copies, and from warm ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from worker.engine.acquisition import score_pool
from worker.engine.cycle import CycleData, FilePool, Sample
from worker.engine.loader import CropDataset
from worker.engine.resample import training_size
from worker.engine.trainer import TrainConfig, train


def synthetic_pool(n: int, size: int, k: int, seed: int = 0, width: int | None = None) -> CycleData:
    """Images with a few coloured rectangles and their exact labels (content only matters for timing)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    width = width or size
    for _ in range(n):
        im = rng.integers(0, 80, (size, width, 3), dtype=np.uint8)
        lab = np.zeros((size, width), np.uint8)
        for c in rng.integers(1, k, 4):
            y, x = rng.integers(0, size * 3 // 4, 2)
            s = int(rng.integers(size // 8, size // 3))
            im[y:y + s, x:x + s] = rng.integers(80, 255, 3, dtype=np.uint8)
            lab[y:y + s, x:x + s] = c
        images.append(im)
        labels.append(lab)
    return CycleData(images, labels, [], [], k, [f"c{i}" for i in range(k)])


def file_samples(folder: Path, n: int, height: int, width: int, k: int) -> list[Sample]:
    """The same synthetic content written as PNG files (compress_level 1), to be read back lazily."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    mem = synthetic_pool(n, height, k, width=width)
    samples = []
    for i in range(n):
        PILImage.fromarray(mem.images[i]).save(folder / f"{i}.png", compress_level=1)
        PILImage.fromarray(mem.labels[i]).save(folder / f"{i}-label.png", compress_level=1)
        samples.append(Sample(str(folder / f"{i}.png"), str(folder / f"{i}-label.png")))
    return samples


def file_pool(samples: list[Sample], k: int, copies: str | None = None) -> CycleData:
    """A pool over the files; with `copies`, a folder of decoded copies (worker/engine/decoded.py)."""
    pool = FilePool([replace(s, cache=copies) for s in samples])
    return CycleData.from_pools(pool, FilePool([]), k, [f"c{i}" for i in range(k)])


def warm_copies(data: CycleData, base_size: int | None) -> None:
    """Decode every image and label once into its copy, as a first pass over the pool would."""
    pool = data.train
    for i in range(len(pool)):
        size = training_size(*pool.size(i), base_size)
        pool.window(i, size, slice(0, 1), slice(0, 1))


def crop_cpu_ms(data: CycleData, cfg: TrainConfig, n: int = 32) -> float:
    """Process CPU milliseconds per training crop read in this process (what a loaded machine's wall
    clock blurs): `n` crops of the pool's images in turn."""
    dataset = CropDataset(data.train, crop=cfg.crop, scale=cfg.scales, flip=cfg.flip, base_size=cfg.base)
    start = time.process_time()
    for seed in range(n):
        dataset[(seed % len(data.train), seed)]
    return 1000 * (time.process_time() - start) / n


def loader_rows(args, save) -> list[dict]:
    """Steps/s and data-wait share, 0 vs 2 loader workers, unet_small crop 64 and deeplab crop 512, each
    decoding every crop's file (copies "none"), or reading decoded copies that training writes as it
    goes ("cold", a fresh folder) or that a first pass wrote ("warm")."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="s4al-loader-") as tmp:
        samples = file_samples(Path(tmp), args.loader_images, args.loader_height, args.loader_width,
                               args.classes)
        for model, crop, batch in (("unet_small", 64, args.batch_size),
                                   ("deeplabv3plus_mobilenetv2", 512, args.deeplab_batch_size)):
            if model not in args.loader_models.split(","):
                continue
            for copies in args.loader_copies.split(","):
                for workers in (0, 2):
                    cfg = TrainConfig(model=model, crop_size=crop, batch_size=batch,
                                      unlabeled_batch_size=batch, iterations=args.loader_steps,
                                      warmup_fraction=0.0, device="cpu", loader_workers=workers, mix=args.mix)
                    folder = None if copies == "none" else tempfile.mkdtemp(prefix="copies-", dir=tmp)
                    data = file_pool(samples, args.classes, folder)
                    if copies == "warm":
                        warm_copies(data, cfg.base)
                    cpu_ms = None if copies == "cold" else crop_cpu_ms(data, cfg)  # cold: would warm them
                    result = train(cfg, data)
                    rows.append({"model": model, "crop": crop, "batch": f"{batch}+{batch}", "copies": copies,
                                 "workers": workers, "steps_per_s": args.loader_steps / result.seconds,
                                 "data_wait_share": result.data_wait_seconds / result.seconds,
                                 "crop_cpu_ms": cpu_ms, "load_average_1min": os.getloadavg()[0]})
                    r = rows[-1]
                    print(f"{model:<26} crop {crop:>4} batch {batch}+{batch} copies {copies:<4} "
                          f"workers {workers}: {r['steps_per_s']:.3f} steps/s, "
                          f"data wait {100 * r['data_wait_share']:.1f}%, "
                          f"{'-' if cpu_ms is None else f'{cpu_ms:.1f}'} CPU ms per crop "
                          f"(load {r['load_average_1min']:.1f})", flush=True)
                    save(rows)
    return rows


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def step_times(config: TrainConfig, data: CycleData, skip: int) -> tuple[list[float], list[float]]:
    """(wall ms, CPU ms) per step, first `skip` steps dropped."""
    stamps: list[tuple[float, float]] = []
    train(config, data, progress=lambda *_: stamps.append(_now()))
    pairs = list(zip(stamps[skip:], stamps[skip + 1:], strict=False))
    return [1000 * (b[0] - a[0]) for a, b in pairs], [1000 * (b[1] - a[1]) for a, b in pairs]


def rates(fn, n: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second) of fn() over n images."""
    w, c = _now()
    fn()
    w2, c2 = _now()
    return n / (w2 - w), n / max(c2 - c, 1e-9)


def plain_inference(model: torch.nn.Module, images: list[np.ndarray], batch: int) -> None:
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack(images[i:i + batch])).permute(0, 3, 1, 2).float().div_(255.0)
            model(x).argmax(1).to(torch.uint8).numpy()  # the class map, as a pre-label needs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet_small")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=11)
    ap.add_argument("--batch-size", type=int, default=8, help="labeled = unlabeled batch size")
    ap.add_argument("--mix", default="classmix")
    ap.add_argument("--steps", type=int, default=25, help="training steps per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pool", type=int, default=512, help="images scored per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/engine_speed.json")
    ap.add_argument("--loader", action="store_true", help="measure the data path (see the module doc)")
    ap.add_argument("--loader-images", type=int, default=16)
    ap.add_argument("--loader-width", type=int, default=2048)
    ap.add_argument("--loader-height", type=int, default=1024)
    ap.add_argument("--loader-steps", type=int, default=20)
    ap.add_argument("--deeplab-batch-size", type=int, default=2)
    ap.add_argument("--loader-models", default="unet_small,deeplabv3plus_mobilenetv2")
    ap.add_argument("--loader-copies", default="none,cold,warm",
                    help="decoded copies: none (decode every crop), cold (written as training reads), warm")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.loader:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written after every row: a deeplab row on a loaded CPU can take an hour.
        loader_rows(args, lambda rows: out.write_text(json.dumps({"config": vars(args), "loader": rows,
                                                                  "load_average": os.getloadavg()},
                                                                 indent=2)))
        print(f"wrote {out}")
        return
    data = synthetic_pool(max(args.pool, 64), args.size, args.classes)
    base = dict(model=args.model, batch_size=args.batch_size, unlabeled_batch_size=args.batch_size,
                crop_size=args.size, iterations=args.steps, warmup_fraction=0.0, device="cpu", log_every=1)
    skip = min(5, args.steps // 3)
    samples: dict[str, list[float]] = {k: [] for k in (
        "sup_wall", "sup_cpu", "semi_wall", "semi_cpu", "score_wall", "score_cpu", "infer_wall", "infer_cpu")}
    teacher = train(TrainConfig(**{**base, "iterations": 5}, mix="none"), data).teacher
    images = data.images[:args.pool]
    unlabeled = [np.full_like(y, 255) for y in data.labels[:args.pool]]

    def infer() -> None:
        plain_inference(teacher, images, args.batch_size)

    def score() -> None:
        score_pool(teacher, images, labels=unlabeled, metric="entropy", region_size=max(1, args.size // 4),
                   batch_size=args.batch_size)

    infer()  # warm-up: the first eval-mode passes build kernels and caches for these shapes
    score()
    for r in range(args.rounds):
        for kind, mix in (("sup", "none"), ("semi", args.mix)):
            wall, cpu = step_times(TrainConfig(**base, mix=mix, seed=r), data, skip)
            samples[f"{kind}_wall"] += wall
            samples[f"{kind}_cpu"] += cpu
        for kind, fn in (("infer", infer), ("score", score)):
            wall, cpu = rates(fn, len(images))
            samples[f"{kind}_wall"].append(wall)
            samples[f"{kind}_cpu"].append(cpu)
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = {}
    for clock in ("wall", "cpu"):
        rows[clock] = {
            "ms_per_supervised_step": med[f"sup_{clock}"],
            "ms_per_semi_supervised_step": med[f"semi_{clock}"],
            "semi_over_supervised": med[f"semi_{clock}"] / med[f"sup_{clock}"],
            "scoring_images_per_s": med[f"score_{clock}"],
            "inference_images_per_s": med[f"infer_{clock}"],
            "scoring_over_inference": med[f"score_{clock}"] / med[f"infer_{clock}"],
        }
    targets = {"semi_over_supervised": "<= 2.5", "scoring_over_inference": ">= 0.90"}
    print(f"engine speed: {args.model}, {args.size}x{args.size}, batch {args.batch_size}+{args.batch_size}, "
          f"mix {args.mix}, {args.threads} threads, {args.rounds} rounds (medians; wall clock and "
          f"process CPU time, which a loaded machine disturbs less)")
    print(f"{'measure':<30}{'wall':>12}{'cpu':>12}  target")
    for name in rows["wall"]:
        print(f"{name:<30}{rows['wall'][name]:>12.3f}{rows['cpu'][name]:>12.3f}  {targets.get(name, '')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": vars(args), "results": rows, "targets": targets,
                               "samples": samples,
                               "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                           "cpu": platform.processor() or platform.machine()}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
