import math

import numpy as np
import pytest
import torch

from worker.engine.acquisition import (
    acquire,
    channel_argmax,
    class_balance_weights,
    grid_scores,
    labeled_class_counts,
    pixel_uncertainty,
    score_pool,
    uncertainty_from_logits,
)


def _probs(*pixels):
    """[1, K, 1, n] from n probability vectors."""
    return torch.tensor(pixels, dtype=torch.float32).T.reshape(1, len(pixels[0]), 1, len(pixels))


def test_entropy_on_hand_made_distributions():
    u = pixel_uncertainty(_probs([1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.25] * 4), "entropy")
    assert u.shape == (1, 1, 3)
    np.testing.assert_allclose(u.flatten(), [0.0, math.log(2), math.log(4)], atol=1e-6)


def test_least_confidence_and_margin_on_hand_made_distributions():
    p = _probs([0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(pixel_uncertainty(p, "least_confidence").flatten(), [0.3, 0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(pixel_uncertainty(p, "margin").flatten(), [0.5, 1.0, 0.0], atol=1e-6)


def test_margin_matches_topk_and_handles_ties():
    p = torch.rand(2, 5, 6, 7, generator=torch.Generator().manual_seed(0)).softmax(1)
    p[0, :, 0, 0] = torch.tensor([0.3, 0.1, 0.3, 0.2, 0.1])  # tie for the top: margin 1
    top2 = p.topk(2, dim=1).values
    np.testing.assert_allclose(pixel_uncertainty(p, "margin"), 1 - (top2[:, 0] - top2[:, 1]), atol=1e-6)
    assert pixel_uncertainty(p, "margin")[0, 0, 0] == pytest.approx(1.0)


def test_channel_argmax_equals_argmax_with_first_index_on_ties():
    x = torch.randint(0, 4, (3, 7, 5, 6), generator=torch.Generator().manual_seed(0)).float()  # many ties
    x[0, :, 0, 0] = 3.0  # all classes tie: class 0
    expected = x.argmax(1)
    assert channel_argmax(x).dtype == torch.uint8 and channel_argmax(x)[0, 0, 0] == 0
    np.testing.assert_array_equal(channel_argmax(x).long(), expected)
    np.testing.assert_array_equal(channel_argmax(x, x.amax(1, keepdim=True)).long(), expected)
    last = x.contiguous(memory_format=torch.channels_last)  # what CPU convolutions hand back
    np.testing.assert_array_equal(channel_argmax(last).long(), expected)


@pytest.mark.parametrize("metric", ["entropy", "least_confidence", "margin"])
def test_uncertainty_from_logits_equals_softmax_route(metric):
    logits = torch.randn(2, 6, 5, 7, generator=torch.Generator().manual_seed(0)) * 4
    logits[0, :, 0, 0] = torch.tensor([2.0, 2.0, 0.0, -1.0, 0.0, 0.0])  # a tie for the top
    logits[1, :, 0, 0] = torch.tensor([90.0, -50.0, 0.0, 0.0, 0.0, 0.0])  # saturated
    for layout in (torch.contiguous_format, torch.channels_last):
        u, peak = uncertainty_from_logits(logits.contiguous(memory_format=layout), metric)
        np.testing.assert_allclose(u, pixel_uncertainty(logits.softmax(1), metric), atol=1e-5)
        torch.testing.assert_close(peak, logits.amax(1, keepdim=True))


def test_random_is_uniform_seeded_and_shaped():
    p = torch.full((2, 3, 4, 5), 1 / 3)
    a = pixel_uncertainty(p, "random", torch.Generator().manual_seed(1))
    b = pixel_uncertainty(p, "random", torch.Generator().manual_seed(1))
    c = pixel_uncertainty(p, "random", torch.Generator().manual_seed(2))
    assert a.shape == (2, 4, 5) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() < 1


def test_unknown_metric_and_bad_shape_are_errors():
    with pytest.raises(ValueError, match="unknown acquisition metric 'bald'"):
        pixel_uncertainty(torch.ones(1, 2, 2, 2), "bald")
    with pytest.raises(ValueError, match=r"\[B,K,H,W\]"):
        pixel_uncertainty(torch.ones(2, 2, 2), "entropy")


def test_grid_scores_average_edge_cells_over_their_own_pixels():
    u = torch.arange(25, dtype=torch.float32).reshape(1, 5, 5)
    g = grid_scores(u, 2)
    assert g.shape == (1, 3, 3)
    # full cell (0,0): 0,1,5,6; right edge (0,2): 4,9; bottom edge (2,0): 20,21; corner (2,2): 24
    assert g[0, 0, 0] == 3.0 and g[0, 0, 2] == 6.5 and g[0, 2, 0] == 20.5 and g[0, 2, 2] == 24.0


def test_grid_scores_count_labeled_pixels_as_zero():
    u = torch.arange(25, dtype=torch.float32).reshape(1, 5, 5)
    labeled = torch.zeros(1, 5, 5, dtype=torch.bool)
    labeled[0, 1, 1] = True  # value 6 in cell (0,0)
    labeled[0, 4, 4] = True  # the whole corner cell
    g = grid_scores(u, 2, labeled)
    assert g[0, 0, 0] == (0 + 1 + 5) / 4 and g[0, 2, 2] == 0.0 and g[0, 0, 2] == 6.5


def test_class_balance_weights_formula():
    np.testing.assert_allclose(class_balance_weights(np.array([10, 10, 10, 10])), 1.0)
    w = class_balance_weights(np.array([97, 1, 0]))
    freq = np.array([98, 2, 1]) / 101
    np.testing.assert_allclose(w, np.sqrt((1 / 3) / freq))
    assert w[2] > w[1] > 1 > w[0]


def test_labeled_class_counts_ignore_255():
    labels = [np.array([[0, 1], [255, 1]], np.uint8), np.array([[2, 255]], np.uint8)]
    np.testing.assert_array_equal(labeled_class_counts(labels, 3), [1, 2, 1])


class ProbsFromPixels(torch.nn.Module):
    """A fixed 'network': the image's RGB values (normalised) are the class probabilities."""

    def __init__(self):
        super().__init__()
        self.seen_training = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return torch.log(x + 1e-4)


def _pool(rng, n, h, w):
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _direct_grid(model, image, label, metric, size):
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    probs = model(x).softmax(1)
    labeled = torch.from_numpy(label != 255)[None]
    scores = grid_scores(pixel_uncertainty(probs, metric), size, labeled)[0].flatten().numpy()
    return scores, probs.argmax(1)[0]


@pytest.mark.parametrize("metric", ["entropy", "least_confidence", "margin"])
def test_score_pool_matches_direct_computation_for_any_batching(metric):
    rng = np.random.default_rng(0)
    model = ProbsFromPixels().train()
    images = _pool(rng, 3, 12, 12) + _pool(rng, 2, 10, 7)  # two sizes in one pool
    labels = [np.full(im.shape[:2], 255, np.uint8) for im in images]
    labels[1][:5, :5] = 2
    labels[3][:] = 0  # fully labeled image
    runs = [score_pool(model, iter(images), labels=iter(labels), metric=metric, region_size=5,
                       batch_size=b, return_predictions=True) for b in (1, 2, 8)]
    assert model.training and not any(model.seen_training)  # eval during scoring, mode restored
    for pool in runs:
        assert [(r.height, r.width) for r in pool.images] == [im.shape[:2] for im in images]
        for im, lab, regions, pred in zip(images, labels, pool.images, pool.predictions, strict=True):
            expected, argmax = _direct_grid(model, im, lab, metric, 5)
            np.testing.assert_allclose(regions.scores, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(regions.uncertainty, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(pred, argmax.numpy().astype(np.uint8))
            assert pred.dtype == np.uint8
    first = runs[0].images
    assert first[1].unlabeled[0] == 0 and first[1].unlabeled[1] == 25  # cell (0,0) fully labeled, (0,1) not
    assert first[1].scores[0] == 0.0
    assert (first[3].unlabeled == 0).all() and (first[3].scores == 0).all()
    np.testing.assert_array_equal(first[0].unlabeled, [25, 25, 10, 25, 25, 10, 10, 10, 4])


def test_score_pool_without_predictions_keeps_none_and_reports_progress():
    rng = np.random.default_rng(1)
    seen = []
    pool = score_pool(ProbsFromPixels(), _pool(rng, 5, 8, 8), region_size=4, batch_size=2,
                      progress=lambda done, total: seen.append((done, total)))
    assert pool.predictions is None and len(pool.images) == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_random_cold_start_needs_no_model_and_is_seeded():
    rng = np.random.default_rng(2)
    images = _pool(rng, 3, 8, 8)
    labels = [np.full((8, 8), 255, np.uint8) for _ in images]
    labels[0][:4, :4] = 1
    a = score_pool(None, images, labels=labels, metric="random", region_size=4, return_predictions=True)
    b = score_pool(None, images, labels=labels, metric="random", region_size=4, batch_size=1)
    c = score_pool(None, images, labels=labels, metric="random", region_size=4, seed=5)
    for x, y in zip(a.images, b.images, strict=True):
        np.testing.assert_array_equal(x.scores, y.scores)
    assert not np.array_equal(a.images[1].scores, c.images[1].scores)
    assert a.images[0].scores[0] == 0.0 and (a.images[1].scores > 0).all()
    assert all((p == 255).all() for p in a.predictions)
    with pytest.raises(ValueError, match="needs a model"):
        score_pool(None, images, metric="entropy")


def test_class_balance_prefers_regions_predicted_as_rare_classes():
    # Two 4x4 cells with the same uncertainty: the left predicted class 0, the right class 1.
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, :4] = (150, 100, 0)
    image[:, 4:] = (100, 150, 0)
    label = np.full((4, 8), 255, np.uint8)
    plain = score_pool(ProbsFromPixels(), [image], labels=[label], region_size=4).images[0]
    assert plain.scores[0] == pytest.approx(plain.scores[1])
    weights = class_balance_weights(np.array([1000, 10, 10]))  # class 1 rare in the labels
    balanced = score_pool(ProbsFromPixels(), [image], labels=[label], region_size=4,
                          class_weights=weights).images[0]
    assert balanced.scores[1] / balanced.scores[0] == pytest.approx(weights[1] / weights[0], rel=1e-5)
    np.testing.assert_allclose(balanced.uncertainty, plain.uncertainty)


def test_acquire_checks_arguments_before_scoring_and_selects():
    rng = np.random.default_rng(3)
    images = _pool(rng, 2, 8, 8)
    labels = [np.full((8, 8), 255, np.uint8) for _ in images]
    model = ProbsFromPixels()
    with pytest.raises(ValueError, match="budget_fraction must be in"):
        acquire(model, images, labels, num_classes=3, budget_fraction=1.5)
    with pytest.raises(ValueError, match="unknown region kind"):
        acquire(model, images, labels, num_classes=3, region_kind="hexagon", budget_regions=1)
    assert model.seen_training == []
    regions, pool = acquire(model, images, labels, num_classes=3, region_size=4, budget_regions=3,
                            class_balance=True)
    assert len(regions) == 3 and len(pool.predictions) == 2
    assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)
