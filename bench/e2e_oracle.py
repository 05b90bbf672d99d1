"""End-to-end oracle run through the real service: `s4al serve` (API + worker) on a fresh data dir,
a project imported with its ground truth as oracle, then cycles over HTTP with the oracle labeling
every queued region between them. The same loop as `s4al simulate`'s s4al arm, through the service.

    .venv/bin/python bench/e2e_oracle.py DATASET --out DIR [--cycles 3] [--iterations 1500] ...

Cycle 0 is the cold start (random regions = the simulation's initial labels); rows 1..N are the
training cycles: the labeled share each trained on and the validation mIoU it reached. Prints a table
and writes DIR/e2e_oracle.json.
"""

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int, token: str = ""):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def __call__(self, method: str, path: str, body=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.loads(r.read() or b"null")


def train_pixels(dataset: Path) -> int:
    split = dataset / "splits" / "val.txt"
    val = set(split.read_text().split()) if split.exists() else set()
    total = 0
    for f in (dataset / "images").iterdir():
        if f.stem not in val:
            with Image.open(f) as im:
                total += im.width * im.height
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=1500, help="Per training cycle.")
    ap.add_argument("--budget-fraction", type=float, default=0.02, help="Per cycle (and the cold start).")
    ap.add_argument("--region-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None, help="Default: the model's own, as simulate.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dataset = args.dataset.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("S4AL_")}
    env.update(S4AL_DATA_DIR=str(data), S4AL_IMPORT_ROOT=str(dataset.parent), S4AL_PORT=str(port),
               S4AL_DEVICE="cpu")
    s4al = str(Path(sys.executable).parent / "s4al")
    serve = subprocess.Popen([s4al, "serve"], env=env, stdout=open(args.out / "serve.log", "wb"),
                             stderr=subprocess.STDOUT)
    try:
        api = Client(port)
        for _ in range(600):
            try:
                api("GET", "/api/health")
                break
            except OSError:
                time.sleep(0.2)
        api.token = (data / "admin-token").read_text().strip()
        budget = math.ceil(args.budget_fraction * train_pixels(dataset) / args.region_size ** 2)
        training = {"model": "unet_small", "iterations": args.iterations, "batch_size": 8,
                    "unlabeled_batch_size": 8, "lr": args.lr, "mix": "classmix", "replay_size": 0,
                    "acquisition": "entropy", "budget": budget, "seed": args.seed}
        classes = json.loads((dataset / "classes.json").read_text())
        project = api("POST", "/api/projects", {"name": "e2e-oracle", "classes": classes,
                                                "region": {"kind": "grid", "size": args.region_size},
                                                "training": training})
        pid = project["id"]
        summary = api("POST", f"/api/projects/{pid}/import", {"path": str(dataset), "masks": "oracle"})
        rows = []
        for i in range(args.cycles + 1):
            t0 = time.monotonic()
            cycle = api("POST", f"/api/projects/{pid}/cycles")
            while cycle["status"] in ("queued", "running"):
                time.sleep(1)
                cycle = api("GET", f"/api/cycles/{cycle['id']}")
            wall = time.monotonic() - t0
            if cycle["status"] != "succeeded":
                raise SystemExit(f"cycle {cycle['number']} {cycle['status']}: {cycle['error']}")
            m = cycle["metrics"]
            t1 = time.monotonic()
            labeled = api("POST", f"/api/projects/{pid}/oracle") if i < args.cycles else {"labeled": 0}
            rows.append({"row": i, "cycle": cycle["number"], "labeled_fraction": m["labeled_fraction"],
                         "miou": m.get("miou"), "per_class_iou": m.get("per_class_iou"),
                         "train_seconds": m.get("train_seconds"), "cycle_seconds": round(wall, 1),
                         "queued": m["regions"], "oracle_labeled": labeled["labeled"],
                         "oracle_seconds": round(time.monotonic() - t1, 1)})
            r = rows[-1]
            miou = "-" if r["miou"] is None else f"{r['miou']:.4f}"
            print(f"row {i}  cycle {r['cycle']}  labeled {r['labeled_fraction']:.2%}  mIoU {miou}  "
                  f"cycle {r['cycle_seconds']}s  oracle {r['oracle_labeled']} regions "
                  f"{r['oracle_seconds']}s", flush=True)
        curve = api("GET", f"/api/projects/{pid}/metrics")
        result = {"dataset": str(dataset), "import": summary, "training": training,
                  "region_size": args.region_size, "rows": rows, "metrics_endpoint": curve}
        (args.out / "e2e_oracle.json").write_text(json.dumps(result, indent=2))
        print("\n| cycle | labeled % | mIoU | cycle s | oracle s |\n|---|---|---|---|---|")
        for r in rows[1:]:
            miou = "-" if r["miou"] is None else f"{r['miou']:.4f}"
            print(f"| {r['row']} | {r['labeled_fraction']:.2%} | {miou} | {r['cycle_seconds']} | "
                  f"{r['oracle_seconds']} |")
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(60)


if __name__ == "__main__":
    main()
