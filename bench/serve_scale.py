"""Peak worker memory of a real cycle through `s4al serve`, for two pool sizes (default 40 and 160).

For each N: a dataset of N synthetic 2048x1024 train images (+ `--val`) with exact masks
(`bench/scale.py`'s generator) is imported with `s4al import --masks oracle` into a fresh data dir; the
API and its embedded worker run as `s4al serve`; everything else goes through the HTTP API with the
admin token the server prints: the project's iterations are set, cycle 1 (cold start) runs, the oracle
labels its queued regions, and cycle 2 (training on those labels, then scoring the whole pool) runs.
While cycle 2 runs, the worker's process tree (the Celery worker, its pool child and the loader
workers) is sampled every 0.2 s: the peak of the summed PSS (shared pages counted once) and RSS.

    .venv/bin/python bench/serve_scale.py --n 40 160 --json results/serve-scale.json

Target: peak(160) <= 1.5 x peak(40), both cycles succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e_oracle import free_port  # noqa: E402
from bench.scale import _memory, _tree, make_dataset  # noqa: E402

S4AL = str(Path(sys.executable).with_name("s4al"))


def worker_root(serve_pid: int) -> int | None:
    """The Celery worker process among `serve`'s children (the API itself runs in `serve`)."""
    for pid in _tree(serve_pid)[1:]:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"celery" in cmd and b"worker" in cmd:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == serve_pid:
                return pid
    return None


def wait_cycle(api: httpx.Client, cycle_id: int, serve_pid: int, timeout: float) -> dict:
    """Poll the cycle until it ends, sampling the worker tree's memory; returns the cycle and peaks."""
    peak_pss = peak_rss = 0
    start = time.monotonic()
    cycle: dict = {}
    tick = 0
    while time.monotonic() - start < timeout:
        root = worker_root(serve_pid)
        if root is not None:
            pss, rss = _memory(_tree(root))
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        if tick % 10 == 0:
            cycle = api.get(f"/api/cycles/{cycle_id}").json()
            if cycle["status"] in ("succeeded", "failed", "cancelled"):
                break
        tick += 1
        time.sleep(0.2)
    return {"cycle": cycle, "peak_pss_gb": peak_pss / 2**30, "peak_rss_gb": peak_rss / 2**30,
            "wall": time.monotonic() - start}


def start_cycle(api: httpx.Client, project_id: int) -> int:
    r = api.post(f"/api/projects/{project_id}/cycles")
    r.raise_for_status()
    return r.json()["id"]


def run_one(n: int, n_val: int, iterations: int, timeout: float, work: Path, size: tuple[int, int]) -> dict:
    t0 = time.monotonic()
    make_dataset(work / "dataset", n, n_val, *size)
    generate_s = time.monotonic() - t0
    data = work / "data"
    port = free_port()
    env = {**os.environ, "S4AL_DATA_DIR": str(data), "S4AL_IMPORT_ROOT": str(work), "S4AL_DEVICE": "cpu",
           "S4AL_PORT": str(port), "S4AL_HOST": "127.0.0.1"}
    env.pop("S4AL_DATABASE_URL", None)
    env.pop("S4AL_BROKER_URL", None)
    subprocess.run([S4AL, "migrate"], env=env, check=True, capture_output=True)
    t0 = time.monotonic()
    out = subprocess.run([S4AL, "import", str(work / "dataset"), "--project", "scale", "--masks", "oracle"],
                         env=env, check=True, capture_output=True, text=True).stdout
    import_s = time.monotonic() - t0
    project_id = json.loads(out.strip().splitlines()[-1])["project_id"]
    serve = subprocess.Popen([S4AL, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        token = None
        for line in serve.stdout:
            if line.startswith("admin token"):
                token = line.split(":", 1)[1].strip()
                break
        assert token, "serve printed no admin token"
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=60)
        for _ in range(100):
            try:
                if api.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        project = api.get(f"/api/projects/{project_id}").json()
        api.patch(f"/api/projects/{project_id}",
                  json={"training": {**project["training"], "iterations": iterations}}).raise_for_status()
        cold = wait_cycle(api, start_cycle(api, project_id), serve.pid, timeout)
        labeled = api.post(f"/api/projects/{project_id}/oracle", json={}).json()
        trained = wait_cycle(api, start_cycle(api, project_id), serve.pid, timeout)
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
    c = trained["cycle"]
    return {"n": n, "generate_s": generate_s, "import_s": import_s, "oracle": labeled,
            "cold_cycle": {"status": cold["cycle"].get("status"), "peak_pss_gb": cold["peak_pss_gb"]},
            "status": c.get("status"), "error": (c.get("error") or "")[:400] or None,
            "metrics": c.get("metrics"), "peak_pss_gb": trained["peak_pss_gb"],
            "peak_rss_gb": trained["peak_rss_gb"], "cycle_wall_s": trained["wall"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[40, 160])
    ap.add_argument("--val", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per cycle")
    ap.add_argument("--json", default="results/serve-scale.json")
    args = ap.parse_args()
    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix=f"s4al-serve-scale-{n}-") as tmp:
            size = (args.width, args.height)
            rows.append(run_one(n, args.val, args.iterations, args.timeout, Path(tmp), size))
        r = rows[-1]
        print(f"N={n:>4}  {r['status']:>9}  peak PSS {r['peak_pss_gb']:.2f} GB  "
              f"peak RSS {r['peak_rss_gb']:.2f} GB"
              f"  cycle {r['cycle_wall_s']:.0f} s  (cold cycle {r['cold_cycle']['status']}, "
              f"{r['cold_cycle']['peak_pss_gb']:.2f} GB)", flush=True)
    ok = [r for r in rows if r["status"] == "succeeded"]
    if len(ok) >= 2:
        ratio = ok[-1]["peak_pss_gb"] / ok[0]["peak_pss_gb"]
        print(f"peak(N={ok[-1]['n']}) / peak(N={ok[0]['n']}) = {ratio:.2f}"
              " (target <= 1.5)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
