"""PseudoSeg's step-time cost: ms per semi-supervised training step with `pseudo_label=argmax` vs
`pseudoseg` (same model, batch sizes, mix mode), and how long the post-cycle classifier-uncertainty pass
takes per image.

    .venv/bin/python bench/pseudoseg_speed.py [--model unet_small --size 64 --batch-size 8 --threads 2]
        [--mix classmix --tags all --rounds 3 --steps 30] [--out results/pseudoseg_speed.json]

Both run through the real `train()` (warm-up off); a step is timed from one progress callback to the
next, the first steps are dropped, and the two kinds alternate over `--rounds` so that load from other
processes hits both alike; medians are reported. `--tags all` gives every image its true classes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_speed import step_times, synthetic_pool  # noqa: E402

from worker.engine.pseudoseg_report import classifier_uncertainty, oracle_tags  # noqa: E402
from worker.engine.trainer import TrainConfig, resolve_device, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet_small")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=11)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--mix", default="classmix")
    ap.add_argument("--tags", choices=("none", "all"), default="all")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = synthetic_pool(64, args.size, args.classes)
    data.class_names = ["background"] + [f"c{i}" for i in range(1, args.classes)]
    data.tags = oracle_tags(data.labels) if args.tags == "all" else None

    def config(pseudo_label: str) -> TrainConfig:
        return TrainConfig(model=args.model, iterations=args.steps, batch_size=args.batch_size,
                           unlabeled_batch_size=args.batch_size, crop_size=args.size, mix=args.mix,
                           warmup_fraction=0.0, pseudo_label=pseudo_label, device=args.device)

    times: dict[str, list[float]] = {"argmax": [], "pseudoseg": []}
    for _ in range(args.rounds):
        for kind in times:
            wall_ms, _cpu_ms = step_times(config(kind), data, args.skip)
            times[kind] += wall_ms
    med = {k: statistics.median(v) for k, v in times.items()}
    result = train(config("pseudoseg"), data)
    start = time.perf_counter()
    classifier_uncertainty(result.teacher, result.pseudoseg, data.train, device=resolve_device(args.device))
    per_image = 1000 * (time.perf_counter() - start) / len(data.images)
    out = {"model": args.model, "size": args.size, "batch_size": args.batch_size, "mix": args.mix,
           "tags": args.tags, "device": result.device, "threads": torch.get_num_threads(),
           "steps_timed": {k: len(v) for k, v in times.items()},
           "ms_per_step": med, "ratio": med["pseudoseg"] / med["argmax"],
           "uncertainty_ms_per_image": per_image, "platform": platform.platform()}
    print(f"{args.model} {args.size}x{args.size}, batch {args.batch_size}+{args.batch_size}, {args.mix}, "
          f"tags {args.tags}, {result.device}, {out['threads']} threads")
    print(f"{'pseudo_label':<12} | {'ms/step (median)':>16} | {'steps timed':>11}")
    for kind in times:
        print(f"{kind:<12} | {med[kind]:>16.1f} | {len(times[kind]):>11}")
    print(f"ratio pseudoseg/argmax: {out['ratio']:.2f}")
    print(f"classifier uncertainty pass: {per_image:.2f} ms per image")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
