"""Enter -> next region ready on the annotator page, in a real Chromium against the real service.

A 2048x1024 image with N+1 queued 128x128 regions (each with a pre-label, and the image with a cached
superpixel map, so every per-region request of the page is made); the page submits N of them with Enter.
"Ready" is the moment the next region's info is on screen (the editor has drawn it): measured in the
page, from the Enter keydown to that DOM change. Prints a table and writes OUT/annotate_next.json.

    .venv/bin/python bench/annotate_next.py [--n 20] [--out results]
"""

import argparse
import io
import json
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
CLASSES = [{"id": i, "name": n, "color": c} for i, (n, c) in
           enumerate([("background", "#000000"), ("road", "#804080"), ("car", "#00008e")])]
MEASURE = """() => new Promise((resolve) => {
  const info = document.getElementById('region-info'), before = info.textContent;
  const t0 = performance.now();
  new MutationObserver((_, obs) => {
    if (info.textContent === before) return;
    obs.disconnect();
    requestAnimationFrame(() => resolve(performance.now() - t0));
  }).observe(info, { childList: true, subtree: true, characterData: true });
  window.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', bubbles: true }));
})"""


def seed(settings: Settings, n: int) -> tuple[int, str]:
    storage = storage_for(settings)
    rng = np.random.default_rng(0)
    with session_factory(settings.sqlalchemy_url)() as s:
        project = Project(name="bench", classes=CLASSES, region={"kind": "grid", "size": SIDE}, training={})
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
        y, x = np.mgrid[0:H, 0:W]
        sp = io.BytesIO()
        np.save(sp, ((y // 32) * (W // 32) + x // 32).astype(np.uint16))
        size = RegionSettings.model_validate(project.region or {}).size
        storage.write_bytes(superpixel_key(project.id, image.id, size), sp.getvalue())
        for rank in range(n + 1):
            x0, y0 = (rank * SIDE) % (W - SIDE), SIDE * (1 + (rank * SIDE) // (W - SIDE))
            pre = prelabel_key(project.id, cycle.id, rank)
            storage.write_bytes(pre, encode_mask_png(rng.integers(0, 3, (SIDE, SIDE), dtype=np.uint8)))
            s.add(Region(project_id=project.id, image_id=image.id, cycle_id=cycle.id, x=x0, y=y0,
                         w=SIDE, h=SIDE, score=float(n + 1 - rank), prelabel_path=pre))
        s.commit()
        token = create_token(s, "bench", "annotator")
        return project.id, token


def serve(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--pause-ms", type=int, default=1500, help="time between submissions")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        Base.metadata.create_all(engine_for(url))
        settings = Settings(data_dir=Path(tmp), database_url=url, import_root=Path(tmp), _env_file=None)
        project_id, token = seed(settings, args.n)
        server, base = serve(create_app(settings))
        times = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--headless"])
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{base}/annotate/{project_id}#token={token}")
            page.wait_for_selector("#region-info div")
            for _ in range(args.n):
                page.wait_for_timeout(args.pause_ms)  # the prefetch lands meanwhile
                times.append(page.evaluate(MEASURE))
            browser.close()
        server.should_exit = True
    result = {"n": len(times), "median_ms": statistics.median(times), "max_ms": max(times),
              "region": f"{SIDE}x{SIDE}", "image": f"{W}x{H}", "times_ms": times}
    print(f"{'submissions':>12} {'median ms':>10} {'max ms':>8}")
    print(f"{result['n']:>12} {result['median_ms']:>10.1f} {result['max_ms']:>8.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "annotate_next.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
