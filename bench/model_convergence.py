"""Full-supervision convergence of each model: val mIoU after N and 2N iterations, every train pixel labeled.

    .venv/bin/python bench/model_convergence.py DATASET --model lraspp_mobilenetv2 --iterations 500 \
        [--lr 0.01] [--threads 1] [--out results/convergence_lraspp.json]

Trains with `train()` (mix none, the model's default lr and scales unless given), evaluates the EMA
teacher on the dataset's val split, and reports mIoU, seconds and process CPU seconds per run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from worker.datasets import read_dataset
from worker.engine.cycle import evaluate
from worker.engine.metrics import miou
from worker.engine.trainer import TrainConfig, train


class _Data:
    def __init__(self, images, labels, k):
        self.images, self.labels, self.num_classes = images, labels, k


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--model", default="unet_small")
    p.add_argument("--iterations", type=int, default=500, help="N; runs N and 2N")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = read_dataset(args.dataset, require_masks=True)
    train_stems, val_stems = ds.simulation_split()
    images, truth = ds.load(train_stems)
    val_images, val_truth = ds.load(val_stems)
    runs = []
    for n in (args.iterations, 2 * args.iterations):
        cfg = TrainConfig(model=args.model, iterations=n, mix="none", lr=args.lr, seed=args.seed,
                          device="cpu")
        wall, cpu = time.perf_counter(), time.process_time()
        res = train(cfg, _Data(images, truth, ds.num_classes))
        value = miou(evaluate(res.teacher, val_images, val_truth, ds.num_classes))
        runs.append({"model": args.model, "iterations": n, "lr": cfg.learning_rate, "val_miou": value,
                     "seconds": round(time.perf_counter() - wall, 1),
                     "cpu_seconds": round(time.process_time() - cpu, 1)})
        print(f"{args.model:<20} lr {cfg.learning_rate:g} {n:>6} it  val mIoU {100 * value:5.2f}  "
              f"{runs[-1]['seconds']:.0f} s ({runs[-1]['cpu_seconds']:.0f} s CPU)", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
