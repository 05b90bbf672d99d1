"""Going back in a real Chromium: submit a region, reopen it with Shift+Backspace, edit it, send it again,
and the assembled label is the edited mask (the latest wins); the page then returns to the region it put
aside, and a submission a cycle has used can no longer be reopened."""

import numpy as np
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.db import session_factory
from service.labels import assemble_labels
from service.models import Annotation, Cycle, Image, utcnow
from service.storage import storage_for
from tests.e2e.conftest import enter_token, screenshot
from tests.e2e.test_annotator import SIZE, Region, paint_row, seed, stored_mask, wait_annotations
from tests.service.queue_helpers import prelabel_array

pytestmark = [pytest.mark.browser]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_reopen_edit_and_resubmit_the_latest_wins(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    region = Region(page, crop=(0, 0, 96, 96), box=(32, 32))
    page.keyboard.press("2")  # road (id 1)
    page.keyboard.press("f")
    region.click(2, 2)  # the pre-label's left half (class 0) becomes road
    page.keyboard.press("Enter")
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")
    first = wait_annotations(settings, 1)[0]
    submitted = prelabel_array(SIZE, SIZE)
    submitted[:, : SIZE // 2] = 1
    assert np.array_equal(stored_mask(settings, first), submitted)

    page.keyboard.press("Shift+Backspace")  # go back: the last submission, as it was submitted
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    expect(page.locator("#message")).to_contain_text("Editing your submission")
    expect(page.locator("#recent button.active")).to_have_attribute("data-region", str(first.region_id))
    page.keyboard.press("e")  # erase three rows: they must end unlabeled, not keep the earlier class
    region.stroke((0, 10), (31, 10))
    screenshot(page, "annotator-go-back")
    page.keyboard.press("Enter")
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")  # back to the region put aside
    anns = wait_annotations(settings, 2)
    assert len(anns) == 2 and anns[1].region_id == first.region_id
    edited = submitted.copy()
    paint_row(edited, 10, 0, 31, 3, 255)
    assert np.array_equal(stored_mask(settings, anns[1]), edited)
    with session_factory(settings.sqlalchemy_url)() as s:
        assert s.get(Annotation, first.id).review_state == "superseded"
        labels = assemble_labels(s, storage_for(settings), s.get(Image, first.image_id))
    assert np.array_equal(labels[32:64, 32:64], edited)
    expect(page.locator("#recent button").first).to_have_attribute("data-annotation", str(anns[1].id))
    expect(page.locator("#counter")).to_contain_text("Done 1")  # a revision is no new region

    page.keyboard.press("Enter")  # the region put aside still holds its lease: it submits as usual
    anns = wait_annotations(settings, 3)
    assert len(anns) == 3 and anns[2].region_id == seeded.region_ids[1] and not anns[2].late

    # A cycle starts: both submissions are now part of it and cannot be reopened.
    with session_factory(settings.sqlalchemy_url)() as s:
        s.add(Cycle(project_id=seeded.project_id, number=2, status="running", started_at=utcnow()))
        s.commit()
    page.keyboard.press("Shift+Backspace")
    expect(page.locator("#message")).to_contain_text("No earlier submission can be edited")
    expect(page.locator("#recent button")).to_have_count(2)
    for button in page.locator("#recent button").all():
        expect(button).to_be_disabled()
        assert "cycle 2 has already used it" in button.get_attribute("title")
    with session_factory(settings.sqlalchemy_url)() as s:
        assert len(s.scalars(select(Annotation)).all()) == 3
    assert page.errors == []
