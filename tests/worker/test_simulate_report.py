"""Seeds folded into mean ± std, and the targets read off the folded rows (no training)."""

import pytest

from worker.simulate_report import aggregate, format_table, targets


def _row(cycle, miou, labeled, corrected, clicks, iou=(0.5, None)):
    return {"cycle": cycle, "labeled_fraction": labeled, "corrected_fraction": corrected, "clicks": clicks,
            "clicks_fraction": clicks / 1000, "miou": miou, "seconds": 1.0, "per_class_iou": list(iou),
            "added": {"pixels": 10, "corrected": 5, "clicks": clicks}}


def test_aggregate_gives_mean_and_sample_std_per_cycle():
    rows = aggregate([[_row(1, 0.5, 0.02, 0.02, 10, (0.2, None))],
                      [_row(1, 0.7, 0.02, 0.02, 30, (0.4, None))]])
    assert len(rows) == 1
    assert rows[0]["miou"] == pytest.approx(0.6) and rows[0]["miou_std"] == pytest.approx(0.1414, abs=1e-4)
    assert rows[0]["clicks"] == 20 and rows[0]["added"]["clicks"] == 20
    assert rows[0]["per_class_iou"] == [pytest.approx(0.3), None]  # absent from val in every seed
    assert aggregate([[_row(1, 0.5, 0.02, 0.02, 10)]])[0]["miou_std"] == 0.0


def _arm(mious, stds, corrected, clicks):
    return [dict(_row(c + 1, m, 0.02 * (c + 1), corrected[c], clicks[c]), miou_std=s, seeds=3)
            for c, (m, s) in enumerate(zip(mious, stds, strict=True))]


def test_targets_read_the_claims_off_the_rows():
    result = {"dataset": "d", "config": {"seeds": 3}, "full": {"miou": 0.80, "runs": []}, "arms": {
        "s4al": _arm([0.60, 0.77, 0.79], [0.01, 0.01, 0.01], [0.02, 0.025, 0.03], [100, 150, 200]),
        "random": _arm([0.60, 0.70, 0.77], [0.01, 0.02, 0.01], [0.02, 0.04, 0.06], [100, 300, 500]),
        "supervised": _arm([0.55, 0.765, 0.70], [0.01, 0.01, 0.01], [0.02, 0.04, 0.06], [100, 300, 500])}}
    t = targets(result)
    assert t["level_95"] == pytest.approx(0.76)
    assert t["reach_95"]["s4al"]["cycle"] == 2 and t["reach_95"]["random"]["cycle"] == 3
    assert t["reach_95"]["supervised"]["cycle"] == 2
    assert t["s4al_95_with_10pct"] is True
    assert t["above_random"]["met"] is True  # +7 (std 2) and +2 (std 1)
    assert t["above_supervised"]["met"] is False  # +0.5 at cycle 2 is inside one std
    assert t["half_of_random_corrected_fraction"] == "met"  # 2.5% vs 6%
    assert t["half_of_random_clicks"] == "met"  # 150 vs 500
    result["targets"] = t
    text = format_table(result)
    assert "s4al above supervised by > 1 std after cycle 1: NOT met" in text
    assert "95% of full, random    : cycle 3" in text


def test_targets_say_when_s4al_never_reaches_95_percent():
    result = {"dataset": "d", "config": {"seeds": 1}, "full": {"miou": 0.80, "runs": []}, "arms": {
        "s4al": _arm([0.5, 0.6], [0, 0], [0.02, 0.03], [10, 20]),
        "random": _arm([0.5, 0.77], [0, 0], [0.02, 0.04], [10, 30])}}
    t = targets(result)
    assert t["reach_95"]["s4al"] is None and t["s4al_95_with_10pct"] is False
    assert t["half_of_random_clicks"] == "s4al never reached 95% of full"
    result["targets"] = t
    assert "in clicks <= half of random's: s4al never reached 95% of full" in format_table(result)


def test_when_random_never_reaches_95_percent_its_last_cost_bounds_it():
    result = {"dataset": "d", "config": {"seeds": 1}, "full": {"miou": 0.80, "runs": []}, "arms": {
        "s4al": _arm([0.5, 0.77], [0, 0], [0.02, 0.03], [10, 20]),
        "random": _arm([0.5, 0.6], [0, 0], [0.02, 0.04], [10, 50])}}
    t = targets(result)
    assert t["half_of_random_clicks"] == "met (random never reached 95% of full)"  # 20 <= 50 / 2
    assert t["half_of_random_corrected_fraction"] == "undecided (random never reached 95% of full)"
