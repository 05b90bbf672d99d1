"""The project list and the dashboard in a real Chromium: a running cycle's live progress, the mIoU
curve, per-class IoU, queue statistics, the auto-cycle rule, and the admin's start-cycle button."""

import pytest
from playwright.sync_api import expect

from service.db import session_factory
from service.models import Cycle, Project
from tests.e2e.conftest import enter_token, screenshot
from tests.service.queue_helpers import seed_queue, token_row

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

DONE = [(1, 0.02, 0.31, [0.8, 0.1, None]), (2, 0.05, 0.47, [0.85, 0.35, 0.2]),
        (3, 0.09, 0.58, [0.9, 0.5, 0.34])]


def seed_cycles(settings):
    with session_factory(settings.sqlalchemy_url)() as s:
        seeded = seed_queue(s, settings, regions=4, size=16, grid=(64, 48), name="streets")
        for number, frac, miou, per_class in DONE:
            metrics = {"miou": miou, "labeled_fraction": frac, "per_class_iou": per_class}
            if number == 1:  # seed_queue's cycle, which made the regions
                s.get(Cycle, seeded.cycle_id).metrics = metrics
            else:
                s.add(Cycle(project_id=seeded.project_id, number=number, status="succeeded", metrics=metrics))
        running = Cycle(project_id=seeded.project_id, number=4, status="running", phase="train", step=120,
                        total=400, loss=0.4321, eta_seconds=95, trigger="auto")
        s.add(running)
        s.get(Project, seeded.project_id).auto_cycle = {"enabled": True, "after_labeled": 20,
                                                        "when_queue_below": 1}
        s.commit()
        admin, _ = token_row(s, "boss", "admin")
        return seeded, admin, running.id


def set_progress(settings, cycle_id: int, step: int) -> None:
    with session_factory(settings.sqlalchemy_url)() as s:
        s.get(Cycle, cycle_id).step = step
        s.commit()


def test_dashboard_shows_progress_curve_and_stats(live_url, settings, page):
    seeded, admin, running_id = seed_cycles(settings)
    page.goto(f"{live_url}/projects/{seeded.project_id}")
    enter_token(page, admin)
    expect(page.locator("#project-name")).to_have_text("streets")
    row = page.locator(f"tr[data-cycle='{running_id}']")
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("120/400")
    expect(row.locator("progress")).to_have_attribute("value", "120")
    expect(row).to_contain_text("1m 35s")  # the ETA
    # Live: the page polls while a cycle runs.
    set_progress(settings, running_id, 300)
    expect(row).to_contain_text("300/400", timeout=10_000)

    expect(page.locator("#curve")).to_have_attribute("data-points", "3")
    blue = page.locator("#curve").evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i + 2] > 150 && d[i] < 120) n++;
        return n;
    }""")
    assert blue > 200  # the curve's line and points are drawn
    per_class = page.locator("#per-class tbody tr")
    expect(per_class).to_have_count(3)
    expect(per_class.nth(2)).to_contain_text("34.0%")
    expect(page.locator("#per-class-title")).to_have_text("Per-class IoU (cycle 3)")
    expect(page.locator("[data-stat=queued] strong")).to_have_text("4")
    expect(page.locator("#start-cycle")).to_be_visible()
    expect(page.locator("#start-cycle")).to_be_disabled()  # one is running
    expect(row.locator("td").first).to_have_text("4 auto")  # started by the auto-cycle rule
    auto = page.locator("#auto-cycle")
    expect(auto).to_contain_text("Auto cycle: on — 0/20 labeled since cycle 4")
    expect(auto).to_contain_text("4 waiting in the queue (starts below 1)")
    expect(auto).to_contain_text("cycle 4 is active")
    screenshot(page, "dashboard")
    assert page.errors == []


def test_project_list(live_url, settings, page):
    seeded, admin, _ = seed_cycles(settings)
    page.goto(f"{live_url}/")
    enter_token(page, admin)
    row = page.locator(f"tr[data-project='{seeded.project_id}']")
    expect(row).to_contain_text("streets")
    expect(row.locator(".queue")).to_have_text("4")
    expect(row.locator(".miou")).to_have_text("58.0%")
    expect(row.locator("a", has_text="annotate")).to_have_attribute("href", f"/annotate/{seeded.project_id}")
    screenshot(page, "projects")
    assert page.errors == []
