"""How good is a dataset finished by the model? The demo's cycles on fashion-scenes, then the fill export's
masks (human labels + the best cycle's predictions at or above a confidence threshold, 255 below)
scored against the oracle ground truth, per threshold.

    .venv/bin/python bench/fill_quality.py --out DIR [--cycles 1] [--iterations 300] [--images 600]

Runs in-process on a fresh data dir under DIR (SQLite, no Celery): the cold start, the oracle labels its
regions, then `--cycles` training cycles (the oracle labeling each one's regions but the last), with
the demo's settings. Then the best cycle predicts every train image (worker/model_io.py, what the
`predict_images` task runs) and, for each threshold, the filled train masks (service/fill.py, what the
export writes) are compared with the truth on the pixels they cover:

    coverage     share of train pixels the filled dataset labels (human + model)
    model share  share filled by the model
    mIoU / acc   of the covered pixels against the ground truth (human labels come from the oracle)

Prints a table, writes DIR/fill_quality.json and DIR/fill_quality.png (accuracy against coverage).
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

THRESHOLDS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99]


def run_cycle(settings, project_id: int) -> dict:
    from service.cycles import create_cycle
    from service.db import session_factory
    from service.models import Cycle, Project
    from worker.cycle_io import execute_cycle

    with session_factory(settings.sqlalchemy_url)() as s:
        cycle_id = create_cycle(s, s.get(Project, project_id)).id
    t0 = time.monotonic()
    status = execute_cycle(settings, cycle_id)
    with session_factory(settings.sqlalchemy_url)() as s:
        c = s.get(Cycle, cycle_id)
        m = c.metrics or {}
        row = {"cycle_id": c.id, "number": c.number, "status": status,
               "seconds": round(time.monotonic() - t0, 1),
               "labeled_fraction": m.get("labeled_fraction"), "val_miou": m.get("miou")}
    print(f"cycle {row['number']}: {status} in {row['seconds']}s  labeled "
          f"{row['labeled_fraction'] or 0:.1%}  val mIoU {row['val_miou']}", flush=True)
    if status != "succeeded":
        raise SystemExit(f"cycle {cycle_id} {status}")
    return row


def oracle(settings, project_id: int) -> int:
    from service.db import session_factory
    from service.oracle import run_oracle

    with session_factory(settings.sqlalchemy_url)() as s:
        return run_oracle(s, settings, project_id).labeled


def score_thresholds(settings, project_id: int, cycle_id: int) -> tuple[list[dict], dict]:
    from service.db import session_factory
    from service.fill import fill_labels, read_prediction
    from service.labels import assemble_labels
    from service.models import Cycle, Image, Project
    from service.storage import storage_for
    from worker.engine.metrics import confusion_matrix, iou, pixel_accuracy
    from worker.model_io import predict_cycle_images

    storage = storage_for(settings)
    with session_factory(settings.sqlalchemy_url)() as s:
        cycle = s.get(Cycle, cycle_id)
        k = len(s.get(Project, project_id).classes)
        t0 = time.monotonic()
        done = predict_cycle_images(s, storage, cycle_id, device=settings.device)
        predict = {"images": done["predicted"], "seconds": round(time.monotonic() - t0, 2)}
        images = s.scalars(select(Image).where(Image.project_id == project_id, Image.split == "train")
                           .order_by(Image.id)).all()
        cms = {t: np.zeros((k, k), np.int64) for t in THRESHOLDS}
        counts = {t: np.zeros(3, np.int64) for t in THRESHOLDS}
        plain_cm = np.zeros((k, k), np.int64)
        total = 0
        for image in images:
            human = assemble_labels(s, storage, image)
            with PILImage.open(storage.path(image.oracle_mask_path)) as m:
                truth = np.array(m, np.uint8)
            predicted, confidence = read_prediction(storage, cycle, image)
            plain_cm += confusion_matrix(predicted, truth, k)
            total += truth.size
            for t in THRESHOLDS:
                filled, sources = fill_labels(human, predicted, confidence, t)
                cms[t] += confusion_matrix(filled, np.where(filled == 255, 255, truth).astype(np.uint8), k)
                counts[t] += np.bincount(sources.ravel(), minlength=3)
    rows = []
    for t in THRESHOLDS:
        unlabeled, human_px, model_px = counts[t].tolist()
        rows.append({"threshold": t, "coverage": (human_px + model_px) / total,
                     "human_share": human_px / total,
                     "model_share": model_px / total, "miou": float(np.nanmean(iou(cms[t]))),
                     "pixel_accuracy": pixel_accuracy(cms[t])})
    rows.append({"threshold": None, "coverage": 1.0, "human_share": 0.0, "model_share": 1.0,
                 "miou": float(np.nanmean(iou(plain_cm))),
                 "pixel_accuracy": pixel_accuracy(plain_cm), "note": "the model's prediction everywhere"})
    return rows, predict


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [r for r in rows if r["threshold"] is not None]
    ax.plot([r["coverage"] for r in pts], [r["miou"] for r in pts], "o-", label="mIoU of covered pixels")
    ax.plot([r["coverage"] for r in pts], [r["pixel_accuracy"] for r in pts], "s--", label="pixel accuracy")
    for r in pts:
        ax.annotate(f"{r['threshold']:g}", (r["coverage"], r["miou"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=7)
    ax.axvline(pts[0]["human_share"], color="grey", lw=0.8, ls=":", label="human labels only")
    ax.set_xlabel("coverage (share of train pixels labeled)")
    ax.set_ylabel("agreement with ground truth")
    ax.set_title("fill export: accuracy against coverage per min confidence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cycles", type=int, default=1, help="training cycles after the cold start")
    ap.add_argument("--iterations", type=int, default=None, help="default: the demo's")
    ap.add_argument("--images", type=int, default=600, help="train scenes (the demo's 600)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from cli.demo import DEMO_REGION, DEMO_TRAINING
    from service.db import session_factory
    from service.importer import import_dataset
    from service.migrate import prepare_embedded
    from service.models import Project
    from service.settings import Settings
    from worker.data.fashion_scenes import generate

    data = args.out / "data"
    if data.exists():
        raise SystemExit(f"{data} exists: give a fresh --out")
    data.mkdir(parents=True)
    settings = Settings(data_dir=data, import_root=args.out, device="cpu", _env_file=None)
    prepare_embedded(settings)
    folder = args.out / "fashion-scenes"
    generate(folder, n_train=args.images, force=True)
    training = {**DEMO_TRAINING, **({"iterations": args.iterations} if args.iterations else {})}
    with session_factory(settings.sqlalchemy_url)() as s:
        project_id = import_dataset(s, settings, folder, "fill-quality", "oracle")["project_id"]
        p = s.get(Project, project_id)
        p.training, p.region = {**p.training, **training}, DEMO_REGION
        s.commit()
    cycles = [run_cycle(settings, project_id)]
    for _ in range(args.cycles):
        print(f"oracle labeled {oracle(settings, project_id)} regions", flush=True)
        cycles.append(run_cycle(settings, project_id))
    from service.model_files import best_cycle

    with session_factory(settings.sqlalchemy_url)() as s:
        best = best_cycle(s, project_id).id
    rows, predict = score_thresholds(settings, project_id, best)
    print(f"\nbest cycle id {best}; predicted {predict['images']} images in {predict['seconds']}s\n")
    print(f"{'min conf':>8} {'coverage':>9} {'human':>7} {'model':>7} {'mIoU':>6} {'acc':>6}")
    for r in rows:
        t = "none" if r["threshold"] is None else f"{r['threshold']:g}"
        print(f"{t:>8} {r['coverage']:9.1%} {r['human_share']:7.1%} {r['model_share']:7.1%} "
              f"{r['miou']:6.3f} {r['pixel_accuracy']:6.3f}")
    result = {"dataset": "fashion-scenes", "train_images": args.images, "training": training,
              "cycles": cycles, "best_cycle_id": best, "predict": predict, "rows": rows}
    (args.out / "fill_quality.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "fill_quality.png")
    print(f"\nwrote {args.out / 'fill_quality.json'} and {args.out / 'fill_quality.png'}")


if __name__ == "__main__":
    main()
