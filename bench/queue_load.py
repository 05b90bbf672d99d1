"""Load test of the region queue: N simulated annotators lease → submit against the running API.

    .venv/bin/python bench/queue_load.py --annotators 50 --regions 100000 --duration 30

Creates a fresh PostgreSQL schema (migrated to head), bulk-inserts the regions (one INSERT … SELECT
generate_series), starts uvicorn with the real app on a free port (the deployment's command), then runs
the annotators as asyncio tasks: each leases, optionally "thinks", and submits a 32×32 mask with an
Idempotency-Key, until the time is up. The client is aiohttp, one keep-alive connection per annotator:
httpx's async client spends ~2 ms more per request in the client itself, which on a shared 2-core
machine is latency and CPU taken from the server being measured. Prints lease/submit latency
percentiles and throughput, and checks the database afterwards: double leases (a region handed out
twice) and lost submissions (a 2xx whose annotation or file is missing) must both be zero. Writes
everything as JSON (--out).

Image rows point at no file: leasing and submitting never read image pixels (crops are not measured).
"""

import argparse
import asyncio
import io
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from PIL import Image as PILImage
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.auth import create_token  # noqa: E402
from service.db import session_factory  # noqa: E402
from service.masks import encode_mask_png  # noqa: E402
from service.migrate import upgrade_to_head  # noqa: E402
from service.storage import Storage, mask_key  # noqa: E402

REGION = 32
PER_IMAGE = 100  # a 10×10 grid of 32 px cells on a 320×320 image


def schema_url(base: str, schema: str) -> str:
    return make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def seed(url: str, regions: int, annotators: int, quality: dict | None = None, gold: int = 0,
         data_dir: Path | None = None) -> tuple[int, list[str]]:
    t0 = time.perf_counter()
    upgrade_to_head(url)
    engine = create_engine(url)
    images = -(-regions // PER_IMAGE)
    classes = json.dumps([{"id": i, "name": f"c{i}", "color": "#%06x" % (i * 0x3f3f3f)} for i in range(4)])
    with engine.begin() as conn:
        pid = conn.execute(text(
            "INSERT INTO project (name, classes, region, ignore_index, training, created_at, updated_at) "
            "VALUES ('bench', :c, '{\"kind\": \"grid\", \"size\": 32}', 255, '{}', now(), now()) "
            "RETURNING id"),
            {"c": classes}).scalar_one()
        cid = conn.execute(text(
            "INSERT INTO cycle (project_id, number, status, step, total, cancel_requested, attempts, "
            "created_at) VALUES (:p, 1, 'succeeded', 0, 0, false, 0, now()) RETURNING id"),
            {"p": pid}).scalar_one()
        conn.execute(text(
            "INSERT INTO image (project_id, stem, path, content_type, width, height, split, created_at) "
            "SELECT :p, 'img' || g, 'projects/' || :p || '/images/' || g || '.png', 'image/png', 320, 320, "
            "'train', now() FROM generate_series(1, :n) g"), {"p": pid, "n": images})
        first = conn.execute(text("SELECT min(id) FROM image WHERE project_id = :p"), {"p": pid}).scalar_one()
        conn.execute(text(
            "INSERT INTO region (project_id, image_id, cycle_id, kind, x, y, w, h, superpixel_id, score, "
            "status, created_at) "
            "SELECT :p, :first + g / :per, :c, 'grid', (g % 10) * 32, ((g % :per) / 10) * 32, 32, 32, -1, "
            "random(), 'queued', now() FROM generate_series(0, :n - 1) g"),
            {"p": pid, "c": cid, "first": first, "per": PER_IMAGE, "n": regions})
        if quality:
            conn.execute(text("UPDATE project SET quality = :q WHERE id = :p"),
                         {"q": json.dumps(quality), "p": pid})
        if gold:
            make_gold(conn, pid, gold, data_dir)
        conn.execute(text("ANALYZE"))
    engine.dispose()
    # Flush the bulk load to disk now, so that its checkpoint does not land in the middle of the run.
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("CHECKPOINT"))
    with session_factory(url)() as session:
        tokens = [create_token(session, f"annotator-{i}", "annotator") for i in range(annotators)]
    print(f"seeded {regions} regions on {images} images, {annotators} tokens "
          f"in {time.perf_counter() - t0:.1f} s")
    return pid, tokens


def make_gold(conn, pid: int, n: int, data_dir: Path) -> None:
    """The first `n` regions become gold regions, each with its answer file (submissions score against it)."""
    ids = conn.execute(text("SELECT id FROM region WHERE project_id = :p ORDER BY id LIMIT :n"),
                       {"p": pid, "n": n}).scalars().all()
    storage = Storage(data_dir / "storage")
    answer = encode_mask_png(np.random.default_rng(1).integers(0, 4, (REGION, REGION)).astype(np.uint8))
    for rid in ids:
        storage.write_bytes(mask_key(pid, f"gold-{rid}"), answer)
    conn.execute(text("UPDATE region SET status = 'gold', "
                      "gold_mask_path = 'projects/' || :p || '/masks/gold-' || id || '.png' "
                      "WHERE id = ANY(:ids)"),
                 {"p": pid, "ids": list(ids)})


def calibrate(url: str) -> dict:
    """How fast this machine is right now: a database round trip, and a fixed piece of Python."""
    engine = create_engine(url)
    with engine.connect() as conn:
        trips = []
        for _ in range(200):
            t0 = time.perf_counter()
            conn.execute(text("SELECT 1"))
            trips.append(1000 * (time.perf_counter() - t0))
    engine.dispose()
    t0 = time.perf_counter()
    for _ in range(2000):
        sum(range(1000))
    return {"select1_ms_p50": pct(trips, 50), "select1_ms_p99": pct(trips, 99),
            "python_sum1000_us": 1e6 * (time.perf_counter() - t0) / 2000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, data_dir: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "S4AL_DATABASE_URL": url, "S4AL_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
           "--http", "service.http_protocol:NoDelayHttpToolsProtocol", "--loop", "uvloop",
           "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log",
           "--timeout-graceful-shutdown", "5", "--timeout-keep-alive", "75"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)  # its own process group
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the API did not start")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the uvicorn supervisor and its workers; SIGKILL the group if they linger."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def mask_png() -> bytes:
    arr = np.random.default_rng(0).integers(0, 4, (REGION, REGION)).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


class Run:
    def __init__(self) -> None:
        self.lease_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.leased: dict[int, int] = {}  # region id → how many times it was handed out
        self.leased_by: dict[tuple[int, str], int] = {}  # (region id, token) → times
        self.acked: dict[int, int] = {}  # annotation id → region id, for every 2xx submit
        self.errors: list[str] = []
        self.empty = 0
        self.retries = 0
        self.unfinished = 0  # leases still being "painted" when the time was up
        self.warmup_submits = 0  # acknowledged during the warm-up (checked, not timed)


async def post(client: aiohttp.ClientSession, run: "Run", url: str, headers: dict,
               mask: bytes | None = None) -> tuple[int, bytes]:
    """POST (with the mask as multipart when given), retried on a dropped connection: a lease retry
    gets the same live lease back, a submit retry carries the same Idempotency-Key, so neither can
    double anything. Returns (status, body)."""
    for attempt in range(3):
        data = None
        if mask is not None:
            data = aiohttp.FormData()
            data.add_field("mask", mask, filename="m.png", content_type="image/png")
        try:
            async with client.post(url, headers=headers, data=data) as r:
                return r.status, await r.read()
        except aiohttp.ClientConnectionError:
            if attempt == 2:
                raise
            run.retries += 1
    raise AssertionError("unreachable")


async def annotator(client: aiohttp.ClientSession, base: str, pid: int, token: str, run: "Run",
                    deadline: float, think: float, ramp: float, mask: bytes) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(token)
    await asyncio.sleep(rng.uniform(0, ramp))  # annotators do not all start in the same millisecond
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        status, body = await post(client, run, f"{base}/api/projects/{pid}/queue/lease", headers)
        run.lease_ms.append(1000 * (time.perf_counter() - t0))
        if status == 204:
            run.empty += 1
            return
        if status != 200:
            run.errors.append(f"lease {status} {body[:200]!r}")
            return
        lease = json.loads(body)
        rid = lease["region"]["id"]
        run.leased[rid] = run.leased.get(rid, 0) + 1
        run.leased_by[(rid, token)] = run.leased_by.get((rid, token), 0) + 1
        if think:  # painting; one still painting at the end stops there (else all would submit at once)
            pause = rng.expovariate(1 / think)
            if time.perf_counter() + pause > deadline:
                run.unfinished += 1
                return
            await asyncio.sleep(pause)
        t0 = time.perf_counter()
        status, body = await post(client, run, f"{base}/api/leases/{lease['lease_id']}/annotation",
                                  headers | {"Idempotency-Key": uuid.uuid4().hex}, mask)
        run.submit_ms.append(1000 * (time.perf_counter() - t0))
        if status != 201:
            run.errors.append(f"submit {status} {body[:200]!r}")
            return
        run.acked[json.loads(body)["id"]] = rid


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def verify(url: str, data_dir: Path, run: Run) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, region_id, mask_path FROM annotation")).all()
        labeled = conn.execute(text("SELECT count(*) FROM region WHERE status = 'labeled'")).scalar_one()
        gold = set(conn.execute(text("SELECT id FROM region WHERE status = 'gold'")).scalars())
        states = dict(conn.execute(text(
            "SELECT coalesce(review_state, case when gold_miou is not null then 'gold' else 'none' end), "
            "count(*) FROM annotation GROUP BY 1")).all())
    engine.dispose()
    stored = {r.id: (r.region_id, r.mask_path) for r in rows}
    storage = data_dir / "storage"
    lost = [a for a, rid in run.acked.items()
            if a not in stored or stored[a][0] != rid or not (storage / stored[a][1]).is_file()]
    return {"annotations_in_db": len(stored), "regions_labeled": labeled, "lost_submissions": len(lost),
            # A gold region goes to many annotators by design, but to each of them once.
            "double_leases": sum(n - 1 for rid, n in run.leased.items() if n > 1 and rid not in gold)
            + sum(n - 1 for (rid, _), n in run.leased_by.items() if n > 1 and rid in gold),
            "annotations_by_state": states,
            "unacknowledged_rows": len(set(stored) - set(run.acked))}


async def drive(base: str, pid: int, tokens: list[str], duration: float, think: float,
                ramp: float, warmup: float) -> tuple[Run, float, float]:
    """Run the annotators; (run, seconds, CPU seconds this client process spent meanwhile).

    With `warmup`, every annotator first does lease → submit cycles for that long, unmeasured: a
    service that has been up a while has its connections open and its statements compiled and prepared.
    Their regions and annotations still count in the double-lease and lost-submission checks."""
    run, mask = Run(), mask_png()
    # One keep-alive connection per annotator, as one browser tab each; idle ones are kept 30 s, less
    # than the server's 75 s, so the client never reuses a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=len(tokens), keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
        # Warm every worker's connection pool, as a running service would be.
        async def warm(token: str) -> None:
            async with client.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}) as r:
                await r.read()

        await asyncio.gather(*(warm(t) for t in tokens))
        if warmup > 0:
            t0 = time.perf_counter()
            await asyncio.gather(*(annotator(client, base, pid, t, run, t0 + warmup, 0.0, 0.0, mask)
                                   for t in tokens))
            run.lease_ms.clear()
            run.submit_ms.clear()
            run.warmup_submits = len(run.acked)
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(annotator(client, base, pid, t, run, t0 + duration, think, ramp, mask)
                               for t in tokens))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return run, elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--regions", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--think", type=float, default=0.0, help="mean seconds between lease and submit")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured lease → submit first")
    ap.add_argument("--ramp", type=float, default=None, help="annotators start within this many seconds "
                                                             "(default: the think time)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--pg-url", default=os.environ.get("S4AL_TEST_PG_URL",
                                                       "postgresql+psycopg://root@127.0.0.1:5432/test"))
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp") / f"s4al-bench-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "queue_load.json")
    ap.add_argument("--keep", action="store_true", help="keep the schema and data dir afterwards")
    ap.add_argument("--review", choices=["none", "sample", "all"], default="none")
    ap.add_argument("--review-rate", type=float, default=0.1)
    ap.add_argument("--gold-rate", type=float, default=0.0, help="share of leases that try a gold region")
    ap.add_argument("--gold", type=int, default=0, help="regions made gold before the run")
    args = ap.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = schema_url(args.pg_url, schema)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        quality = {"review": args.review, "review_rate": args.review_rate, "gold_rate": args.gold_rate}
        pid, tokens = seed(url, args.regions, args.annotators, quality, args.gold, args.data_dir)
        machine = calibrate(url)
        port = free_port()
        server = start_server(url, args.data_dir, port, args.workers)
        ramp = args.think if args.ramp is None else args.ramp
        run, elapsed, client_cpu = asyncio.run(drive(f"http://127.0.0.1:{port}", pid, tokens, args.duration,
                                                     args.think, ramp, args.warmup))
        stop_server(server)
        server = None
        checks = verify(url, args.data_dir, run)
    finally:
        if server is not None:
            stop_server(server)
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            subprocess.run(["rm", "-rf", str(args.data_dir)], check=False)
        admin.dispose()

    result = {
        "schema": schema, "kept": args.keep, "annotators": args.annotators, "regions": args.regions,
        "quality": quality, "gold_regions": args.gold,
        "duration_s": round(elapsed, 2),
        "warmup_s": args.warmup, "think_s": args.think,
        "ramp_s": args.ramp if args.ramp is not None else args.think,
        "workers": args.workers, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
        "python": platform.python_version(), "machine_now": machine, "client": "aiohttp",
        "client_cpu_s": round(client_cpu, 2),
        "leases": len(run.lease_ms), "submits": len(run.submit_ms), "warmup_submits": run.warmup_submits,
        "retries": run.retries,
        "unfinished_at_end": run.unfinished,
        "errors": run.errors[:20],
        "lease_ms": {"p50": pct(run.lease_ms, 50), "p90": pct(run.lease_ms, 90), "p99": pct(run.lease_ms, 99),
                     "max": max(run.lease_ms, default=float("nan")),
                     "mean": statistics.fmean(run.lease_ms) if run.lease_ms else float("nan")},
        "submit_ms": {"p50": pct(run.submit_ms, 50), "p90": pct(run.submit_ms, 90),
                      "p99": pct(run.submit_ms, 99), "max": max(run.submit_ms, default=float("nan")),
                      "mean": statistics.fmean(run.submit_ms) if run.submit_ms else float("nan")},
        "throughput": {"leases_per_s": len(run.lease_ms) / elapsed,
                       "submits_per_s": len(run.submit_ms) / elapsed},
        **checks,
    }
    lm, sm = result["lease_ms"], result["submit_ms"]
    print(f"\n{args.annotators} annotators, {args.regions} queued regions, {elapsed:.1f} s after "
          f"{args.warmup:g} s of warm-up, "
          f"think {args.think} s, {args.workers} uvicorn workers, "
          f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; the aiohttp client itself used "
          f"{client_cpu:.1f} CPU s ({100 * client_cpu / elapsed:.0f}% of one core)")
    print(f"machine now: SELECT 1 round trip p50 {machine['select1_ms_p50']:.2f} ms, "
          f"p99 {machine['select1_ms_p99']:.2f} ms; sum(range(1000)) {machine['python_sum1000_us']:.1f} µs")
    print(f"{'':8} {'n':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'per s':>8}")
    for name, n, m, rate in (("lease", len(run.lease_ms), lm, result["throughput"]["leases_per_s"]),
                             ("submit", len(run.submit_ms), sm, result["throughput"]["submits_per_s"])):
        print(f"{name:8} {n:7d} {m['p50']:8.1f} {m['p90']:8.1f} {m['p99']:8.1f} {m['max']:8.1f} {rate:8.1f}")
    print(f"double leases {checks['double_leases']} · lost submissions {checks['lost_submissions']} · "
          f"annotations in db {checks['annotations_in_db']} · regions labeled {checks['regions_labeled']} · "
          f"retries {run.retries} · errors {len(run.errors)}")
    print(f"annotations by review state: {checks['annotations_by_state']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
