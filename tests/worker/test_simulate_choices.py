"""`s4al simulate`'s service choices, seeds, cost currencies and the cached full reference."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from tests.worker.test_simulate import make_folder
from worker.engine.regions import SelectedRegion
from worker.simulate import SimulateConfig, simulate
from worker.simulate_oracle import pool_clicks, reveal

TINY = dict(model="unet_small", iterations=2, batch_size=2, unlabeled_batch_size=2, region_size=8,
            initial=0.05, budget=0.05, device="cpu")


def _run(tmp_path, name: str, **kw):
    folder = tmp_path / "ds"
    if not folder.exists():
        make_folder(folder, n_train=6, n_val=2)
    cfg = SimulateConfig(dataset=str(folder), out=str(tmp_path / name), **{**TINY, **kw})
    return simulate(cfg, report=lambda _: None)


@pytest.mark.parametrize("args, message", [
    (["--region-kind", "hexagon"], "unknown region kind 'hexagon'"),
    (["--annotation", "scribble"], "unknown annotation 'scribble'"),
    (["--cost", "dollars"], "unknown cost currency 'dollars'"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--annotation", "dominant"], "needs --region-kind superpixel"),
    (["--region-kind", "superpixel", "--region-size", "40"], "fewer than one superpixel per image"),
    (["--init", "lastweek"], "unknown init 'lastweek'"),
    (["--iterations-after-first", "0"], "--iterations-after-first must be >= 1"),
    (["--full-iterations", "0"], "--full-iterations must be >= 1"),
    (["--budget-per-image", "0"], "per_image must be a positive integer"),
    (["--acquisition-cost", "dollars"], "unknown acquisition cost 'dollars'"),
    (["--acquisition-cost", "clicks", "--acquisition-cost-rule", "sum"],
     "unknown acquisition cost rule 'sum'"),
    (["--budget-unit", "dollars"], "unknown budget unit 'dollars'"),
    (["--budget-unit", "clicks", "--budget-per-image", "2"], "--budget-per-image counts regions"),
    (["--budget-unit", "clicks", "--budget", "0"], "--budget must be in (0, 1]"),
])
def test_bad_choices_fail_before_training(tmp_path, args, message):
    folder = make_folder(tmp_path / "ds", n_train=2, n_val=1)  # 32x32 images
    res = CliRunner().invoke(app, ["simulate", str(folder), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "o").exists()


def test_seeds_report_mean_and_std_and_costs_add_up(tmp_path):
    result = _run(tmp_path, "o", cycles=2, seeds=2, compare=["random"], cost="corrected")
    assert [run["seed"] for run in result["runs"]] == [0, 1]
    first = [run["arms"]["s4al"][0] for run in result["runs"]]
    row = result["arms"]["s4al"][0]
    assert row["miou"] == pytest.approx(np.mean([r["miou"] for r in first]))
    assert row["miou_std"] == pytest.approx(np.std([r["miou"] for r in first], ddof=1))
    assert row["seeds"] == 2 and row["miou_per_seed"] == [r["miou"] for r in first]
    assert row["added"]["clicks"] == pytest.approx(np.mean([r["added"]["clicks"] for r in first]))
    pool = result["pool"]
    for run in result["runs"]:
        for rows in run["arms"].values():
            one, two = rows
            # cold start: every initially labeled pixel was painted
            assert one["added"]["corrected"] == one["added"]["pixels"]
            assert one["corrected_fraction"] == pytest.approx(one["labeled_fraction"])
            assert two["labeled_fraction"] == pytest.approx(
                (one["added"]["pixels"] + two["added"]["pixels"]) / pool["pixels"])
            assert two["clicks"] == one["added"]["clicks"] + two["added"]["clicks"]
            assert 0 <= two["added"]["corrected"] <= two["added"]["pixels"]
            assert two["added"]["clicks"] >= two["added"]["pixels"] // 64  # at least one click per cell
    assert (tmp_path / "o" / "curve.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "o" / "result.json").read_text())
    assert saved["config"]["seeds"] == 2 and "s4al" in saved["arms"]


def test_each_seed_starts_from_its_own_initial_regions(tmp_path):
    from worker.simulate import _initial, _load

    make_folder(tmp_path / "ds", n_train=6, n_val=2)
    cfg = SimulateConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), **TINY)
    data, truth = _load(cfg)
    (zero, cost0), (one, cost1) = _initial(cfg, data, truth, 0), _initial(cfg, data, truth, 1)
    assert cost0["pixels"] == cost1["pixels"] == 5 * 64  # 5% of six 32x32 images, in 8x8 cells
    assert any((a != b).any() for a, b in zip(zero, one, strict=True))


def test_full_is_cached_between_runs(tmp_path):
    first = _run(tmp_path, "a", cycles=1, compare=["full"])
    again = _run(tmp_path, "b", cycles=1, compare=["full"])
    assert not first["full"]["cached"] and again["full"]["cached"]
    assert again["full"]["runs"] == first["full"]["runs"]
    other = _run(tmp_path, "c", cycles=1, compare=["full"], iterations=3)  # another N: trained again
    assert not other["full"]["cached"] and [r["iterations"] for r in other["full"]["runs"]] == [3, 6]
    longer = _run(tmp_path, "d", cycles=1, compare=["full"], iterations=2, full_iterations=4)
    assert [r["iterations"] for r in longer["full"]["runs"]] == [4, 8]


def test_warm_start_fine_tunes_later_cycles_for_fewer_steps(tmp_path):
    result = _run(tmp_path, "o", cycles=3, compare=[], init="previous", iterations=3,
                  iterations_after_first=1)
    assert [r["iterations"] for r in result["runs"][0]["arms"]["s4al"]] == [3, 1, 1]


def test_cost_aware_acquisition_weighs_the_s4al_arm_and_never_random(tmp_path):
    cfg = SimulateConfig(dataset="unused", out="unused", acquisition_cost="corrected",
                         acquisition_cost_rule="below_median", annotation="dominant",
                         region_kind="superpixel")
    s4al, random = cfg.acquisition_config(2), cfg.acquisition_config(2, metric="random")
    assert (s4al.cost, s4al.cost_rule, s4al.dominant) == ("corrected", "below_median", True)
    assert random.cost == "none"
    result = _run(tmp_path, "o", cycles=2, compare=["random"], acquisition_cost="clicks")
    for rows in result["runs"][0]["arms"].values():
        assert rows[1]["added"]["pixels"] > 0


def test_a_click_budget_spends_a_share_of_the_pools_clicks_in_predicted_clicks(tmp_path):
    cfg = SimulateConfig(dataset="unused", out="unused", budget=0.05, budget_unit="clicks")
    acq = cfg.acquisition_config(2, pool_clicks=1000)
    assert (acq.budget_unit, acq.budget_clicks) == ("clicks", 50)
    assert acq.budget_fraction is None and acq.per_image is None
    result = _run(tmp_path, "o", cycles=2, compare=["random"], budget_unit="clicks",
                  acquisition_cost="clicks")
    budget = round(0.05 * result["pool"]["clicks"])
    for rows in result["runs"][0]["arms"].values():
        one, two = rows
        # The initial labels are a share of the pixels, in every unit.
        assert one["added"]["pixels"] == pytest.approx(0.05 * result["pool"]["pixels"], abs=64)
        assert "predicted_clicks" not in one["added"]
        # Cells were taken until their predicted clicks (at least one each) reached the budget; the oracle
        # still counts the true clicks of what it labeled.
        assert two["added"]["predicted_clicks"] >= budget
        assert two["added"]["clicks"] >= two["added"]["pixels"] // 64


def test_per_image_budget_labels_one_cell_per_image(tmp_path):
    result = _run(tmp_path, "o", cycles=2, compare=[], budget_per_image=1, class_balance=True)
    one, two = result["runs"][0]["arms"]["s4al"]
    assert two["added"]["pixels"] == 6 * 64  # six 32x32 train images, one 8x8 cell each


def test_dominant_superpixels_cost_one_click_each(tmp_path):
    result = _run(tmp_path, "o", cycles=2, compare=["supervised"], region_kind="superpixel",
                  annotation="dominant", cost="clicks")
    for rows in result["runs"][0]["arms"].values():
        assert all(r["added"]["clicks"] >= 1 for r in rows)
        assert rows[1]["added"]["pixels"] > 0


def test_reveal_dominant_paints_the_majority_class_and_counts_one_click():
    truth = np.zeros((4, 6), np.uint8)
    truth[:, 4:] = 2
    truth[0, 0] = 1
    mask = np.zeros((4, 5), bool)
    mask[:, :4] = True  # a superpixel: columns 0-3 of its 4x5 box; (0, 0) is class 1, the rest 0
    region = SelectedRegion(0, 0, 0, 5, 4, 0, 1.0, mask, prelabel=np.zeros((4, 5), np.uint8))
    labels = [np.full((4, 6), 255, np.uint8)]
    cost = reveal(labels, [truth], [region], "dominant")
    assert (labels[0][:, :4] == 0).all() and (labels[0][:, 4:] == 255).all()
    assert cost.as_dict() == {"pixels": 16, "corrected": 0, "clicks": 1}
    exact = [np.full((4, 6), 255, np.uint8)]
    cost = reveal(exact, [truth], [region], "exact")
    assert exact[0][0, 0] == 1 and (exact[0][:, 4:] == 255).all()
    # (0, 0) repainted; two components (class 0, class 1), two border crossings around (0, 0)
    assert cost.as_dict() == {"pixels": 16, "corrected": 1, "clicks": 4}


def test_pool_clicks_of_a_uniform_pool_is_one_per_region():
    truth = [np.zeros((16, 16), np.uint8)] * 2
    images = [np.zeros((16, 16, 3), np.uint8)] * 2
    assert pool_clicks(truth, images, "grid", 8) == 8
