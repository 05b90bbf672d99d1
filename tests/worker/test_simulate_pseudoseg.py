"""`s4al simulate --pseudo-label pseudoseg --tags all`: the pseudo-label quality report in result.json."""

import json

from typer.testing import CliRunner

from cli.app import app
from tests.worker.tiny import make_dataset


def test_simulate_reports_pseudo_label_quality(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    out = tmp_path / "out"
    args = ["simulate", str(data), "--out", str(out), "--cycles", "2", "--iterations", "2", "--compare", "",
            "--model", "unet_small",
            "--region-size", "16", "--batch-size", "2", "--unlabeled-batch-size", "2", "--initial", "0.25",
            "--budget", "0.25", "--device", "cpu", "--pseudo-label", "pseudoseg", "--tags", "all"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pseudo-label mIoU on unlabeled pixels: argmax" in result.output
    saved = json.loads((out / "result.json").read_text())
    assert saved["config"]["pseudo_label"] == "pseudoseg" and saved["config"]["tags"] == "all"
    rows = saved["runs"][0]["arms"]["s4al"]  # per-seed rows keep the training details
    assert [r["cycle"] for r in rows] == [1, 2]
    for row in rows:
        quality = row["pseudo_label_miou"]
        assert 0 <= quality["argmax"] <= 1 and 0 <= quality["pseudoseg"] <= 1
        assert {"cls", "sgc"} <= set(row["losses"])


def test_simulate_refuses_unknown_pseudo_label_and_tags(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=2, n_val=1)
    for flag, value, message in (("--pseudo-label", "magic", "pseudo_label"), ("--tags", "some", "--tags")):
        result = CliRunner().invoke(app, ["simulate", str(data), "--out", str(tmp_path / "o"), flag, value])
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "o" / "result.json").exists()
