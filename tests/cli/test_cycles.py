"""`s4al cycle start|list|show` and `s4al oracle`, against the test database (both backends)."""

import json
import threading
import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.app import app
from service.models import Annotation, Cycle
from tests.worker.tiny import make_project

runner = CliRunner()


@pytest.fixture
def project(cli_env, session, tmp_path):
    return make_project(session, cli_env, tmp_path)


def _run_next_queued_cycle(settings, sessions, out):
    """Stands in for a worker: runs the first queued cycle that appears, in-process (real engine)."""
    from worker.cycle_io import execute_cycle

    end = time.monotonic() + 60
    while time.monotonic() < end:
        with sessions() as s:
            cid = s.scalar(select(Cycle.id).where(Cycle.status == "queued"))
        if cid:
            out.append(execute_cycle(settings, cid))
            return
        time.sleep(0.1)


def test_cycle_start_wait_shows_progress_until_done_then_list_and_show(cli_env, project):
    from service.db import session_factory

    done = []
    t = threading.Thread(target=_run_next_queued_cycle,
                         args=(cli_env, session_factory(cli_env.sqlalchemy_url), done))
    t.start()
    r = runner.invoke(app, ["cycle", "start", project.name, "--wait"])
    t.join()
    assert r.exit_code == 0, r.output
    assert done == ["succeeded"]
    assert "cycle 1 (id 1) of 'tiny' queued" in r.output
    assert "cycle 1 (id 1)  succeeded  labeled 0.0%" in r.output and "3 regions queued" in r.output
    r = runner.invoke(app, ["cycle", "list", str(project.id)])
    assert r.exit_code == 0 and r.output.startswith("cycle 1 (id 1)  succeeded")
    shown = json.loads(runner.invoke(app, ["cycle", "show", "1"]).output)
    assert shown["status"] == "succeeded" and shown["metrics"]["regions"] == 3
    assert runner.invoke(app, ["cycle", "show", "99"]).exit_code == 1


def test_cycle_start_refuses_a_second_active_cycle_and_unknown_projects(cli_env, project):
    assert runner.invoke(app, ["cycle", "start", "tiny"]).exit_code == 0
    r = runner.invoke(app, ["cycle", "start", "tiny"])
    assert r.exit_code == 1 and "is queued" in r.output
    r = runner.invoke(app, ["cycle", "start", "nope"])
    assert r.exit_code == 1 and "no project 'nope'" in r.output


def test_oracle_command_labels_queued_regions(cli_env, project, session):
    from worker.cycle_io import execute_cycle

    runner.invoke(app, ["cycle", "start", "tiny"])
    cid = session.scalar(select(Cycle.id))
    assert execute_cycle(cli_env, cid) == "succeeded"
    r = runner.invoke(app, ["oracle", "tiny", "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert "oracle labeled 2 regions of 'tiny'; 1 still queued" in r.output
    assert [a.source for a in session.scalars(select(Annotation))] == ["oracle", "oracle"]
