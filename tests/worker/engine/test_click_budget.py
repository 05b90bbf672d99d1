"""A budget counted in predicted clicks: greedy fill in the ranking's order, the same selection streamed,
a bounded number of kept regions, and bad budgets refused."""

import numpy as np
import pytest
import torch

from tests.worker.engine.test_acquisition import ProbsFromPixels
from tests.worker.engine.test_predicted_cost import _image_predicting, _smooth_prediction, _two_cells
from worker.engine.acquisition import acquire
from worker.engine.cycle import AcquisitionConfig
from worker.engine.pool import ArrayPool
from worker.engine.regions import SelectedRegion
from worker.engine.selection import ImageRegions, PoolScores, check_budget, select_regions
from worker.engine.stream import Selector, score_and_select


def _one_image_pool(scores, clicks) -> PoolScores:
    n = len(scores)
    regions = ImageRegions(8, 8 * n, np.array(scores, np.float32), np.array(scores, np.float32),
                           np.full(n, 64, np.int32), predicted_clicks=None if clicks is None
                           else np.array(clicks, np.float32))
    return PoolScores("grid", 8, "entropy", [regions], None, 0.0)


@pytest.mark.parametrize("budget, taken", [(1, [0]), (3, [0]), (4, [0, 1]), (6, [0, 1, 2]),
                                           (11, [0, 1, 2, 3]), (100, [0, 1, 2, 3])])
def test_regions_are_taken_in_score_order_until_their_predicted_clicks_reach_the_budget(budget, taken):
    # Clicks spent before each region: 0, 3, 4, 6; a region is taken while the budget is not yet spent,
    # so the last one may overshoot it by less than its own clicks.
    pool = _one_image_pool([0.9, 0.8, 0.7, 0.6], [3, 1, 2, 5])
    got = select_regions(pool, budget_unit="clicks", budget_clicks=budget)
    assert [r.x // 8 for r in got] == taken
    assert [r.predicted_clicks for r in got] == [[3, 1, 2, 5][i] for i in taken]


def test_a_region_predicted_below_one_click_spends_one_and_a_cold_start_counts_one_each():
    assert len(select_regions(_one_image_pool([0.9, 0.8, 0.7], [0, 0, 0]), budget_unit="clicks",
                              budget_clicks=2)) == 2
    assert len(select_regions(_one_image_pool([0.9, 0.8, 0.7], None), budget_unit="clicks",
                              budget_clicks=2)) == 2
    images = [np.zeros((16, 16, 3), np.uint8)] * 2
    labels = [np.full((16, 16), 255, np.uint8)] * 2
    cold = score_and_select(None, ArrayPool(images, labels), metric="random", region_kind="grid",
                            region_size=4, budget_regions=None, budget_fraction=None, per_image=None,
                            total_pixels=512, budget_unit="clicks", budget_clicks=5,
                            device=torch.device("cpu"))
    assert len(cold) == 5 and all(r.predicted_clicks is None for r in cold)


def _both(images, labels, **kw) -> list[SelectedRegion]:
    """The whole-pool selection, after checking that the streamed one is the same."""
    want, _ = acquire(ProbsFromPixels(), images, labels, num_classes=3, budget_unit="clicks", batch_size=3,
                      **kw)
    got = score_and_select(ProbsFromPixels(), ArrayPool(images, labels), budget_regions=None,
                           budget_fraction=None, per_image=None, total_pixels=sum(lab.size for lab in labels),
                           budget_unit="clicks", batch_size=3, device=torch.device("cpu"), **kw)
    assert [(r.image_index, r.x, r.y, r.superpixel_id, r.predicted_clicks) for r in got] == \
        [(r.image_index, r.x, r.y, r.superpixel_id, r.predicted_clicks) for r in want]
    return want


@pytest.mark.parametrize("budget, entropy, cost_aware", [(1, [(0, 0)], [(4, 0)]),
                                                         (4, [(0, 0)], [(4, 0), (0, 0)])])
def test_the_cost_aware_ranking_spends_a_click_budget_on_more_regions(budget, entropy, cost_aware):
    # Equal entropy in both cells; the left's argmax is split in two (4 predicted clicks), the right's is
    # one class (1 click). Entropy ranks the left first (a tie: region order) and its 4 clicks spend the
    # budget; the ratio ranks the right first, and what it leaves buys the left too.
    split = np.zeros((4, 4, 3), np.uint8)
    split[:, :2], split[:, 2:] = (150, 100, 0), (100, 150, 0)
    uniform = np.zeros((4, 4, 3), np.uint8)
    uniform[:, :2], uniform[:, 2:] = (150, 100, 0), (150, 0, 100)
    images, labels = [_two_cells(split, uniform)], [np.full((4, 8), 255, np.uint8)]
    common = dict(metric="entropy", region_kind="grid", region_size=4, budget_clicks=budget)
    assert [(r.x, r.y) for r in _both(images, labels, **common)] == entropy
    chosen = _both(images, labels, cost="clicks", **common)
    assert [(r.x, r.y) for r in chosen] == cost_aware
    assert [r.predicted_clicks for r in chosen] == [1, 4][:len(cost_aware)]


@pytest.mark.parametrize("kind", ["grid", "superpixel"])
@pytest.mark.parametrize("cost", ["none", "clicks", "corrected"])
def test_streaming_spends_a_click_budget_as_scoring_the_whole_pool_does(kind, cost):
    rng = np.random.default_rng(2)
    preds = [_smooth_prediction(rng, 3, 16, 16) for _ in range(5)] + [_smooth_prediction(rng, 3, 12, 20)]
    # Noise below the gap between the bright and dim channels: uncertainty varies, the argmax does not.
    images = [(_image_predicting(p) + rng.integers(0, 60, p.shape + (3,))).astype(np.uint8) for p in preds]
    labels = [np.where(rng.random(p.shape) < 0.3, 0, 255).astype(np.uint8) for p in preds]
    labels[1][:] = 0  # fully labeled: none of its regions is a candidate
    got = _both(images, labels, metric="entropy", region_kind=kind, region_size=4, cost=cost,
                budget_clicks=30)
    spent = [max(r.predicted_clicks, 1.0) for r in got]
    assert sum(spent[:-1]) < 30 <= sum(spent)


def test_the_streamed_click_budget_keeps_a_bounded_number_of_regions():
    selector = Selector(budget_regions=None, budget_fraction=None, per_image=None, total_pixels=0,
                        budget_clicks=10)
    rng = np.random.default_rng(0)
    kept = []
    for image in range(200):
        n = 50
        clicks = np.maximum(1.0, rng.integers(0, 4, n).astype(np.float64))
        selector.offer(image, rng.random(n).astype(np.float32), np.full(n, 64), lambda r, s: r, clicks)
        kept.append(len(selector.heap))
    # Each kept region spends at least one click: the budget plus the one that may overshoot it.
    assert max(kept) <= 11
    spent = [e[3] for e in sorted(selector.heap, key=lambda e: (-e[0], -e[1], -e[2]))]
    assert sum(spent[:-1]) < 10 <= sum(spent)


@pytest.mark.parametrize("budget, message", [
    (dict(budget_unit="pixels"), "unknown budget unit 'pixels'; expected one of regions, clicks"),
    (dict(budget_unit="clicks"), "budget_unit 'clicks' needs budget_clicks"),
    (dict(budget_unit="clicks", budget_clicks=0), "budget_clicks must be a number of clicks >= 1, got 0"),
    (dict(budget_unit="clicks", budget_clicks=float("nan")), "budget_clicks must be a number of clicks >= 1"),
    (dict(budget_unit="clicks", budget_clicks=True), "budget_clicks must be a number of clicks >= 1"),
    (dict(budget_unit="clicks", budget_clicks="500"), "budget_clicks must be a number of clicks >= 1"),
    (dict(budget_unit="clicks", budget_clicks=50, budget_fraction=0.02),
     "a budget in clicks is budget_clicks alone; budget_fraction count"),
    (dict(budget_unit="clicks", budget_clicks=50, per_image=4), "budget_clicks alone; per_image count"),
    (dict(budget_regions=5, budget_clicks=50), "budget_clicks needs budget_unit 'clicks'"),
])
def test_bad_click_budgets_are_refused_before_any_model_work(budget, message):
    with pytest.raises(ValueError, match=message):
        check_budget(**budget)
    with pytest.raises(ValueError, match=message):
        AcquisitionConfig(**budget).validate()
    model = ProbsFromPixels()
    with pytest.raises(ValueError, match=message):
        acquire(model, [np.zeros((8, 8, 3), np.uint8)], [np.full((8, 8), 255, np.uint8)], num_classes=3,
                region_size=4, **budget)
    assert model.seen_training == []  # refused before the model ran
