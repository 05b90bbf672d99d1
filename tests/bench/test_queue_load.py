"""bench/queue_load.py runs end to end (a small load: this checks that it works, not how fast)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]


def test_queue_load_runs_and_finds_no_double_lease_or_lost_submission(tmp_path, pg_admin_engine):
    out = tmp_path / "queue_load.json"
    cmd = [sys.executable, str(ROOT / "bench" / "queue_load.py"), "--annotators", "4", "--regions", "300",
           "--duration", "3", "--think", "0.05", "--warmup", "1", "--workers", "1", "--pg-url", PG_URL,
           "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == []
    assert result["leases"] > 0 and result["submits"] > 0
    assert result["double_leases"] == 0 and result["lost_submissions"] == 0
    stored = result["submits"] + result["warmup_submits"]
    assert result["annotations_in_db"] == stored == result["regions_labeled"]
    assert result["lease_ms"]["p99"] >= result["lease_ms"]["p50"] > 0
    assert "lease" in done.stdout and "submit" in done.stdout
    with pg_admin_engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                                    (result["schema"],)).scalar()
    assert left == 0 and not (tmp_path / "data").exists()  # without --keep it cleans up after itself


def test_queue_load_with_review_and_gold(tmp_path, pg_admin_engine):
    out = tmp_path / "queue_load.json"
    cmd = [sys.executable, str(ROOT / "bench" / "queue_load.py"), "--annotators", "4", "--regions", "300",
           "--duration", "3", "--warmup", "1", "--workers", "1", "--pg-url", PG_URL, "--review", "all",
           "--gold", "20", "--gold-rate", "0.3", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == [] and result["double_leases"] == 0 and result["lost_submissions"] == 0
    states = result["annotations_by_state"]
    assert states.get("gold", 0) > 0 and states.get("pending", 0) > 0  # scored, and waiting for a reviewer
    assert sum(states.values()) == result["annotations_in_db"] == result["submits"] + result["warmup_submits"]
