"""Enter -> next region ready on the annotator page, in a real Chromium against the real service.

A 2048x1024 image with N+1 queued 128x128 regions, each with a pre-label; the page submits N of them
with Enter, in three set-ups:

  grid              a grid project: no superpixel map is cached, as in a real one (the service segments
                    a crop on demand, only when the page asks); the brush is on, so the page asks for none
  grid+superpixel   the same with the superpixel brush on: every region's map is segmented on demand, in
                    the background of the page
  superpixel        a superpixel project: the image's map is cached (the worker writes it), every region
                    is a superpixel with a 128x128 bounding box, shown as its own shape (its map comes with
                    the region)

each with a pause between submissions long enough for the prefetch to land and with a short one (a fast
annotator). "Ready" is the moment the next region's info is on screen (the editor has drawn it, the
frame after): measured in the page, from the Enter keydown to that DOM change. Where a superpixel tool
is on, "map" is the moment the superpixel tools have the region's map. The load average of the machine
is recorded before and after: the figures are only as quiet as the machine.

    .venv/bin/python bench/annotate_next.py [--n 20] [--pauses 1500,300] [--out results]
"""

import argparse
import io
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image as PILImage

from service.auth import create_token
from service.db import engine_for, session_factory
from service.main import create_app
from service.masks import encode_mask_png
from service.models import Base, Cycle, Image, Project, Region
from service.schemas.project import RegionSettings
from service.settings import Settings
from service.storage import image_key, prelabel_key, storage_for, superpixel_key

W, H, SIDE = 2048, 1024, 128
SETUPS = {"grid": ("grid", None), "grid+superpixel": ("grid", "x"), "superpixel": ("superpixel", None)}
CLASSES = [{"id": i, "name": n, "color": c} for i, (n, c) in
           enumerate([("background", "#000000"), ("road", "#804080"), ("car", "#00008e")])]
MAP_TIMEOUT_MS = 30_000
MEASURE = """({ waitMap, timeoutMs }) => new Promise((resolve) => {
  const info = document.getElementById('region-info'), state = document.getElementById('superpixel-state');
  const before = info.textContent, t0 = performance.now();
  const mapReady = (region) => {
    if (state.textContent === '') { resolve({ region, map: performance.now() - t0 }); return; }
    const timer = setTimeout(() => resolve({ region, map: null }), timeoutMs);
    new MutationObserver((_, obs) => {
      if (state.textContent !== '') return;
      obs.disconnect();
      clearTimeout(timer);
      resolve({ region, map: performance.now() - t0 });
    }).observe(state, { childList: true, subtree: true, characterData: true });
  };
  new MutationObserver((_, obs) => {
    if (info.textContent === before) return;
    obs.disconnect();
    requestAnimationFrame(() => {
      const region = performance.now() - t0;
      if (waitMap) mapReady(region); else resolve({ region, map: null });
    });
  }).observe(info, { childList: true, subtree: true, characterData: true });
  window.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', bubbles: true }));
})"""


def triangle_ids() -> np.ndarray:
    """Superpixels of the image: every 128x128 tile cut along its diagonal, so that the upper triangle
    has a 128x128 bounding box but is not a box (ids: 2 per tile, the upper one even)."""
    y, x = np.mgrid[0:H, 0:W]
    tile = (y // SIDE) * (W // SIDE) + x // SIDE
    return (2 * tile + ((x % SIDE) < (y % SIDE))).astype(np.int32)


def region_boxes(n: int) -> list[tuple[int, int]]:
    """Top-left corners of n 128x128 regions on the tile grid, away from the image's top edge."""
    per_row = W // SIDE
    return [((k % per_row) * SIDE, SIDE * (1 + k // per_row)) for k in range(n)]


def seed(settings: Settings, n: int, kind: str) -> tuple[int, str]:
    storage = storage_for(settings)
    rng = np.random.default_rng(0)
    with session_factory(settings.sqlalchemy_url)() as s:
        project = Project(name=f"bench-{kind}", classes=CLASSES, region={"kind": kind, "size": SIDE},
                          training={})
        s.add(project)
        s.flush()
        cycle = Cycle(project_id=project.id, number=1, status="succeeded")
        s.add(cycle)
        key = image_key(project.id, "big", ".png")
        buf = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(buf, format="PNG")
        storage.write_bytes(key, buf.getvalue())
        image = Image(project_id=project.id, stem="big", path=key, content_type="image/png",
                      width=W, height=H, split="train")
        s.add(image)
        s.flush()
        ids = triangle_ids()
        if kind == "superpixel":  # the worker caches the map of a superpixel project's images only
            sp = io.BytesIO()
            np.save(sp, ids)
            size = RegionSettings.model_validate(project.region).size
            storage.write_bytes(superpixel_key(project.id, image.id, size), sp.getvalue())
        for rank, (x0, y0) in enumerate(region_boxes(n + 1)):
            pre = prelabel_key(project.id, cycle.id, rank)
            storage.write_bytes(pre, encode_mask_png(rng.integers(0, 3, (SIDE, SIDE), dtype=np.uint8)))
            superpixel = int(ids[y0, x0 + SIDE - 1]) if kind == "superpixel" else -1  # the upper triangle
            s.add(Region(project_id=project.id, image_id=image.id, cycle_id=cycle.id, x=x0, y=y0,
                         w=SIDE, h=SIDE, kind=kind, superpixel_id=superpixel, score=float(n + 1 - rank),
                         prelabel_path=pre))
        s.commit()
        token = create_token(s, "bench", "annotator")
        return project.id, token


def serve(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def measure(browser, setup: str, n: int, pause_ms: int) -> dict:
    """One set-up at one pause: a fresh service, database and page."""
    from playwright.sync_api import expect

    kind, tool_key = SETUPS[setup]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        Base.metadata.create_all(engine_for(url))
        settings = Settings(data_dir=Path(tmp), database_url=url, import_root=Path(tmp), _env_file=None)
        project_id, token = seed(settings, n, kind)
        server, thread, base = serve(create_app(settings))
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{base}/annotate/{project_id}#token={token}")
        page.wait_for_selector("#region-info div")
        if tool_key:
            page.keyboard.press(tool_key)
        wait_map = tool_key is not None or kind == "superpixel"
        times = []
        for _ in range(n):
            page.wait_for_timeout(pause_ms)
            times.append(page.evaluate(MEASURE, {"waitMap": wait_map, "timeoutMs": MAP_TIMEOUT_MS}))
        # every submission delivered before the service and its files go
        expect(page.locator("#save-state")).to_have_attribute("data-waiting", "0", timeout=60_000)
        page.close()
        server.should_exit = True
        thread.join(timeout=10)
    region = [t["region"] for t in times]
    maps = [t["map"] for t in times if t["map"] is not None]
    return {"setup": setup, "pause_ms": pause_ms, "n": len(times),
            "median_ms": statistics.median(region), "max_ms": max(region),
            "map_median_ms": statistics.median(maps) if maps else None,
            "map_max_ms": max(maps) if maps else None,
            "maps_missing": sum(t["map"] is None for t in times) if wait_map else None, "times": times}


def cell(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--pauses", default="1500,300", help="ms between submissions, comma-separated")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"])
        for setup in args.setups.split(","):
            for pause in (int(v) for v in args.pauses.split(",")):
                rows.append(measure(browser, setup, args.n, pause))
        browser.close()
    load_after = os.getloadavg()
    print(f"{'set-up':<16} {'pause ms':>8} {'n':>3} {'median ms':>10} {'max ms':>8} "
          f"{'map median':>11} {'map max':>8}")
    for r in rows:
        print(f"{r['setup']:<16} {r['pause_ms']:>8} {r['n']:>3} {r['median_ms']:>10.1f} {r['max_ms']:>8.1f} "
              f"{cell(r['map_median_ms']):>11} {cell(r['map_max_ms']):>8}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"region": f"{SIDE}x{SIDE}", "image": f"{W}x{H}", "cpus": os.cpu_count(),
              "load_before": load_before, "load_after": load_after, "rows": rows}
    (args.out / "annotate_next.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
