"""Dominant-class regions in a real Chromium: the superpixel is shown filled with the pre-label's majority
class inside it; a class key, a click on the palette or Enter alone answers; the stored mask is the class
on the superpixel's pixels and 255 on the rest of its box."""

import numpy as np
import pytest
from playwright.sync_api import expect

from service.db import session_factory
from tests.e2e.conftest import enter_token, screenshot
from tests.e2e.test_annotator import stored_mask, wait_annotations
from tests.service.dominant_helpers import make_dominant
from tests.service.queue_helpers import seed_queue, token_row

pytestmark = [pytest.mark.browser]
# Three regions of the 128x96 image, each turned into the superpixel under one of these pixels (x, y).
POINTS = [(75, 45), (20, 20), (100, 70)]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_class_key_a_palette_click_or_enter_answers_a_superpixel(live_url, settings, page):
    with session_factory(settings.sqlalchemy_url)() as s:
        seeded = seed_queue(s, settings, size=32, grid=(128, 96), boxes=[(32, 32), (0, 0), (64, 64)])
        regions = [make_dominant(s, settings, seeded, i, at=p) for i, p in enumerate(POINTS)]
        token, _ = token_row(s, "alice")
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    info, active = page.locator("#region-info"), page.locator("#palette button.active")

    # Preselected: the pre-label's majority inside the superpixel (car, id 2), not over its box (road).
    for r in regions:
        assert np.bincount(r.prelabel[r.shape]).argmax() == 2
        assert np.bincount(r.prelabel.ravel()).argmax() == 1
    expect(info).to_contain_text("One class for the whole superpixel")
    expect(active).to_have_attribute("data-class", "2")
    screenshot(page, "annotator-dominant-region")
    page.keyboard.press("1")  # the first class key: background, id 0
    expect(active).to_have_attribute("data-class", "0")
    page.keyboard.press("Enter")

    x1, y1 = regions[1].box[:2]
    expect(info).to_contain_text(f"at ({x1}, {y1})")
    expect(active).to_have_attribute("data-class", "2")
    page.keyboard.press("Enter")  # the preselected class, confirmed

    x2, y2 = regions[2].box[:2]
    expect(info).to_contain_text(f"at ({x2}, {y2})")
    page.locator("#palette button[data-class='1']").click()  # road, by one click on the palette
    page.keyboard.press("Enter")

    anns = wait_annotations(settings, 3)
    assert [a.region_id for a in anns] == [r.region_id for r in regions]
    for ann, r, class_id in zip(anns, regions, [0, 2, 1], strict=True):
        got = stored_mask(settings, ann)
        assert not r.shape.all() and np.array_equal(got, np.where(r.shape, class_id, 255)), ann.region_id
        assert ann.strokes == 1
    assert page.errors == []
