"""The review page (accept, reject with a reason, fix) and a gold region scored, in a real Chromium; the
dashboard's effort and label-quality panels."""

import numpy as np
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.annotations import submit_annotation
from service.db import session_factory
from service.gold import gold_from_oracle
from service.masks import encode_mask_png
from service.models import Annotation, Image, Project, Region
from service.quality import forget_quality
from service.queue import lease_next
from service.storage import oracle_key, storage_for
from tests.e2e.conftest import enter_token, screenshot
from tests.e2e.test_annotator import SIZE, seed, wait_annotations
from tests.e2e.test_annotator import Region as Screen
from tests.service.queue_helpers import mask_bytes, token_row

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def set_quality(settings, project_id, **quality):
    with session_factory(settings.sqlalchemy_url)() as s:
        s.get(Project, project_id).quality = quality
        s.commit()
    forget_quality(project_id)


def test_review_accept_reject_fix(live_url, settings, page):
    seeded, _ = seed(settings, boxes=[(32, 32), (64, 32), (0, 0)])
    set_quality(settings, seeded.project_id, review="all")
    with session_factory(settings.sqlalchemy_url)() as s:
        _, bob = token_row(s, "bob")
        for value in (1, 2, 1):
            region = lease_next(s, settings, seeded.project_id, bob)
            png = mask_bytes(np.full((SIZE, SIZE), value, np.uint8))
            submit_annotation(s, settings, region.lease_id, bob, png)
        reviewer, _ = token_row(s, "rita", "reviewer")
    page.goto(f"{live_url}/review/{seeded.project_id}")
    enter_token(page, reviewer)
    expect(page.locator("#annotator")).to_have_text("bob")
    expect(page.locator("#counter")).to_contain_text("waiting 3")
    screenshot(page, "review-page")
    page.keyboard.press("a")
    expect(page.locator("#message")).to_contain_text("accepted")
    expect(page.locator("#counter")).to_contain_text("waiting 2")
    page.keyboard.press("r")
    page.locator("#reject-reason").fill("car painted as road")
    page.locator("#reject-reason").press("Enter")
    expect(page.locator("#message")).to_contain_text("rejected")
    expect(page.locator("#counter")).to_contain_text("waiting 1")
    page.keyboard.press("x")  # nothing painted yet: refused
    expect(page.locator("#message")).to_contain_text("Nothing was changed")
    with session_factory(settings.sqlalchemy_url)() as s:
        last = s.scalars(select(Annotation).order_by(Annotation.id.desc())).first()
        box, crop_ctx = (last.x, last.y), 32
    crop = (max(0, box[0] - crop_ctx), max(0, box[1] - crop_ctx))
    crop_w = min(128, box[0] + SIZE + crop_ctx) - crop[0]
    crop_h = min(96, box[1] + SIZE + crop_ctx) - crop[1]
    page.keyboard.press("3")  # the 3rd class of the palette: id 2
    Screen(page, crop=(*crop, crop_w, crop_h), box=box).stroke((2, 5), (20, 5))
    page.keyboard.press("x")
    expect(page.locator("#message")).to_contain_text("Nothing awaits review")
    with session_factory(settings.sqlalchemy_url)() as s:
        anns = s.scalars(select(Annotation).order_by(Annotation.id)).all()
        states = [(a.source, a.review_state, a.in_labels) for a in anns]
        rejected = next(a for a in anns if a.review_state == "rejected")
        assert rejected.review_reason == "car painted as road"
        assert s.get(Region, rejected.region_id).status == "queued"
        fix = anns[-1]
        fixed_mask = storage_for(settings).read_bytes(fix.mask_path)
    assert states == [("human", "accepted", True), ("human", "rejected", False), ("human", "fixed", False),
                      ("review", "accepted", True)]
    from service.masks import decode_mask_png

    got = decode_mask_png(fixed_mask, SIZE, SIZE, 3)
    assert (got[5, 2:21] == 2).all() and (got[15, :] == 1).all()
    assert page.errors == []


def test_a_gold_region_is_scored_and_the_quality_panel_shows_it(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32)])
    with session_factory(settings.sqlalchemy_url)() as s:
        image = s.get(Image, seeded.image_ids[0])
        truth = np.zeros((96, 128), np.uint8)
        truth[:, 64:] = 1
        key = oracle_key(seeded.project_id, image.id)
        storage_for(settings).write_bytes(key, encode_mask_png(truth))
        image.oracle_mask_path = key
        s.commit()
        assert gold_from_oracle(s, storage_for(settings), seeded.project_id, 1) == 1
        gold_id = s.scalar(select(Region.id).where(Region.status == "gold"))
        admin, _ = token_row(s, "boss", "admin")
    set_quality(settings, seeded.project_id, gold_rate=1.0, min_gold_miou=0.9)
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("Region 32×32")
    page.keyboard.press("2")  # the 2nd class of the palette: id 1
    with session_factory(settings.sqlalchemy_url)() as s:
        g = s.get(Region, gold_id)
        box = (g.x, g.y)
    left = max(0, box[0] - 32)
    screen = Screen(page, crop=(left, 0, min(128, box[0] + 64) - left, 96), box=box)
    screen.stroke((2, 5), (20, 5))
    page.keyboard.press("Enter")
    anns = wait_annotations(settings, 1)
    assert anns[0].region_id == gold_id and anns[0].gold_miou is not None and not anns[0].in_labels
    page.goto(f"{live_url}/projects/{seeded.project_id}#token={admin}")
    row = page.locator("#quality-annotators tr[data-annotator='alice']")
    expect(row).to_contain_text("1")
    expect(page.locator("#quality-stats")).to_contain_text("gold regions")
    expect(page.locator("#effort-stats")).to_contain_text("annotation hours")
    if anns[0].gold_miou < 0.9:
        expect(row).to_contain_text("below threshold")
    screenshot(page, "quality-panel")
    assert page.errors == []
