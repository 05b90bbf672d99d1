"""Export and batch-prediction timings, and whether prediction memory stays flat with the folder size.

    .venv/bin/python bench/predict_speed.py --out DIR [--model unet_small] [--counts 100 1000] [--size 64]

A checkpoint of `--model` (random weights: speed does not depend on them) is exported as TorchScript and
ONNX (timed); then each format predicts folders of `--counts` random images of `--size` px, each run in
a fresh process (`worker.predict.predict_folder`, what `s4al predict` runs) whose peak RSS (VmHWM) is
read after loading the model and after predicting. Memory is flat when the growth does not grow with
the count. Prints a table, writes
DIR/predict_speed.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, sys, time
from pathlib import Path
from worker.predict import ExportedModel, predict_folder
def hwm():  # peak resident set so far, MB
    line = [x for x in open("/proc/self/status") if x.startswith("VmHWM")][0]
    return int(line.split()[1]) / 1024
model = ExportedModel(sys.argv[1])
loaded = hwm()
t0 = time.perf_counter()
rep = predict_folder(model, Path(sys.argv[2]), Path(sys.argv[3]), confidence=True, batch_size=8)
took = time.perf_counter() - t0
print(json.dumps({"images": rep.predicted, "seconds": took, "loaded_mb": loaded, "peak_rss_mb": hwm()}))
"""


def make_folder(folder: Path, n: int, size: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="unet_small")
    ap.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from worker.engine import checkpoint
    from worker.engine.models import build_model
    from worker.export_model import export_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    model = build_model(args.model, 3)
    ckpt = checkpoint.make(model, model, {"model": args.model, "crop_size": 64}, ["a", "b", "c"])
    files, exports = {}, []
    for fmt, ext in [("torchscript", ".torchscript.pt"), ("onnx", ".onnx")]:
        t0 = time.perf_counter()
        files[fmt] = export_checkpoint(ckpt, fmt, args.out / f"model{ext}")
        exports.append({"format": fmt, "seconds": round(time.perf_counter() - t0, 2),
                        "mb": round(files[fmt].stat().st_size / 1e6, 2)})
    folders = {n: make_folder(args.out / f"images-{n}", n, args.size) for n in args.counts}
    runs = []
    env = {"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    for fmt, path in files.items():
        for n, folder in folders.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(folder),
                                  str(args.out / f"pred-{fmt}-{n}")], capture_output=True, text=True,
                                 env=env, cwd=Path(__file__).resolve().parents[1], check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append({"format": fmt, "images": r["images"], "size": args.size,
                         "images_per_s": round(r["images"] / r["seconds"], 1),
                         "seconds": round(r["seconds"], 2), "peak_rss_mb": round(r["peak_rss_mb"], 1),
                         "peak_after_load_mb": round(r["loaded_mb"], 1),
                         "growth_mb": round(r["peak_rss_mb"] - r["loaded_mb"], 1)})
    print(f"model {args.model}, {args.threads} thread(s)\n")
    print(f"{'format':<12} {'export s':>8} {'MB':>6}")
    for e in exports:
        print(f"{e['format']:<12} {e['seconds']:8.2f} {e['mb']:6.2f}")
    print(f"\n{'format':<12} {'images':>7} {'px':>5} {'img/s':>7} {'seconds':>8} {'peak RSS MB':>12} "
          f"{'after load':>10} {'growth':>7}")
    for r in runs:
        print(f"{r['format']:<12} {r['images']:7d} {r['size']:5d} {r['images_per_s']:7.1f} "
              f"{r['seconds']:8.2f} {r['peak_rss_mb']:12.1f} {r['peak_after_load_mb']:10.1f} "
              f"{r['growth_mb']:7.1f}")
    result = {"model": args.model, "threads": args.threads, "exports": exports, "runs": runs}
    (args.out / "predict_speed.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
