"""The annotator page in a real Chromium against the running service: paint, undo, submit with Enter,
and the stored PNG holds exactly the painted pixels; keyboard shortcuts; skip; the empty queue."""

import time

import numpy as np
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.db import session_factory
from service.masks import decode_mask_png
from service.models import Annotation, Lease
from service.storage import storage_for
from tests.e2e.conftest import enter_token, screenshot
from tests.service.queue_helpers import CLASSES, prelabel_array, seed_queue, token_row

pytestmark = [pytest.mark.browser]
SIZE = 32  # region side; the crop adds 32 px of context, clipped to the 128×96 image


def brush(size: int) -> list[tuple[int, int]]:
    """The page's round brush (web/editor.js brushOffsets): pixel centres within size/2."""
    reach = size // 2
    return [(dx, dy) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
            if dx * dx + dy * dy <= size * size / 4]


def paint_row(arr: np.ndarray, y: int, x0: int, x1: int, size: int, value: int) -> None:
    h, w = arr.shape
    for x in range(x0, x1 + 1):
        for dx, dy in brush(size):
            if 0 <= x + dx < w and 0 <= y + dy < h:
                arr[y + dy, x + dx] = value


def seed(settings, *, boxes, prelabel=True):
    with session_factory(settings.sqlalchemy_url)() as s:
        seeded = seed_queue(s, settings, size=SIZE, grid=(128, 96), boxes=boxes, prelabel=prelabel)
        token, _ = token_row(s, "alice")
    return seeded, token


class Region:
    """Screen geometry of the shown region: the cursor canvas spans the crop."""

    def __init__(self, page, crop: tuple[int, int, int, int], box: tuple[int, int]):
        self.page = page
        self.canvas = page.locator(".layer-cursor")
        self.crop_x, self.crop_y, self.crop_w, self.crop_h = crop
        self.x, self.y = box

    def point(self, i: int, j: int) -> tuple[float, float]:
        bb = self.canvas.bounding_box()
        sx, sy = bb["width"] / self.crop_w, bb["height"] / self.crop_h
        return (bb["x"] + (self.x - self.crop_x + i + 0.5) * sx,
                bb["y"] + (self.y - self.crop_y + j + 0.5) * sy)

    def stroke(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        mouse = self.page.mouse
        mouse.move(*self.point(*a))
        mouse.down()
        mouse.move(*self.point(*b), steps=12)
        mouse.up()

    def click(self, i: int, j: int) -> None:
        self.page.mouse.click(*self.point(i, j))


def wait_annotations(settings, n: int, timeout: float = 10) -> list[Annotation]:
    deadline = time.monotonic() + timeout
    while True:
        with session_factory(settings.sqlalchemy_url)() as s:
            rows = list(s.scalars(select(Annotation).order_by(Annotation.id)))
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def stored_mask(settings, ann: Annotation) -> np.ndarray:
    data = storage_for(settings).read_bytes(ann.mask_path)
    return decode_mask_png(data, ann.w, ann.h, len(CLASSES))


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_paint_two_classes_undo_submit_with_enter(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    expect(page.locator("#palette button")).to_have_count(3)
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))

    page.keyboard.press("2")  # keys are palette positions: the 2nd class is id 1
    region.stroke((2, 5), (20, 5))  # class 1, brush 3
    page.keyboard.press("3")
    region.stroke((10, 3), (10, 28))  # class 2, vertical, over the pre-label's class 0 ...
    page.keyboard.press("Control+z")  # ... undone
    page.keyboard.press("]")
    page.keyboard.press("]")
    expect(page.locator("#brush-size")).to_have_text("5")
    region.stroke((5, 20), (15, 20))  # class 2, brush 5
    screenshot(page, "annotator")
    page.keyboard.press("Enter")

    # The next region was prefetched: it is on screen right away and the counter moved.
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")
    expect(page.locator("#counter")).to_contain_text("Done 1")
    anns = wait_annotations(settings, 1)
    assert len(anns) == 1 and anns[0].region_id == seeded.region_ids[0] and not anns[0].late
    expected = prelabel_array(SIZE, SIZE)
    paint_row(expected, 5, 2, 20, 3, 1)
    paint_row(expected, 20, 5, 15, 5, 2)
    got = stored_mask(settings, anns[0])
    assert got.shape == (SIZE, SIZE)
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:10]
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_shortcuts_fill_eraser_overlay_help_and_skip(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(0, 0), (96, 64)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (0, 0)")
    region = Region(page, crop=(0, 0, 64, 64), box=(0, 0))

    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()

    page.keyboard.press("o")  # every overlay (H hides only the pre-label: tests/e2e/test_painting.py)
    expect(page.locator("#overlay-visible")).not_to_be_checked()
    assert page.locator(".layer-label").evaluate("c => c.style.opacity") == "0"
    page.keyboard.press("o")
    expect(page.locator("#overlay-visible")).to_be_checked()

    page.keyboard.press("2")
    page.keyboard.press("f")
    expect(page.locator("[data-tool=fill]")).to_have_class("active")
    region.click(3, 3)  # the pre-label's left half (class 0) becomes class 1
    page.keyboard.press("e")
    expect(page.locator("[data-tool=eraser]")).to_have_class("active")
    page.keyboard.press("[")
    page.keyboard.press("[")
    expect(page.locator("#brush-size")).to_have_text("1")
    region.stroke((20, 10), (30, 10))  # erase to unlabeled, one pixel wide, across both halves
    page.keyboard.press("b")
    page.keyboard.press("1")
    region.stroke((0, 31), (31, 31))  # the bottom row becomes class 0
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+Shift+z")  # redo it
    page.keyboard.press("Enter")

    anns = wait_annotations(settings, 1)
    expected = prelabel_array(SIZE, SIZE)
    expected[expected == 0] = 1
    expected[10, 20:31] = 255
    expected[31, :] = 0
    assert np.array_equal(stored_mask(settings, anns[0]), expected)

    # S skips with a reason; the queue is then empty and the page says so.
    expect(page.locator("#region-info")).to_contain_text("at (96, 64)")
    page.keyboard.press("s")
    expect(page.locator("#skip-dialog")).to_be_visible()
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("The queue is empty")
    with session_factory(settings.sqlalchemy_url)() as s:
        skipped = s.scalars(select(Lease).where(Lease.state == "skipped")).all()
    assert [(lease.region_id, lease.reason) for lease in skipped] == [(seeded.region_ids[1], "not sure")]
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_empty_queue_message(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(0, 0)])
    with session_factory(settings.sqlalchemy_url)() as s:
        _, other = token_row(s, "bob")
        from service.queue import lease_next

        assert lease_next(s, settings, seeded.project_id, other) is not None  # bob holds the only region
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#message")).to_contain_text("The queue is empty")
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#counter")).to_contain_text("queue 0")
    screenshot(page, "annotator-empty")
    assert page.errors == []
