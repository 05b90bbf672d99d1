"""Why can the unsupervised term pull a model below supervised-only when labels are few?

Trains arms (TrainConfig overrides) from the same few labels (random grid cells covering `--labeled`
of the train pixels, one draw per seed) and, every `--probe` steps, looks at the EMA teacher: val mIoU,
and the quality of its pseudo-labels on the train pixels that carry no label (the ground truth is known):
accuracy, accuracy of the confident pixels (> tau), share of confident pixels (what eta sees), per-class
recall and the share of each class among pseudo-labels vs the truth. Prints a table, writes JSON.

    .venv/bin/python bench/semisup_diagnosis.py data/fashion-scenes --variant thin --labeled 0.01 \
        --iterations 600 --seeds 0 1 --arm sup '{"mix": "none"}' --arm s4al '{}' --out diag.json

`--variant thin`: classes background / garment / garment boundary (1 px outline): a thin minority class.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from worker.datasets import read_dataset
from worker.engine import trainer as trainer_module
from worker.engine.cycle import evaluate
from worker.engine.metrics import ConfusionMeter, iou
from worker.engine.trainer import TrainConfig, train

IGNORE = 255


def thin_variant(mask: np.ndarray) -> np.ndarray:
    """0 background, 1 garment, 2 garment pixels on a class boundary (4-neighbourhood)."""
    out = (mask > 0).astype(np.uint8)
    edge = np.zeros(mask.shape, bool)
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    out[edge & (mask > 0)] = 2
    return out


def initial_labels(truth: list[np.ndarray], fraction: float, cell: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = truth[0].shape
    cells = [(i, y, x) for i in range(len(truth)) for y in range(0, h, cell) for x in range(0, w, cell)]
    order = rng.permutation(len(cells))[: max(1, round(fraction * len(cells)))]
    labels = [np.full(t.shape, IGNORE, np.uint8) for t in truth]
    for j in order:
        i, y, x = cells[j]
        labels[i][y:y + cell, x:x + cell] = truth[i][y:y + cell, x:x + cell]
    return labels


@torch.inference_mode()
def pseudo_quality(model, images, labels, truth, k: int, tau: float) -> dict:
    model.eval()
    meter, conf_meter = ConfusionMeter(k), ConfusionMeter(k)
    confident = total = 0
    for s in range(0, len(images), 64):
        x = torch.from_numpy(np.stack(images[s:s + 64])).permute(0, 3, 1, 2).float() / 255
        p = model(x).softmax(1)
        c, pred = p.max(1)
        lab = torch.from_numpy(np.stack(labels[s:s + 64]))
        t = torch.from_numpy(np.stack(truth[s:s + 64])).long()
        t = torch.where(lab == IGNORE, t, torch.full_like(t, IGNORE))  # unlabeled pixels only
        meter.update(pred, t)
        conf_meter.update(pred, torch.where(c > tau, t, torch.full_like(t, IGNORE)))
        confident += int(((c > tau) & (t != IGNORE)).sum())
        total += int((t != IGNORE).sum())
    cm = meter.cm.astype(np.float64)
    ccm = conf_meter.cm.astype(np.float64)
    model.train()
    return {"acc": float(np.trace(cm) / cm.sum()), "conf_share": confident / max(total, 1),
            "conf_acc": float(np.trace(ccm) / max(ccm.sum(), 1)),
            "recall": (np.diag(cm) / np.maximum(cm.sum(1), 1)).round(3).tolist(),
            "pred_share": (cm.sum(0) / cm.sum()).round(3).tolist(),
            "true_share": (cm.sum(1) / cm.sum()).round(3).tolist(),
            "pseudo_miou": float(np.nanmean(iou(cm)))}


class _Data:
    def __init__(self, images, labels, k):
        self.images, self.labels, self.num_classes = images, labels, k


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    ds = read_dataset(args.dataset, require_masks=True)
    train_stems, val_stems = ds.simulation_split()
    images, truth = ds.load(train_stems[: args.pool])
    val_images, val_truth = ds.load(val_stems)
    k = ds.num_classes
    if args.variant == "thin":
        truth, val_truth, k = [thin_variant(t) for t in truth], [thin_variant(t) for t in val_truth], 3
    rows = []
    for seed in args.seeds:
        labels = initial_labels(truth, args.labeled, args.cell, seed)
        labeled = sum(int((lab != IGNORE).sum()) for lab in labels) / sum(lab.size for lab in labels)
        for name, overrides in args.arm:
            cfg = TrainConfig(**{"model": "unet_small", "iterations": args.iterations, "seed": seed,
                                 "device": "cpu",
                                 "crop_size": args.crop, **json.loads(overrides)})
            captured: dict = {}
            probes: list[dict] = []
            etas: list[float] = []

            class Recording(trainer_module.EMATeacher):
                def __init__(self, *a, captured=captured, **kw):
                    super().__init__(*a, **kw)
                    captured["teacher"] = self

            def progress(phase, step, total, record, cfg=cfg, probes=probes, etas=etas, captured=captured,
                         labels=labels, name=name, seed=seed):
                if "eta_unsup" in record:
                    etas.append(record["eta_unsup"])
                if step % args.probe == 0 or step == total:
                    q = pseudo_quality(captured["teacher"].module, images, labels, truth, k, cfg.tau)
                    cm = evaluate(captured["teacher"].module, val_images, val_truth, k)
                    q.update(step=step, val_miou=float(np.nanmean(iou(cm))),
                             eta=float(np.mean(etas[-args.probe:])) if etas else 0.0,
                             gate=record.get("gate_top"))
                    probes.append(q)
                    captured["teacher"].module.train()
                    print(f"   {name} seed {seed} step {step:>5} val mIoU {100 * q['val_miou']:5.1f} "
                          f"eta {q['eta']:.2f} gate {q['gate']}", flush=True)

            start = time.perf_counter()
            original = trainer_module.EMATeacher
            trainer_module.EMATeacher = Recording
            try:
                res = train(cfg, _Data(images, labels, k), progress=progress)
            finally:
                trainer_module.EMATeacher = original
            cm = evaluate(res.teacher, val_images, val_truth, k)
            row = {"arm": name, "seed": seed, "labeled": labeled, "config": overrides,
                   "val_miou": float(np.nanmean(iou(cm))), "val_iou": np.round(iou(cm), 3).tolist(),
                   "seconds": round(time.perf_counter() - start, 1), "probes": probes}
            rows.append(row)
            print(f"{name:<14} seed {seed} labeled {labeled:.2%} val mIoU {100 * row['val_miou']:5.1f} "
                  f"IoU {row['val_iou']}  {row['seconds']}s", flush=True)
            for q in probes:
                print(f"   step {q['step']:>5} val {100 * q['val_miou']:5.1f} pseudo acc {q['acc']:.3f} "
                      f"conf>tau {q['conf_share']:.2f} (acc {q['conf_acc']:.3f}) eta {q['eta']:.2f} "
                      f"gate {q['gate']} recall {q['recall']} pred {q['pred_share']} true {q['true_share']}",
                      flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(rows, f, indent=1)
    summary(rows)
    return rows


def summary(rows: list[dict]) -> None:
    print(f"\n{'arm':<14} {'val mIoU mean ± std':>20}  per seed")
    for name in dict.fromkeys(r["arm"] for r in rows):
        v = [100 * r["val_miou"] for r in rows if r["arm"] == name]
        print(f"{name:<14} {np.mean(v):>12.1f} ± {np.std(v):4.1f}  {[round(x, 1) for x in v]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--variant", choices=("plain", "thin"), default="plain")
    p.add_argument("--labeled", type=float, default=0.02)
    p.add_argument("--cell", type=int, default=8)
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--probe", type=int, default=200)
    p.add_argument("--pool", type=int, default=600)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arm", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    p.add_argument("--out")
    run(p.parse_args())


if __name__ == "__main__":
    main()
