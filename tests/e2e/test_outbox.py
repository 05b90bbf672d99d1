"""No painted region is ever lost: the page's outbox across offline, reloads, slow networks and a 401;
one region per tab; an empty region cannot be submitted."""

import io
import time
import zipfile

import numpy as np
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.db import session_factory
from service.models import Lease, Token
from service.models import Region as RegionRow
from tests.e2e.conftest import enter_token, screenshot
from tests.e2e.test_annotator import SIZE, Region, paint_row, seed, stored_mask, wait_annotations
from tests.service.queue_helpers import prelabel_array, token_row

pytestmark = [pytest.mark.browser]


def paint_class_1(page, crop, box) -> np.ndarray:
    """One brush-3 stroke of class 1 on row 5; the mask the page should send."""
    Region(page, crop=crop, box=box).stroke((2, 5), (20, 5))
    expected = prelabel_array(SIZE, SIZE)
    paint_row(expected, 5, 2, 20, 3, 1)
    return expected


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_offline_enter_reload_online_the_mask_arrives_and_is_exported(live_url, settings, page, admin):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32), (0, 0)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    page.keyboard.press("2")  # the 2nd class of the palette: id 1
    expected = paint_class_1(page, (0, 0, 96, 96), (32, 32))

    page.context.set_offline(True)
    page.keyboard.press("Enter")
    expect(page.locator("#save-state")).to_have_text("offline, 1 waiting")
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")  # the prefetched one, at once
    screenshot(page, "outbox-offline")
    # The page cannot load while offline: keep the API's annotation endpoint unreachable instead, reload.
    page.route("**/api/leases/*/annotation", lambda route: route.abort("internetdisconnected"))
    page.context.set_offline(False)
    page.reload()
    expect(page.locator("#save-state")).to_contain_text("1 waiting")
    assert wait_annotations(settings, 1, timeout=1) == []
    page.unroute("**/api/leases/*/annotation")
    page.evaluate("window.dispatchEvent(new Event('online'))")  # as the browser does when the network is back
    anns = wait_annotations(settings, 1)
    assert len(anns) == 1 and anns[0].region_id == seeded.region_ids[0]
    assert np.array_equal(stored_mask(settings, anns[0]), expected)
    expect(page.locator("#save-state")).to_have_text("saved")

    res = page.request.get(f"{live_url}/api/projects/{seeded.project_id}/export", headers=admin)
    with zipfile.ZipFile(io.BytesIO(res.body())) as z:
        from PIL import Image as PILImage

        exported = np.array(PILImage.open(io.BytesIO(z.read("masks/img0.png"))))
    assert np.array_equal(exported[32:64, 32:64], expected)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_enter_twice_on_a_slow_network_saves_both(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32), (0, 0), (96, 64)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 600,
                                                   "downloadThroughput": 20_000, "uploadThroughput": 20_000})
    page.keyboard.press("2")  # the 2nd class of the palette: id 1
    paint_class_1(page, (0, 0, 96, 96), (32, 32))
    page.keyboard.press("Enter")
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")
    Region(page, crop=(32, 0, 64 + 32, 96), box=(64, 32)).stroke((2, 5), (20, 5))
    page.keyboard.press("Enter")  # the first save is still under way
    anns = wait_annotations(settings, 2, timeout=30)
    assert sorted(a.region_id for a in anns) == sorted(seeded.region_ids[:2])
    expect(page.locator("#save-state")).to_have_text("saved", timeout=20_000)
    assert page.errors == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_two_tabs_with_one_token_get_different_regions(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32), (0, 0), (96, 64)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    second = page.context.new_page()  # same browser profile: the token is shared, the tab is new
    second.goto(f"{live_url}/annotate/{seeded.project_id}")
    expect(second.locator("#region-info")).to_contain_text("Region 32×32")
    first_text = page.locator("#region-info").inner_text()
    assert second.locator("#region-info").inner_text() != first_text
    with session_factory(settings.sqlalchemy_url)() as s:
        pages = s.scalars(select(Lease.page).where(Lease.state == "active")).all()
    assert len(set(pages)) == 2 and None not in pages


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_401_mid_session_asks_for_a_token_and_the_painting_is_saved(live_url, settings, page, admin):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    page.keyboard.press("2")  # the 2nd class of the palette: id 1
    expected = paint_class_1(page, (0, 0, 96, 96), (32, 32))
    with session_factory(settings.sqlalchemy_url)() as s:  # the admin revokes alice's token, issues another
        alice = s.scalar(select(Token.id).where(Token.name == "alice"))
        fresh, _ = token_row(s, "alice")
    assert page.request.delete(f"{live_url}/api/tokens/{alice}", headers=admin).ok
    page.keyboard.press("Enter")
    expect(page.locator("#token-dialog")).to_be_visible()
    expect(page.locator("#save-state")).to_contain_text("waiting for a token")
    screenshot(page, "outbox-401")
    page.locator("#token-dialog #token-input").fill(fresh)
    page.locator("#token-dialog #token-input").press("Enter")
    anns = wait_annotations(settings, 1)
    assert len(anns) == 1 and np.array_equal(stored_mask(settings, anns[0]), expected)
    expect(page.locator("#save-state")).to_have_text("saved")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_empty_region_cannot_be_submitted_and_a_bad_link_token_says_so(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32)], prelabel=False)
    page.goto(f"{live_url}/annotate/{seeded.project_id}#token=s4al_not-a-token")
    expect(page.locator("#message")).to_contain_text("token in this link was not accepted")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("starts unlabeled")
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("Nothing is labeled in this region")
    assert wait_annotations(settings, 1, timeout=1) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_refused_region_is_named_and_kept_across_a_reload(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32), (0, 0)])
    page.route("**/api/leases/*/annotation", lambda route: route.fulfill(
        status=404, content_type="application/json", body='{"detail": "lease not found"}'))
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    page.keyboard.press("2")  # the 2nd class of the palette: id 1
    paint_class_1(page, (0, 0, 96, 96), (32, 32))
    page.keyboard.press("Enter")
    refused = page.locator("#refused")
    expect(refused).to_contain_text("region (32, 32) 32×32 of image img0: 404: lease not found")
    page.reload()
    expect(refused).to_contain_text("region (32, 32)")  # still in IndexedDB, never dropped


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_page_that_lost_its_lease_says_so_before_painting(live_url, settings, page):
    seeded, token = seed(settings, boxes=[(32, 32), (64, 32), (0, 0)])
    page.goto(f"{live_url}/annotate/{seeded.project_id}")
    enter_token(page, token)
    expect(page.locator("#region-info")).to_contain_text("at (32, 32)")
    prefetched = select(Lease).where(Lease.region_id == seeded.region_ids[1], Lease.state == "active")
    with session_factory(settings.sqlalchemy_url)() as s:  # the prefetched region's lease runs out ...
        for _ in range(100):
            if lease := s.scalar(prefetched):
                break
            time.sleep(0.05)
        past = lease.created_at.replace(year=2000)
        lease.expires_at = past
        s.get(RegionRow, seeded.region_ids[1]).lease_expires_at = past
        s.commit()
        from service.queue import lease_next

        _, bob = token_row(s, "bob")
        assert lease_next(s, settings, seeded.project_id, bob).id == seeded.region_ids[1]  # ... bob has it
    page.keyboard.press("2")  # the 2nd class of the palette: id 1
    paint_class_1(page, (0, 0, 96, 96), (32, 32))
    page.keyboard.press("Enter")
    expect(page.locator("#region-info")).to_contain_text("at (64, 32)")
    expect(page.locator("#message")).to_contain_text("no longer holds region (64, 32)")
