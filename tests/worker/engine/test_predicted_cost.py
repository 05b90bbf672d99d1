"""Cost-aware acquisition: predicted clicks and corrected pixels from the model's outputs, and the ranking."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from tests.worker.engine.test_acquisition import ProbsFromPixels
from worker.annotation_cost import region_clicks
from worker.engine.acquisition import acquire, score_pool
from worker.engine.cycle import AcquisitionConfig
from worker.engine.pool import ArrayPool
from worker.engine.predicted_cost import (
    check_cost,
    cost_aware_scores,
    expected_errors,
    predicted_clicks,
)
from worker.engine.regions import grid_box, grid_regions, slic_regions
from worker.engine.stream import score_and_select


def _image_predicting(pred: np.ndarray, k: int = 3) -> np.ndarray:
    """An image whose `ProbsFromPixels` argmax is `pred` (class c: channel c bright, the others dim)."""
    image = np.full(pred.shape + (3,), 20, np.uint8)
    for c in range(k):
        image[pred == c, c] = 200
    return image


def _smooth_prediction(rng, k: int, h: int, w: int) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=(k, h, w)), (0, 3, 3)).argmax(0).astype(np.uint8)


def test_a_region_with_four_predicted_components_costs_four_clicks_plus_its_crossings():
    pred = np.zeros((8, 8), np.uint8)
    pred[2:4, 2:4] = pred[5:7, 4:6] = 1  # two class-1 blobs inside: no crossing
    pred[:, 0] = 2  # a class-2 strip along the left edge: two crossings of the border
    # components: background, two blobs, the strip = 4; crossings: 2
    assert predicted_clicks(pred[None], np.zeros((1, 8, 8), np.int64), 1).tolist() == [6]
    pool = score_pool(ProbsFromPixels(), [_image_predicting(pred)], region_size=8, cost="clicks")
    assert pool.images[0].predicted_cost.tolist() == [6]


@pytest.mark.parametrize("seed", range(5))
def test_predicted_clicks_are_the_click_cost_of_the_prediction_cut_to_each_region(seed):
    rng = np.random.default_rng(seed)
    h, w, size = 29, 35, 7  # edge cells of 1 and 5 px
    preds = np.stack([_smooth_prediction(rng, 3, h, w) for _ in range(2)])
    cells = grid_regions(h, w, size)
    n = int(cells.max()) + 1
    got = predicted_clicks(preds, np.stack([cells, cells + n]), 2 * n)  # one batch of two images
    for b in range(2):
        for r in range(n):
            x, y, bw, bh = grid_box(r, h, w, size)
            assert got[b * n + r] == region_clicks(preds[b, y:y + bh, x:x + bw]), (b, r)
    image = ndimage.gaussian_filter(rng.random((40, 40, 3)) * 255, (3, 3, 0)).astype(np.uint8)
    superpixels = slic_regions(image, 8)
    pred = _smooth_prediction(rng, 3, 40, 40)
    n = int(superpixels.max()) + 1
    got = predicted_clicks(pred[None], superpixels[None], n)
    assert got.tolist() == [region_clicks(pred, superpixels == r) for r in range(n)]
    assert (predicted_clicks(pred[None], superpixels[None], n, dominant=True) == 1).all()


def test_expected_errors_are_one_minus_the_top_probability():
    logits = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0)) * 3
    np.testing.assert_allclose(expected_errors(logits), 1 - logits.softmax(1).amax(1), atol=1e-6)


def test_predicted_corrected_pixels_sum_the_expected_errors_of_unlabeled_pixels():
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, :4] = (150, 50, 0)  # p = (0.75, 0.25, 0): 0.25 expected error per pixel
    image[:, 4:] = (100, 100, 0)  # p = (0.5, 0.5, 0): 0.5
    label = np.full((4, 8), 255, np.uint8)
    label[0, :] = 1  # one labeled row in each cell: nothing left to correct there
    regions = score_pool(ProbsFromPixels(), [image], labels=[label], region_size=4,
                         cost="corrected").images[0]
    np.testing.assert_allclose(regions.predicted_cost, [12 * 0.25, 12 * 0.5], rtol=1e-3)


def _two_cells(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.concatenate([left, right], 1)


def _selected(image: np.ndarray, **kw) -> list[tuple[int, int]]:
    label = np.full(image.shape[:2], 255, np.uint8)
    regions, _ = acquire(ProbsFromPixels(), [image], [label], num_classes=3, region_size=4, budget_regions=1,
                         **kw)
    streamed = score_and_select(ProbsFromPixels(), ArrayPool([image], [label]), region_kind="grid",
                                region_size=4, budget_regions=1, budget_fraction=None, per_image=None,
                                total_pixels=label.size, device=torch.device("cpu"), **kw)
    assert [(r.x, r.y) for r in regions] == [(r.x, r.y) for r in streamed]
    return [(r.x, r.y) for r in regions]


@pytest.mark.parametrize("rule", ["ratio", "below_median"])
def test_of_two_equally_uncertain_regions_the_cheaper_in_clicks_is_chosen(rule):
    # Every pixel's probabilities are (0.6, 0.4, 0) in some order: the same entropy everywhere. The left
    # cell's argmax is split in two (2 components + 2 crossings), the right's is class 0 throughout.
    split = np.zeros((4, 4, 3), np.uint8)
    split[:, :2], split[:, 2:] = (150, 100, 0), (100, 150, 0)
    uniform = np.zeros((4, 4, 3), np.uint8)
    uniform[:, :2], uniform[:, 2:] = (150, 100, 0), (150, 0, 100)
    image = _two_cells(split, uniform)
    assert _selected(image, metric="entropy") == [(0, 0)]  # a tie: the first region
    assert _selected(image, metric="entropy", cost="clicks", cost_rule=rule) == [(4, 0)]


@pytest.mark.parametrize("rule", ["ratio", "below_median"])
def test_of_two_equally_uncertain_regions_the_cheaper_in_corrected_pixels_is_chosen(rule):
    # Margin 1 in both cells; the left's top class has 0.45 (expected error 0.55), the right's 0.5.
    image = _two_cells(np.full((4, 4, 3), (90, 90, 20), np.uint8),
                       np.full((4, 4, 3), (100, 100, 0), np.uint8))
    assert _selected(image, metric="margin") == [(0, 0)]
    assert _selected(image, metric="margin", cost="corrected", cost_rule=rule) == [(4, 0)]


def test_the_ratio_counts_a_cost_below_one_as_one():
    u, one, pixels = np.array([0.5, 0.5]), np.ones(2), np.array([16, 16])
    scores = cost_aware_scores(u, one, pixels, pixels, np.array([0.01, 1.0]), "ratio")
    assert scores[0] == scores[1] == pytest.approx(8.0)
    assert cost_aware_scores(u, np.array([2.0, 1.0]), pixels, pixels, None, "ratio").tolist() == [1.0, 0.5]


def test_below_median_keeps_the_uncertainty_of_the_cheaper_candidates_only():
    u = np.array([0.9, 0.8, 0.3, 0.2, 0.7])
    cost = np.array([5.0, 1.0, 2.0, 9.0, 1.0])
    unlabeled = np.array([10, 10, 10, 10, 0])  # the last is fully labeled: not a candidate
    scores = cost_aware_scores(u, np.ones(5), np.full(5, 10), unlabeled, cost, "below_median")
    # median of the candidates' costs (5, 1, 2, 9) is 3.5
    np.testing.assert_allclose(scores, [0.0, 0.8, 0.3, 0.0, 0.7])


def test_a_cold_start_is_not_costed_and_bad_costs_are_refused():
    images = [np.zeros((8, 8, 3), np.uint8)]
    pool = score_pool(None, images, metric="random", region_size=4, cost="clicks")
    assert pool.images[0].predicted_cost is None and (pool.images[0].scores > 0).all()
    with pytest.raises(ValueError, match="unknown acquisition cost 'dollars'"):
        check_cost("dollars", "ratio")
    with pytest.raises(ValueError, match="unknown acquisition cost rule 'sum'"):
        AcquisitionConfig(budget_regions=1, cost="clicks", cost_rule="sum").validate()
    with pytest.raises(ValueError, match="unknown acquisition cost 'time'"):
        acquire(ProbsFromPixels(), images, [np.full((8, 8), 255, np.uint8)], num_classes=3, budget_regions=1,
                cost="time")
