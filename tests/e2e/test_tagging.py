"""Tagging mode in a real Chromium: toggles by click and by number key, Enter submits, S skips, the
queue follows the classifier's uncertainty, and what the page sent is what the API stored."""

import httpx
import pytest
from playwright.sync_api import expect

from service.auth import create_token
from service.db import session_factory
from service.tags import store_tag_uncertainty
from tests.e2e.conftest import enter_token, screenshot
from tests.service.factories import CLASSES, png_bytes

pytestmark = [pytest.mark.browser]


def _project(live_url, settings):
    with session_factory(settings.sqlalchemy_url)() as s:
        admin = create_token(s, "boss", "admin")
        annotator = create_token(s, "ann", "annotator")
    auth = {"Authorization": f"Bearer {admin}"}
    pid = httpx.post(f"{live_url}/api/projects", json={"name": "demo", "classes": CLASSES},
                     headers=auth).json()["id"]
    files = [("files", (f"{n}.png", png_bytes(64, 48, seed=i), "image/png")) for i, n in enumerate("abc")]
    results = httpx.post(f"{live_url}/api/projects/{pid}/images", files=files, headers=auth).json()["results"]
    return auth, annotator, [r["image"]["id"] for r in results]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tag_images_in_uncertainty_order(live_url, settings, page):
    auth, annotator, ids = _project(live_url, settings)
    with session_factory(settings.sqlalchemy_url)() as s:
        store_tag_uncertainty(s, {ids[0]: 0.1, ids[1]: 0.7, ids[2]: 0.4})
        s.commit()

    page.goto(f"{live_url}/tag/demo")
    enter_token(page, annotator)
    expect(page.locator("#progress")).to_have_text("0 tagged · 3 to go")
    expect(page.locator("#caption")).to_contain_text("b · 64×48 · classifier uncertainty 0.700")
    expect(page.locator("#palette button")).to_have_count(3)
    page.keyboard.press("2")  # toggles the second class (id 1)
    page.keyboard.press("3")
    page.keyboard.press("3")  # and off again
    expect(page.locator("#palette button[data-class-id='1']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#palette button[data-class-id='2']")).to_have_attribute("aria-pressed", "false")
    screenshot(page, "tagging")
    page.keyboard.press("Enter")
    expect(page.locator("#progress")).to_have_text("1 tagged · 2 to go")
    expect(page.locator("#caption")).to_contain_text("c · ")
    page.locator("#palette button[data-class-id='0']").click()
    page.locator("#palette button[data-class-id='2']").click()
    page.locator("#submit").click()
    expect(page.locator("#progress")).to_have_text("2 tagged · 1 to go")
    expect(page.locator("#caption")).to_contain_text("a · ")
    expect(page.locator("#palette button[aria-pressed='true']")).to_have_count(0)  # a fresh image
    page.keyboard.press("s")
    expect(page.locator("#status")).to_have_text("Nothing left but 1 skipped image(s).")
    expect(page.locator("#tagger")).to_be_hidden()

    def latest(image_id):
        r = httpx.get(f"{live_url}/api/images/{image_id}/tags", headers=auth).json()["latest"]
        return r and (r["class_ids"], r["token_name"])
    assert latest(ids[1]) == ([1], "ann")
    assert latest(ids[2]) == ([0, 2], "ann")
    assert latest(ids[0]) is None
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retagging_starts_from_the_current_tags_and_all_done(live_url, settings, page):
    auth, annotator, ids = _project(live_url, settings)
    for image_id, tags in ((ids[0], [2]), (ids[1], [0])):
        httpx.put(f"{live_url}/api/images/{image_id}/tags", json={"class_ids": tags}, headers=auth)
    project_id = httpx.get(f"{live_url}/api/images/{ids[0]}", headers=auth).json()["project_id"]
    page.goto(f"{live_url}/tag/{project_id}")  # by id as well as by name
    enter_token(page, annotator)
    expect(page.locator("#caption")).to_contain_text("c · ")
    expect(page.locator("#progress")).to_have_text("2 tagged · 1 to go")  # the page takes keys from here
    page.keyboard.press("Enter")  # an image may contain none of the classes
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#progress")).to_have_text("3 tagged · 0 to go")
    assert httpx.get(f"{live_url}/api/images/{ids[2]}/tags", headers=auth).json()["latest"]["class_ids"] == []
    assert page.errors == []
