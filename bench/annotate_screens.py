"""Screenshots of the annotator page for a layout review, in a real Chromium against the real service.

A street-like 2048x1024 image (sky, buildings, trees, sidewalk, road, cars; a little noise, so that
superpixels have edges to follow) with the 19 Cityscapes classes, 128x128 grid regions and pre-labels
that are slightly off. Each viewport gets a fresh page, submits five regions (so "Recent" is full)
and is shot as the annotator sees it (the viewport, not the full page): 1440x900 and 1280x720 laptops
(also with the superpixel brush on, and with the help open), a tablet in both orientations (touch), and
a phone (its notice). Prints, for each shot, whether Submit and Skip are in view and whether the page
or the sidebar has to scroll.

    .venv/bin/python bench/annotate_screens.py --out /work/results/screens
"""

import argparse
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from bench.annotate_next import serve
from service.auth import create_token
from service.db import engine_for, session_factory
from service.main import create_app
from service.masks import encode_mask_png
from service.models import Base, Cycle, Image, Project, Region
from service.settings import Settings
from service.storage import image_key, prelabel_key, storage_for

W, H, SIDE = 2048, 1024, 128
RECENT_LIMIT = 5  # as web/recent.js
NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
         "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
         "motorcycle", "bicycle"]
COLORS = ["#804080", "#f423e8", "#464646", "#66669c", "#be9999", "#999999", "#faaa1e", "#dcdc00", "#6b8e23",
          "#98fb98", "#4682b4", "#dc143c", "#ff0000", "#00008e", "#000046", "#003c64", "#005064", "#0000e6",
          "#770b20"]
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, CAR = 0, 1, 2, 5, 8, 10, 13
VIEWPORTS = [  # name, size, touch, extra shots
    ("1440x900", (1440, 900), False, ["superpixels"]),
    ("1280x720", (1280, 720), False, ["help"]),
    ("768x1024-touch", (768, 1024), True, []),
    ("1024x768-touch", (1024, 768), True, []),
    ("390x844-phone", (390, 844), True, []),
]
CHECK = """() => {
  const box = (id) => { const e = document.getElementById(id); if (!e || !e.offsetParent) return null;
    const r = e.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; };
  const inView = (b) => !!b && b.x >= 0 && b.y >= 0 && b.x + b.w <= innerWidth && b.y + b.h <= innerHeight;
  const side = document.querySelector('#tools .tools-scroll');
  return { submit_in_view: inView(box('submit')), skip_in_view: inView(box('skip')),
           page_scrolls: document.scrollingElement.scrollHeight > innerHeight
             || document.scrollingElement.scrollWidth > innerWidth,
           sidebar_hidden_px: side && side.offsetParent ? side.scrollHeight - side.clientHeight : null,
           viewport: box('viewport'), canvas: box('viewport') && document.querySelector('.layer-cursor')
             .getBoundingClientRect().width };
}"""


def street(rng) -> tuple[np.ndarray, np.ndarray]:
    """An RGB street scene and its class of every pixel."""
    y, x = np.mgrid[0:H, 0:W]
    labels = np.full((H, W), SKY, np.uint8)
    rgb = np.zeros((H, W, 3), np.float32)
    rgb[:] = np.stack([110 + 60 * y / H, 150 + 50 * y / H, np.full_like(y, 220, dtype=float)], -1)
    for x0 in range(0, W, 230):  # buildings of varied heights, with windows
        top = int(rng.integers(120, 380))
        w = int(rng.integers(170, 240))
        labels[top:560, x0:x0 + w] = BUILDING
        rgb[top:560, x0:x0 + w] = rng.integers(90, 180, 3)
        win = (y[top:560, x0:x0 + w] % 40 < 18) & (x[top:560, x0:x0 + w] % 36 < 16)
        rgb[top:560, x0:x0 + w][win] = (60, 70, 90)
    for cx in rng.integers(0, W, 9):  # trees
        r = int(rng.integers(50, 90))
        crown = (x - cx) ** 2 + (y - 470) ** 2 < r * r
        labels[crown] = VEGETATION
        rgb[crown] = (60, 110, 40)
    for px in range(100, W, 400):  # poles
        labels[250:600, px:px + 8] = POLE
        rgb[250:600, px:px + 8] = (120, 120, 120)
    labels[560:640] = SIDEWALK
    rgb[560:640] = (200, 170, 190)
    labels[640:] = ROAD
    rgb[640:] = (95, 90, 100)
    rgb[(y > 800) & (y < 812) & (x % 160 < 90)] = (235, 235, 235)
    for cx in range(60, W - 300, 330):  # cars
        top = 650 + int(rng.integers(0, 120))
        car = (slice(top, top + 110), slice(cx, cx + 240))
        labels[car] = CAR
        rgb[car] = rng.integers(20, 200, 3)
        rgb[top + 15:top + 50, cx + 40:cx + 200] = (40, 50, 70)
    rgb += rng.normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), labels


def seed(settings: Settings, n: int) -> tuple[int, str]:
    storage = storage_for(settings)
    rng = np.random.default_rng(1)
    rgb, labels = street(rng)
    guess = np.roll(labels, (6, -5), axis=(0, 1))  # the model's boundaries are a little off
    with session_factory(settings.sqlalchemy_url)() as s:
        classes = [{"id": i, "name": name, "color": color}
                   for i, (name, color) in enumerate(zip(NAMES, COLORS, strict=True))]
        project = Project(name="streets", classes=classes, region={"kind": "grid", "size": SIDE}, training={})
        s.add(project)
        s.flush()
        cycle = Cycle(project_id=project.id, number=1, status="succeeded")
        s.add(cycle)
        key = image_key(project.id, "frankfurt_000001", ".png")
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format="PNG")
        storage.write_bytes(key, buf.getvalue())
        image = Image(project_id=project.id, stem="frankfurt_000001", path=key, content_type="image/png",
                      width=W, height=H, split="train")
        s.add(image)
        s.flush()
        for rank in range(n):  # along the cars' row, where the classes meet
            x0, y0 = SIDE * (1 + rank // 4), (640, 512, 768, 384)[rank % 4]
            pre = prelabel_key(project.id, cycle.id, rank)
            storage.write_bytes(pre, encode_mask_png(np.ascontiguousarray(guess[y0:y0 + SIDE, x0:x0 + SIDE])))
            s.add(Region(project_id=project.id, image_id=image.id, cycle_id=cycle.id, x=x0, y=y0, w=SIDE,
                         h=SIDE, score=float(n - rank), prelabel_path=pre))
        s.commit()
        return project.id, create_token(s, "annotator", "annotator")


def shoot(browser, base: str, project_id: int, token: str, out: Path, viewport) -> dict:
    from playwright.sync_api import expect

    name, (w, h), touch, extras = viewport
    context = browser.new_context(viewport={"width": w, "height": h}, has_touch=touch, is_mobile=touch)
    page = context.new_page()
    page.goto(f"{base}/annotate/{project_id}#token={token}")
    result = {}
    if w < 600:
        expect(page.locator("#small-screen")).to_be_visible()
    else:
        expect(page.locator("#region-info div").first).to_be_visible(timeout=30_000)
        for _ in range(RECENT_LIMIT):  # "Recent" is full (the annotator's, over every viewport)
            where = page.locator("#region-info div").nth(1)  # "Region 128×128 at (x, y)"
            before = where.text_content()
            page.keyboard.press("Enter")
            expect(where).not_to_have_text(before, timeout=30_000)
        expect(page.locator("#save-state")).to_have_attribute("data-waiting", "0", timeout=30_000)
        expect(page.locator("#recent button")).to_have_count(RECENT_LIMIT, timeout=10_000)
        page.wait_for_timeout(500)  # the minimap's image
    page.screenshot(path=str(out / f"annotate-{name}.png"))
    result[name] = page.evaluate(CHECK)
    if "superpixels" in extras:
        page.keyboard.press("x")
        expect(page.locator("#superpixel-state")).to_have_text("", timeout=30_000)
        page.screenshot(path=str(out / f"annotate-{name}-superpixels.png"))
        result[f"{name}-superpixels"] = page.evaluate(CHECK)
    if "help" in extras:
        page.keyboard.press("?")
        page.screenshot(path=str(out / f"annotate-{name}-help.png"))
        result[f"{name}-help"] = page.evaluate("""() => {
          const p = document.querySelector('#help .panel').getBoundingClientRect();
          return { help_top: p.top, help_bottom: p.bottom, height: innerHeight }; }""")
    context.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/screens"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/screens.db"
        Base.metadata.create_all(engine_for(url))
        settings = Settings(data_dir=Path(tmp), database_url=url, import_root=Path(tmp), _env_file=None)
        project_id, token = seed(settings, 10 * len(VIEWPORTS))
        server, thread, base = serve(create_app(settings))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--headless"])
            for viewport in VIEWPORTS:
                results.update(shoot(browser, base, project_id, token, args.out, viewport))
            browser.close()
        server.should_exit = True
        thread.join(timeout=10)
    for name, r in results.items():
        print(name, json.dumps(r))
    (args.out / "checks.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
