import numpy as np
import pytest
import torch

from worker.engine.acquisition import score_pool
from worker.engine.regions import (
    grid_box,
    grid_cell_counts,
    grid_regions,
    region_boxes,
    region_mask,
    region_scores,
    slic_regions,
)
from worker.engine.selection import ImageRegions, PoolScores, check_budget, select_regions


def test_grid_regions_ids_boxes_and_counts_with_edge_cells():
    labels = grid_regions(5, 7, 3)  # rows 3,2 ; cols 3,3,1
    assert labels.shape == (5, 7) and labels.max() == 5
    assert labels[0, 0] == 0 and labels[0, 6] == 2 and labels[4, 0] == 3 and labels[4, 6] == 5
    np.testing.assert_array_equal(np.bincount(labels.ravel()), grid_cell_counts(5, 7, 3).ravel())
    np.testing.assert_array_equal(grid_cell_counts(5, 7, 3), [[9, 9, 3], [6, 6, 2]])
    assert grid_box(2, 5, 7, 3) == (6, 0, 1, 3)
    assert grid_box(4, 5, 7, 3) == (3, 3, 3, 2)
    np.testing.assert_array_equal(region_boxes(labels)[4], [3, 3, 3, 2])


def _blocks_image():
    """Four flat colour quadrants with a bright square: SLIC must follow those edges."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16, 16:] = (200, 30, 30)
    image[16:, :16] = (30, 200, 30)
    image[16:, 16:] = (30, 30, 200)
    image[4:12, 4:12] = (250, 250, 250)
    return image


def test_slic_regions_contiguous_ids_deterministic_and_follow_edges():
    image = _blocks_image()
    labels = slic_regions(image, 8)
    assert labels.shape == (32, 32) and labels.dtype == np.int32
    n = labels.max() + 1
    assert set(np.unique(labels)) == set(range(n)) and 4 <= n <= 32
    np.testing.assert_array_equal(labels, slic_regions(image, 8))
    # No superpixel straddles the quadrant borders (flat colours on each side).
    quadrant = (np.arange(32)[:, None] >= 16) * 2 + (np.arange(32)[None, :] >= 16)
    for r in range(n):
        assert len(np.unique(quadrant[labels == r])) == 1


def test_region_boxes_and_masks():
    labels = np.array([[0, 0, 1],
                       [2, 1, 1],
                       [2, 2, 1]], np.int32)
    boxes = region_boxes(labels)
    np.testing.assert_array_equal(boxes, [[0, 0, 2, 1], [1, 0, 2, 3], [0, 1, 2, 2]])
    np.testing.assert_array_equal(region_mask(labels, 1, tuple(boxes[1])), [[0, 1], [1, 1], [0, 1]])


def test_region_scores_mean_over_pixels_labeled_count_zero():
    labels = np.array([[0, 0, 1],
                       [2, 1, 1],
                       [2, 2, 1]], np.int32)
    u = torch.tensor([[1.0, 3.0, 2.0], [6.0, 2.0, 2.0], [6.0, 6.0, 2.0]])
    labeled = np.zeros((3, 3), bool)
    labeled[0, 1] = True
    np.testing.assert_allclose(region_scores(u, labels).numpy(), [2.0, 2.0, 6.0])
    np.testing.assert_allclose(region_scores(u, labels, labeled).numpy(), [0.5, 2.0, 6.0])


class ProbsFromPixels(torch.nn.Module):
    def forward(self, x):
        return torch.log(x + 1e-4)


def test_superpixel_pool_scores_and_selected_masks():
    image = _blocks_image()
    label = np.full((32, 32), 255, np.uint8)
    label[16:, 16:] = 3  # the blue quadrant is labeled
    model = ProbsFromPixels()
    pool = score_pool(model, [image], labels=[label], region_kind="superpixel", region_size=8)
    sp = slic_regions(image, 8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    probs = model(x).softmax(1)
    ent = -(probs * probs.log()).sum(1)[0]
    expected = region_scores(ent, sp, label != 255).numpy()
    regions = pool.images[0]
    np.testing.assert_allclose(regions.scores, expected, rtol=1e-5)
    np.testing.assert_array_equal(regions.unlabeled, np.bincount(sp[label == 255], minlength=sp.max() + 1))
    np.testing.assert_array_equal(regions.boxes, region_boxes(sp))
    with pytest.raises(ValueError, match="needs the pool images"):
        select_regions(pool, budget_regions=2)
    selected = select_regions(pool, budget_regions=100, images=[image])
    blue = {int(r) for r in np.unique(sp[16:, 16:])}
    assert {s.superpixel_id for s in selected} == set(range(sp.max() + 1)) - blue  # labeled never chosen
    for s in selected:
        assert s.mask.shape == (s.h, s.w)
        np.testing.assert_array_equal(s.mask, sp[s.y:s.y + s.h, s.x:s.x + s.w] == s.superpixel_id)


def _hand_pool(scores, unlabeled=None, size=4, side=8):
    """Pool of images side x side with grid cells of `size`; scores per image row-major."""
    images = []
    for i, s in enumerate(scores):
        s = np.asarray(s, np.float32)
        unl = np.full(s.size, size * size) if unlabeled is None else np.asarray(unlabeled[i])
        unl = unl.astype(np.int32)
        images.append(ImageRegions(side, side, s, s, unl))
    return PoolScores("grid", size, "entropy", images, None, 0.0)


def test_global_top_b_versus_per_image():
    pool = _hand_pool([[0.9, 0.8, 0.7, 0.1], [0.2, 0.3, 0.05, 0.0]])
    top = select_regions(pool, budget_regions=3)
    assert [(r.image_index, r.x, r.y) for r in top] == [(0, 0, 0), (0, 4, 0), (0, 0, 4)]
    assert top[0].w == 4 and top[0].superpixel_id == -1 and top[0].mask is None
    per = select_regions(pool, per_image=2)
    assert [(r.image_index, r.score) for r in per] == [(0, pytest.approx(0.9)), (0, pytest.approx(0.8)),
                                                       (1, pytest.approx(0.3)), (1, pytest.approx(0.2))]
    capped = select_regions(pool, per_image=2, budget_regions=3)
    assert [r.image_index for r in capped] == [0, 0, 1]


def test_fully_labeled_regions_never_selected_and_ties_are_deterministic():
    pool = _hand_pool([[0.9, 0.5, 0.5, 0.5]], unlabeled=[[0, 16, 16, 16]])
    chosen = select_regions(pool, budget_regions=10)
    assert [(r.x, r.y) for r in chosen] == [(4, 0), (0, 4), (4, 4)]


def test_budget_fraction_counts_unlabeled_pixels_of_the_pool():
    # Pool: 2 images of 8x8 = 128 px. 25% = 32 px. Best region has only 8 unlabeled px.
    pool = _hand_pool([[0.9, 0.8, 0.1, 0.1], [0.7, 0.0, 0.0, 0.0]], unlabeled=[[8, 16, 16, 16], [16] * 4])
    chosen = select_regions(pool, budget_fraction=0.25)
    assert [(r.image_index, r.score) for r in chosen] == [(0, pytest.approx(0.9)), (0, pytest.approx(0.8)),
                                                          (1, pytest.approx(0.7))]  # 8 + 16 + 16 >= 32
    assert len(select_regions(pool, budget_fraction=1.0)) == 8
    assert len(select_regions(pool, budget_fraction=0.01)) == 1


@pytest.mark.parametrize("kwargs,match", [
    ({}, "no acquisition budget"),
    ({"budget_fraction": 0.0}, r"budget_fraction must be in \(0, 1\]"),
    ({"budget_fraction": 1.5}, r"budget_fraction must be in \(0, 1\]"),
    ({"budget_regions": 0}, "budget_regions must be a positive integer"),
    ({"per_image": -1}, "per_image must be a positive integer"),
])
def test_bad_budgets_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_budget(**kwargs)


def test_both_region_and_fraction_budgets_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        select_regions(_hand_pool([[0.5]]), budget_regions=1, budget_fraction=0.5)
