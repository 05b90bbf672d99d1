"""What a cycle queues reaches the annotator page: a worker-written region with its pre-label, opened
from a link that carries the token in its fragment (the link `s4al demo` prints)."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.db import session_factory
from service.models import Region
from tests.e2e.conftest import screenshot
from tests.worker.tiny import label_with_oracle, make_project
from worker.cycle_io import execute_cycle

pytestmark = [pytest.mark.browser]


def test_a_cycles_region_opens_from_a_token_link(live_url, settings, page, annotator_token, tmp_path):
    settings.device = "cpu"
    with session_factory(settings.sqlalchemy_url)() as s:
        project = make_project(s, settings, tmp_path)
        label_with_oracle(s, settings, project)
        from service.cycles import create_cycle

        cycle = create_cycle(s, project)
        pid = project.id
    assert execute_cycle(settings, cycle.id) == "succeeded"
    with session_factory(settings.sqlalchemy_url)() as s:
        best = s.scalars(select(Region).where(Region.cycle_id == cycle.id)
                         .order_by(Region.score.desc(), Region.id.desc())).first()
        assert best.prelabel_path
    page.goto(f"{live_url}/annotate/{pid}#token={annotator_token}")
    expect(page.locator("#region-info")).to_contain_text(f"at ({best.x}, {best.y})")
    expect(page.locator("#token-input")).to_have_count(0)
    assert "token" not in page.url  # taken out of the address bar
    screenshot(page, "cycle-region-from-token-link")
    assert page.errors == []
