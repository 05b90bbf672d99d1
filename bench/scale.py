"""Worker memory and time of one cycle as the pool grows: does peak memory stay flat?

For each N: a pool of N synthetic images (default 2048x1024, smooth shapes, PNG compress_level=1) with
ground-truth masks is imported into a fresh SQLite + storage as oracle data, every train image gets one
labeled 256x256 box, and one cycle (load -> `--steps` training steps -> score -> evaluate -> write) runs
through the worker's `execute_cycle` in a child process. The parent samples the child's process tree
(loader workers included) every 0.2 s: the peak of the summed PSS (shared pages counted once, the honest
total) and of the summed RSS, overall and per cycle phase (read from the cycle row's heartbeat).
A watchdog kills the child when the summed PSS passes `--max-gb`, recorded as `exceeded`.

    .venv/bin/python bench/scale.py --n 50 200 800 --json bench-scale.json

Prints a table and writes the JSON result. Target: peak(N=800) <= 1.2 x peak(N=50).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = [{"id": i, "name": n, "color": c} for i, (n, c) in enumerate(
    [("background", "#000000"), ("road", "#804080"), ("car", "#00008e"), ("person", "#dc143c"),
     ("tree", "#6b8e23")])]
COLORS = np.array([[40, 40, 40], [128, 64, 128], [0, 0, 142], [220, 20, 60], [107, 142, 35]], np.uint8)
BOX = 256


def synthetic_pair(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth shapes: a coarse random class map upsampled by 32 (blocky regions), colours + soft noise."""
    cell = 32
    coarse = rng.integers(0, len(CLASSES), (h // cell + 1, w // cell + 1), dtype=np.uint8)
    coarse[coarse.shape[0] // 2:, :] = np.where(rng.random(coarse[coarse.shape[0] // 2:].shape) < 0.6, 1,
                                                coarse[coarse.shape[0] // 2:])  # a road in the lower half
    mask = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:h, :w]
    shade = rng.integers(-25, 25, (h // 64 + 1, w // 64 + 1, 3)).astype(np.int16)
    shade = np.repeat(np.repeat(shade, 64, 0), 64, 1)[:h, :w]
    image = np.clip(COLORS[mask].astype(np.int16) + shade, 0, 255).astype(np.uint8)
    return image, mask


def make_dataset(folder: Path, n_train: int, n_val: int, w: int, h: int, seed: int = 0) -> None:
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "classes.json").write_text(json.dumps(CLASSES))
    stems = [f"im{i:05d}" for i in range(n_train + n_val)]
    for stem in stems:
        image, mask = synthetic_pair(rng, w, h)
        PILImage.fromarray(image).save(folder / "images" / f"{stem}.png", compress_level=1)
        PILImage.fromarray(mask).save(folder / "masks" / f"{stem}.png", compress_level=1)
    (folder / "splits" / "val.txt").write_text("\n".join(stems[n_train:]) + "\n")


def prepare(work: Path, n: int, n_val: int, w: int, h: int, steps: int) -> tuple[Path, int]:
    """A project of n train + n_val val images, one labeled box per train image, one queued cycle."""
    from PIL import Image as PILImage
    from sqlalchemy import select

    from service.cycles import create_cycle
    from service.db import engine_for, session_factory
    from service.importer import import_dataset
    from service.labels import add_annotation
    from service.models import Base, Image, Project
    from service.settings import Settings
    from service.storage import storage_for

    make_dataset(work / "dataset", n, n_val, w, h)
    data = work / "data"
    data.mkdir()
    settings = Settings(data_dir=data, import_root=work, device="cpu", _env_file=None)
    Base.metadata.create_all(engine_for(settings.sqlalchemy_url))
    storage = storage_for(settings)
    with session_factory(settings.sqlalchemy_url)() as s:
        summary = import_dataset(s, settings, work / "dataset", "scale", "oracle")
        project = s.get(Project, summary["project_id"])
        project.training = {**project.training, "iterations": steps, "model": "unet_small", "seed": 0}
        s.commit()
        for im in s.scalars(select(Image).where(Image.project_id == project.id, Image.split == "train")):
            bw, bh = min(BOX, im.width), min(BOX, im.height)
            with PILImage.open(storage.path(im.oracle_mask_path)) as m:
                gt = np.array(m.crop((0, 0, bw, bh)), np.uint8)
            add_annotation(s, storage, image=im, x=0, y=0, w=bw, h=bh, mask=gt, source="initial")
        s.commit()
        cycle = create_cycle(s, project)
        return data, cycle.id


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _memory(pids: list[int]) -> tuple[int, int]:
    """(summed PSS, summed RSS) in bytes."""
    pss = rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss, rss


def _phase(url: str, cycle_id: int) -> str | None:
    import sqlite3

    try:
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.1) as c:
            row = c.execute("SELECT phase, status FROM cycle WHERE id = ?", (cycle_id,)).fetchone()
        return None if row is None else (row[0] or row[1])
    except sqlite3.Error:
        return None


def run_cycle_measured(data: Path, cycle_id: int, max_bytes: int, threads: int) -> dict:
    from service.settings import Settings

    url = Settings(data_dir=data, _env_file=None).sqlalchemy_url
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "S4AL_DEVICE": "cpu"}
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, __file__, "--child", str(data), str(cycle_id)], env=env,
                             cwd=ROOT)
    peak = {"pss": 0, "rss": 0}
    by_phase: dict[str, int] = {}
    exceeded = False
    last_phase, tick = None, 0
    while child.poll() is None:
        pss, rss = _memory(_tree(child.pid))
        peak["pss"], peak["rss"] = max(peak["pss"], pss), max(peak["rss"], rss)
        if tick % 3 == 0:
            last_phase = _phase(url, cycle_id) or last_phase
        tick += 1
        if last_phase:
            by_phase[last_phase] = max(by_phase.get(last_phase, 0), pss)
        if pss > max_bytes:
            exceeded = True
            for p in reversed(_tree(child.pid)):
                try:
                    os.kill(p, 9)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.2)
    child.wait()
    wall = time.monotonic() - start
    from service.db import session_factory
    from service.models import Cycle

    with session_factory(url)() as s:
        c = s.get(Cycle, cycle_id)
        status, metrics, error = c.status, dict(c.metrics or {}), c.error
    phases = {k: metrics.get(f"{k}_seconds") for k in ("load", "train", "score", "evaluate", "write")}
    return {"status": "killed: memory limit" if exceeded else status, "exceeded": exceeded,
            "peak_pss_gb": peak["pss"] / 2**30, "peak_rss_gb": peak["rss"] / 2**30,
            "peak_pss_gb_by_phase": {k: v / 2**30 for k, v in by_phase.items()},
            "seconds": {**phases, "wall": wall}, "regions": metrics.get("regions"),
            "error": (error or "")[:400] or None}


def child_main(data: str, cycle_id: int) -> None:
    from service.settings import Settings
    from worker.cycle_io import execute_cycle

    settings = Settings(data_dir=Path(data), device="cpu", _env_file=None)
    print("cycle:", execute_cycle(settings, cycle_id), flush=True)


def _fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = (f"{'N':>5} {'status':>10} {'peak PSS GB':>11} {'peak RSS GB':>11} {'load s':>7} {'train s':>8} "
            f"{'score s':>8} {'eval s':>7} {'write s':>8} {'wall s':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["seconds"]
        lines.append(f"{r['n']:>5} {r['status'][:10]:>10} {r['peak_pss_gb']:>11.2f} "
                     f"{r['peak_rss_gb']:>11.2f} "
                     f"{_fmt(s['load']):>7} {_fmt(s['train']):>8} {_fmt(s['score']):>8} "
                     f"{_fmt(s['evaluate']):>7} {_fmt(s['write']):>8} {s['wall']:>7.1f}")
    ok = [r for r in rows if r["status"] == "succeeded"]
    if len(ok) >= 2:
        lo, hi = ok[0], ok[-1]
        lines.append(f"peak(N={hi['n']}) / peak(N={lo['n']}) = {hi['peak_pss_gb'] / lo['peak_pss_gb']:.2f} "
                     "(target <= 1.2 for 800 vs 50)")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[50, 200, 800])
    ap.add_argument("--val", type=int, default=4, help="val images (evaluated each cycle)")
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    ap.add_argument("--max-gb", type=float, default=12.0, help="kill the worker above this summed PSS")
    ap.add_argument("--label", default="", help="a name for this run in the JSON (e.g. before/after)")
    ap.add_argument("--json", default="bench-scale.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary storage")
    args = ap.parse_args()
    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix=f"s4al-scale-{n}-") as tmp:
            t0 = time.monotonic()
            data, cycle_id = prepare(Path(tmp), n, args.val, args.width, args.height, args.steps)
            prep = time.monotonic() - t0
            row = {"n": n, "prepare_seconds": prep,
                   **run_cycle_measured(data, cycle_id, int(args.max_gb * 2**30), args.threads)}
            rows.append(row)
            print(f"N={n}: {row['status']} peak PSS {row['peak_pss_gb']:.2f} GB "
                  f"(prepared in {prep:.0f}s) {row['seconds']}", flush=True)
            if args.keep:
                os.system(f"cp -r {tmp} {tmp}-kept")
    print(table(rows))
    Path(args.json).write_text(json.dumps({"label": args.label, "width": args.width, "height": args.height,
                                           "steps": args.steps, "threads": args.threads, "rows": rows},
                                          indent=2))


if __name__ == "__main__":
    main()
