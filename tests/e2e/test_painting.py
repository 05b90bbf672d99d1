"""The painting tools in a real Chromium against the running service: the class keys (the same rule on
the annotate and tagging pages), polygon fill, magic wand, superpixel brush and regions, pan and pinch,
hiding the pre-label, Alt+click picking, the brush cursor kept to the region's shape, superpixel tools on
a grid project (their map fetched in the background, never delaying a region), the layout at laptop and
tablet sizes, and the phone's notice instead of a canvas."""

import io
from collections import deque

import numpy as np
import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from service.db import session_factory
from service.models import Image, Lease, Project
from service.storage import storage_for
from tests.e2e.conftest import enter_token, screenshot
from tests.e2e.test_annotator import Region, brush, paint_row, stored_mask, wait_annotations
from tests.service.queue_helpers import CLASSES, prelabel_array, seed_queue, token_row
from tests.service.superpixel_helpers import make_superpixel_region, slanted_ids, write_superpixels

pytestmark = [pytest.mark.browser]
SIZE = 32
MORE = ["person", "rider", "truck", "bus", "train", "motorcycle", "bicycle", "pole", "sign", "light",
        "vegetation"]
MANY = CLASSES + [{"id": i, "name": n, "color": f"#{37 * i % 256:02x}{91 * i % 256:02x}{53 * i % 256:02x}"}
                  for i, n in enumerate(MORE, start=3)]  # 14 classes: two banks of keys


def open_page(live_url, settings, page, *, boxes=((32, 32), (64, 32)), classes=None, superpixels=None):
    with session_factory(settings.sqlalchemy_url)() as s:
        seeded = seed_queue(s, settings, size=SIZE, grid=(128, 96), boxes=list(boxes), prelabel=True)
        token, _ = token_row(s, "alice")
        if classes:
            s.get(Project, seeded.project_id).classes = classes
            s.commit()
        if superpixels is not None:
            ids, region_index, sp = superpixels
            write_superpixels(settings, seeded.project_id, seeded.image_ids[0], ids)
            make_superpixel_region(s, seeded.region_ids[region_index], ids, sp)
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    return seeded, token


def image_pixels(settings, seeded) -> np.ndarray:
    with session_factory(settings.sqlalchemy_url)() as s:
        path = s.get(Image, seeded.image_ids[0]).path
    data = storage_for(settings).read_bytes(path)
    return np.array(PILImage.open(io.BytesIO(data)).convert("RGB")).astype(int)


def kbd_labels(page) -> list[str]:
    return page.locator("#palette kbd").all_inner_texts()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_class_keys_are_palette_positions_on_both_pages(live_url, settings, page):
    seeded, token = open_page(live_url, settings, page, classes=MANY)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "⇧1", "⇧2", "⇧3", "⇧4"]
    assert kbd_labels(page) == keys
    active = page.locator("#palette button.active")
    for press, class_id in [("1", 0), ("3", 2), ("0", 9), ("Shift+2", 11), ("Shift+4", 13)]:
        page.keyboard.press(press)
        expect(active).to_have_attribute("data-class", str(class_id))
    page.keyboard.press("/")  # type-ahead by name
    page.keyboard.type("moto")
    page.keyboard.press("Enter")
    expect(active).to_have_attribute("data-class", "8")
    page.keyboard.press("/")
    page.keyboard.type("veg")
    page.keyboard.press("Escape")  # cancelled: the class stays
    expect(active).to_have_attribute("data-class", "8")

    page.goto(f"{live_url}/tag/{seeded.project_id}")
    expect(page.locator("#palette button")).to_have_count(len(MANY))
    expect(page.locator("#progress")).to_have_text("0 tagged · 1 to go")  # the page takes keys from here
    assert kbd_labels(page) == keys
    pressed = page.locator("#palette button[aria-pressed='true']")
    for press in ["3", "0", "Shift+2"]:
        page.keyboard.press(press)
    assert sorted(int(b.get_attribute("data-class-id")) for b in pressed.all()) == [2, 9, 11]
    page.keyboard.press("/")
    page.keyboard.type("moto")
    page.keyboard.press("Enter")
    expect(pressed).to_have_count(4)
    expect(page.locator("#palette button[data-class-id='8']")).to_have_attribute("aria-pressed", "true")
    screenshot(page, "tagging-keys")
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("size", [(1280, 720), (1440, 900), (768, 1024)])
def test_layout_keeps_submit_in_view(live_url, settings, page, size):
    w, h = size
    page.set_viewport_size({"width": w, "height": h})
    open_page(live_url, settings, page, classes=MANY)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    for button in ["#submit", "#skip", "#undo", "#brush-size-range"]:
        expect(page.locator(button)).to_be_in_viewport(ratio=1)
    assert page.evaluate("document.scrollingElement.scrollHeight") <= h  # the page itself never scrolls
    canvas = page.locator(".layer-cursor").bounding_box()
    viewport = page.locator("#viewport").bounding_box()
    if w > 900:  # a laptop: the square crop as tall as the window allows; the sidebar takes what it leaves
        assert canvas["height"] >= viewport["height"] - 20
    else:  # a tablet in portrait: the canvas gets the full width
        assert viewport["width"] >= w - 10
    assert canvas["width"] > 0.8 * min(viewport["width"], viewport["height"])
    if w / h >= 1.5:  # a wide laptop screen: every tool in view, nothing in the sidebar to scroll to
        assert page.locator("#tools .tools-scroll").evaluate("e => e.scrollHeight <= e.clientHeight")
    page.wait_for_timeout(300)  # the minimap's image
    screenshot(page, f"annotator-{w}x{h}")
    page.keyboard.press("?")
    panel = page.locator("#help .panel").bounding_box()
    assert panel["y"] >= 0 and panel["y"] + panel["height"] <= h  # the help scrolls inside, never off the top
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_loading_indicator_before_the_first_region(live_url, settings, page):
    with session_factory(settings.sqlalchemy_url)() as s:
        seeded = seed_queue(s, settings, size=SIZE, grid=(128, 96), boxes=[(32, 32)], prelabel=True)
        token, _ = token_row(s, "alice")
    page.route("**/crop*", lambda route: (page.wait_for_timeout(700), route.continue_()))
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#loading")).to_be_visible()
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    expect(page.locator("#loading")).to_be_hidden()


def pnpoly_with_outline(points, w, h) -> np.ndarray:
    """Reference rasterisation: pixel centres inside by PNPOLY's crossing rule, plus the Bresenham outline."""
    out = np.zeros((h, w), np.uint8)
    n = len(points)
    for y in range(h):
        for x in range(w):
            inside = False
            for i in range(n):
                (ax, ay), (bx, by) = points[i], points[(i + 1) % n]
                if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                    inside = not inside
            out[y, x] = inside
    for i in range(n):
        (x, y), (bx, by) = points[i], points[(i + 1) % n]
        dx, dy = abs(bx - x), -abs(by - y)
        sx, sy = (1 if x < bx else -1), (1 if y < by else -1)
        err = dx + dy
        while True:
            out[y, x] = 1
            if (x, y) == (bx, by):
                break
            e2 = 2 * err
            if e2 >= dy:
                err, x = err + dy, x + sx
            if e2 <= dx:
                err, y = err + dx, y + sy
    return out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_polygon_fill_and_refused_polygons(live_url, settings, page):
    seeded, _ = open_page(live_url, settings, page)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    page.keyboard.press("2")  # the 2nd class: road (id 1)
    page.keyboard.press("g")
    expect(page.locator("[data-tool=polygon]")).to_have_class("active")
    for bad in ([(3, 3), (20, 3)], [(2, 2), (20, 20), (20, 2), (2, 20)]):  # two vertices; a bow tie
        for p in bad:
            region.click(*p)
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_contain_text("Polygon not filled")
    expect(page.locator("#undo")).to_be_disabled()  # nothing was painted
    region.click(5, 5)
    region.click(9, 9)
    page.keyboard.press("Escape")  # cancelled
    vertices = [(3, 4), (27, 2), (29, 25), (14, 18), (4, 28)]
    for p in vertices:
        region.click(*p)
    page.keyboard.press("Enter")  # closes and fills
    expect(page.locator("#undo")).to_be_enabled()
    page.keyboard.press("Enter")  # submits
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")
    expected = prelabel_array(SIZE, SIZE)
    expected[pnpoly_with_outline(vertices, SIZE, SIZE) == 1] = 1
    got = stored_mask(settings, wait_annotations(settings, 1)[0])
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:10]
    assert page.errors == []


def reference_wand(rgb: np.ndarray, x: int, y: int, tolerance: int) -> np.ndarray:
    h, w, _ = rgb.shape
    out = np.zeros((h, w), bool)
    seed = rgb[y, x]
    near = (np.abs(rgb - seed) <= tolerance).all(axis=2)
    queue = deque([(x, y)])
    out[y, x] = True
    while queue:
        px, py = queue.popleft()
        for nx, ny in ((px - 1, py), (px + 1, py), (px, py - 1), (px, py + 1)):
            if 0 <= nx < w and 0 <= ny < h and not out[ny, nx] and near[ny, nx]:
                out[ny, nx] = True
                queue.append((nx, ny))
    return out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_magic_wand_fills_similar_colours_in_the_region(live_url, settings, page):
    seeded, _ = open_page(live_url, settings, page)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    page.keyboard.press("2")
    page.keyboard.press("w")
    expect(page.locator("#wand-tolerance-value")).to_have_text("24")
    page.keyboard.press(",")
    page.keyboard.press(",")  # 24 - 2*4
    expect(page.locator("#wand-tolerance-value")).to_have_text("16")
    rgb = image_pixels(settings, seeded)[32:64, 32:64]
    seed = (2, 28)  # on the road (the image's lower half)
    region.click(*seed)
    page.keyboard.press("Enter")
    expected = prelabel_array(SIZE, SIZE)
    selection = reference_wand(rgb, *seed, 16)
    assert 40 < selection.sum() < SIZE * SIZE  # a real area, bounded by the region and the colours
    expected[selection] = 1
    got = stored_mask(settings, wait_annotations(settings, 1)[0])
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:10]
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_superpixel_brush_click_and_region_shape(live_url, settings, page):
    ids = slanted_ids(128, 96)
    sp = int(ids[45, 75])
    seeded, _ = open_page(live_url, settings, page, superpixels=(ids, 1, sp))
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    page.keyboard.press("3")  # car (id 2)
    page.keyboard.press("x")
    for _ in range(3):
        page.keyboard.press("[")
    expect(page.locator("#brush-size")).to_have_text("1")
    region.click(3, 3)  # one superpixel
    page.keyboard.press("2")  # road
    region.stroke((10, 20), (25, 20))  # every superpixel along the stroke
    page.keyboard.press("1")  # background
    page.keyboard.press("g")
    vertices = [(14, 2), (30, 2), (30, 14)]
    for p in vertices:
        region.click(*p)
    page.keyboard.press("Shift+Enter")  # the polygon snapped to superpixels
    page.keyboard.press("Enter")
    own = ids[32:64, 32:64]
    expected = prelabel_array(SIZE, SIZE)
    expected[own == own[3, 3]] = 2
    expected[np.isin(own, np.unique(own[20, 10:26]))] = 1
    inside = pnpoly_with_outline(vertices, SIZE, SIZE) == 1
    snapped = [s for s in np.unique(own) if 2 * (inside & (own == s)).sum() >= (own == s).sum()]
    assert snapped and not np.isin(own, snapped)[inside].all()  # the snap both adds and drops pixels
    expected[np.isin(own, snapped)] = 0
    got = stored_mask(settings, wait_annotations(settings, 1)[0])
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:10]

    # The superpixel region: shown and submitted as its own shape, 255 everywhere else in its box. A
    # flood fill from inside it fills the superpixel only, though the whole box starts unlabeled.
    ys, xs = np.nonzero(ids == sp)
    x, y = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
    expect(page.locator("#region-info")).to_contain_text("superpixel (its own shape)")
    ctx = max(16, min(256, max(w, h)))
    cx, cy = max(0, x - ctx), max(0, y - ctx)
    crop = (cx, cy, min(128, x + w + ctx) - cx, min(96, y + h + ctx) - cy)
    page.keyboard.press("f")
    Region(page, crop=crop, box=(x, y)).click(75 - x, 45 - y)
    screenshot(page, "annotator-superpixel-region")
    page.keyboard.press("Enter")
    got = stored_mask(settings, wait_annotations(settings, 2)[1])
    shape = ids[y:y + h, x:x + w] == sp
    assert got.shape == (h, w) and not shape.all()
    assert (got[~shape] == 255).all() and (got[shape] == 0).all()  # background, the class last chosen
    assert page.errors == []


def view_state(page) -> dict:
    return page.evaluate("""() => { const v = document.getElementById('viewport');
        const width = document.querySelector('.stage').offsetWidth;
        return {left: v.scrollLeft, top: v.scrollTop, width}; }""")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pan_and_zoom_change_the_view_not_the_mask(live_url, settings, page):
    open_page(live_url, settings, page)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    for _ in range(4):
        page.keyboard.press("+")  # zoomed in: the crop is larger than the viewport, so it can pan
    box = page.locator("#viewport").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = view_state(page)
    page.keyboard.down("Space")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 120, cy - 80, steps=6)
    page.mouse.up()
    page.keyboard.up("Space")
    after = view_state(page)
    assert after["left"] > before["left"] + 60 and after["top"] > before["top"] + 40
    page.mouse.move(cx, cy)
    page.mouse.down(button="middle")
    page.mouse.move(cx + 100, cy, steps=6)
    page.mouse.up(button="middle")
    assert view_state(page)["left"] < after["left"] - 50
    expect(page.locator("#undo")).to_be_disabled()  # no paint from either drag
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pinch_zooms_and_two_fingers_do_not_paint(live_url, settings, chromium):
    context = chromium.new_context(viewport={"width": 768, "height": 1024}, has_touch=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    try:
        open_page(live_url, settings, page)
        expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
        cdp = context.new_cdp_session(page)
        box = page.locator("#viewport").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        width = view_state(page)["width"]

        def touch(kind, spread):
            points = [{"x": cx - spread, "y": cy, "id": 0}, {"x": cx + spread, "y": cy, "id": 1}]
            points = [] if kind == "touchEnd" else points
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", 30)
        for spread in range(40, 130, 10):
            touch("touchMove", spread)
        touch("touchEnd", 0)
        assert view_state(page)["width"] > 2 * width  # zoomed in about the fingers' spread
        expect(page.locator("#undo")).to_be_disabled()  # and nothing painted
        assert page.errors == []
    finally:
        context.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hide_prelabel_only_hide_all_and_alt_click_pick(live_url, settings, page):
    open_page(live_url, settings, page)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    opacity = lambda layer: page.locator(f".layer-{layer}").evaluate("c => c.style.opacity")  # noqa: E731
    page.keyboard.press("h")
    expect(page.locator("#prelabel-visible")).not_to_be_checked()
    assert opacity("prelabel") == "0" and opacity("label") == "0.5"
    page.keyboard.press("o")
    assert opacity("prelabel") == "0" and opacity("label") == "0"
    page.keyboard.press("o")
    page.keyboard.press("h")
    assert opacity("prelabel") == "0.5" and opacity("label") == "0.5"

    active = page.locator("#palette button.active")
    page.keyboard.press("2")
    expect(active).to_have_attribute("data-class", "1")
    page.keyboard.down("Alt")
    region.click(25, 10)  # the pre-label's right half: class 2
    page.keyboard.up("Alt")
    expect(active).to_have_attribute("data-class", "2")
    expect(page.locator("#undo")).to_be_disabled()  # picking paints nothing
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_phone_is_told_painting_needs_a_larger_screen(live_url, settings, chromium):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    try:
        with session_factory(settings.sqlalchemy_url)() as s:
            seeded = seed_queue(s, settings, size=SIZE, grid=(128, 96), boxes=[(32, 32)], prelabel=True)
            token, _ = token_row(s, "alice")
        page.goto(f"{live_url}/annotate/{seeded.project_id}#token={token}")
        notice = page.locator("#small-screen")
        expect(notice).to_contain_text("Painting is not supported on phones")
        expect(notice).to_be_in_viewport()
        expect(page.locator("#workspace")).to_be_hidden()
        expect(page.locator("#loading")).to_be_hidden()
        screenshot(page, "annotator-390x844")
        with session_factory(settings.sqlalchemy_url)() as s:
            assert s.query(Lease).count() == 0  # no region taken from the queue

        page.locator("#tag-instead").click()  # the tagging page works on the phone
        expect(page.locator("#progress")).to_have_text("0 tagged · 1 to go")
        for part in ["#image", "#palette button >> nth=2", "#submit"]:
            expect(page.locator(part)).to_be_in_viewport()
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 390  # no sideways scrolling
        screenshot(page, "tagging-390x844")
        assert page.errors == []
    finally:
        context.close()


def cursor_pixels(page) -> set[tuple[int, int]]:
    """The crop pixels the brush cursor is drawn on."""
    return {tuple(p) for p in page.locator(".layer-cursor").evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, out = [];
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3]) out.push([(i / 4) % c.width, Math.floor(i / 4 / c.width)]);
        }
        return out; }""")}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_brush_cursor_shows_only_where_it_paints(live_url, settings, page):
    ids = slanted_ids(128, 96)
    sp = int(ids[45, 75])
    open_page(live_url, settings, page, superpixels=(ids, 0, sp))  # the superpixel region comes first
    expect(page.locator("#region-info")).to_contain_text("superpixel (its own shape)")
    ys, xs = np.nonzero(ids == sp)
    x, y = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
    ctx = max(16, min(256, max(w, h)))
    cx, cy = max(0, x - ctx), max(0, y - ctx)
    crop = (cx, cy, min(128, x + w + ctx) - cx, min(96, y + h + ctx) - cy)
    for _ in range(6):
        page.keyboard.press("]")
    expect(page.locator("#brush-size")).to_have_text("9")
    shape = ids == sp
    at = (75 - x, 45 - y)  # a pixel of the superpixel; the brush reaches past its edges
    page.mouse.move(*Region(page, crop=crop, box=(x, y)).point(*at))
    footprint = {(x + at[0] + dx, y + at[1] + dy) for dx, dy in brush(9)}
    inside = {(px, py) for px, py in footprint if 0 <= px < 128 and 0 <= py < 96 and shape[py, px]}
    assert inside and inside != footprint  # the brush straddles the shape's edge
    expect(page.locator(".layer-cursor")).to_have_attribute("width", str(crop[2]))
    assert cursor_pixels(page) == {(px - cx, py - cy) for px, py in inside}
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_superpixel_tools_on_a_grid_project(live_url, settings, page):
    """No map is cached for a grid project: the service segments the crop, and the superpixel brush fills
    the superpixels it touches in that map."""
    seeded, token = open_page(live_url, settings, page)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    rid = seeded.region_ids[0]
    r = page.request.get(f"{live_url}/api/regions/{rid}/superpixels?context=32",
                         headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and r.headers["x-superpixel-source"] == "computed"
    crop_ids = np.array(PILImage.open(io.BytesIO(r.body())))
    assert crop_ids.shape == (96, 96)
    own = crop_ids[32:64, 32:64]
    assert len(np.unique(own)) >= 4  # several superpixels in the region: something to choose from
    layer = page.locator(".layer-superpixels")
    expect(layer).to_be_hidden()  # on a grid region the lines show only with a tool that uses them
    expect(page.locator("#superpixel-state")).to_have_text("")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    page.keyboard.press("3")  # car (id 2)
    page.keyboard.press("x")
    expect(layer).to_be_visible()
    for _ in range(2):
        page.keyboard.press("[")
    expect(page.locator("#brush-size")).to_have_text("1")
    region.click(4, 4)
    region.click(20, 26)
    page.keyboard.press("Enter")
    expected = prelabel_array(SIZE, SIZE)
    expected[np.isin(own, [own[4, 4], own[26, 20]])] = 2
    got = stored_mask(settings, wait_annotations(settings, 1)[0])
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:10]
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_grid_region_never_waits_for_its_superpixel_map(live_url, settings, page):
    """A grid region's map is asked for only once a superpixel tool is on, and in the background: while
    the service has not answered, the region is shown and paintable and Enter shows the next one; the
    superpixel brush works once the map came."""
    held, gate = [], {"open": False}  # the map requests, held until the gate opens

    def hold(route):
        return route.continue_() if gate["open"] else held.append(route)

    page.route("**/api/regions/*/superpixels*", hold)
    seeded, token = open_page(live_url, settings, page, boxes=((32, 32), (64, 32), (32, 64)))
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    expect(page.locator("#counter")).to_contain_text("queue 1")  # the next region is prefetched
    assert held == []  # no tool uses superpixels yet: no map asked for
    page.keyboard.press("x")
    expect(page.locator("#superpixel-state")).to_have_text("Superpixels: still loading.")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    region.click(4, 4)
    expect(page.locator("#message")).to_contain_text("still loading")
    expect(page.locator("#undo")).to_be_disabled()  # the brush waits for the map; the region does not
    page.keyboard.press("2")  # road
    page.keyboard.press("b")
    region.stroke((2, 5), (20, 5))
    expect(page.locator("#undo")).to_be_enabled()
    page.keyboard.press("x")
    page.keyboard.press("Enter")
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")
    assert len(held) >= 2  # both regions' maps asked for, none answered: the next region did not wait
    first = prelabel_array(SIZE, SIZE)
    paint_row(first, 5, 2, 20, 3, 1)
    assert np.array_equal(stored_mask(settings, wait_annotations(settings, 1)[0]), first)

    gate["open"] = True
    for route in held:
        route.continue_()
    expect(page.locator("#superpixel-state")).to_have_text("")
    page.keyboard.press("3")  # car
    for _ in range(2):
        page.keyboard.press("[")
    Region(page, crop=(32, 0, 96, 96), box=(64, 32)).click(10, 12)
    page.keyboard.press("Enter")
    r = page.request.get(f"{live_url}/api/regions/{seeded.region_ids[1]}/superpixels?context=32",
                         headers={"Authorization": f"Bearer {token}"})
    own = np.array(PILImage.open(io.BytesIO(r.body())))[32:64, 32:64]
    second = prelabel_array(SIZE, SIZE)
    second[own == own[12, 10]] = 2
    assert np.array_equal(stored_mask(settings, wait_annotations(settings, 2)[1]), second)
    assert page.errors == []
