"""Streaming scoring: the same selection as scoring the whole pool, pre-labels, memory O(batch)."""

import weakref

import numpy as np
import pytest
import torch

from tests.worker.engine.test_acquisition import ProbsFromPixels
from worker.engine.acquisition import acquire
from worker.engine.pool import ArrayPool, Pool
from worker.engine.stream import evaluate_pool, score_and_select


def _pool(n=7, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(n - 2)]
    images += [rng.integers(0, 256, (12, 20, 3), dtype=np.uint8) for _ in range(2)]  # mixed sizes
    labels = [np.where(rng.random(im.shape[:2]) < 0.3, rng.integers(0, 3, im.shape[:2]), 255).astype(np.uint8)
              for im in images]
    labels[1][:] = 0  # fully labeled: none of its regions is a candidate
    return images, labels


@pytest.mark.parametrize("budget", [dict(budget_regions=5), dict(per_image=2),
                                    dict(per_image=2, budget_regions=3), dict(budget_fraction=0.2)])
@pytest.mark.parametrize("kind, metric", [("grid", "entropy"), ("grid", "random"), ("superpixel", "margin")])
def test_streaming_selects_what_scoring_the_whole_pool_selects(budget, kind, metric):
    images, labels = _pool()
    model = ProbsFromPixels()
    want, pool = acquire(model, images, labels, num_classes=3, metric=metric, region_kind=kind, region_size=4,
                         seed=3, batch_size=3, **budget)
    got = score_and_select(model, ArrayPool(images, labels), metric=metric, region_kind=kind, region_size=4,
                           total_pixels=sum(lab.size for lab in labels), seed=3, device=torch.device("cpu"),
                           batch_size=3, budget_regions=budget.get("budget_regions"),
                           budget_fraction=budget.get("budget_fraction"), per_image=budget.get("per_image"))
    assert [(r.image_index, r.x, r.y, r.w, r.h, r.superpixel_id) for r in got] == \
        [(r.image_index, r.x, r.y, r.w, r.h, r.superpixel_id) for r in want]
    assert [r.score for r in got] == pytest.approx([r.score for r in want])
    for r in got:  # the pre-label is the teacher's argmax inside the region (255 off a superpixel)
        pred = pool.predictions[r.image_index][r.y:r.y + r.h, r.x:r.x + r.w].copy()
        if r.mask is not None:
            pred[~r.mask] = 255
        assert (r.prelabel == pred).all()


@pytest.mark.parametrize("cost, rule", [("clicks", "ratio"), ("corrected", "ratio"),
                                        ("clicks", "below_median"), ("corrected", "below_median")])
@pytest.mark.parametrize("kind", ["grid", "superpixel"])
def test_cost_aware_streaming_selects_what_scoring_the_whole_pool_selects(kind, cost, rule):
    images, labels = _pool()
    rng = np.random.default_rng(1)
    # Blocks of colour, 3 px across the 4 px cells (SLIC finds several superpixels in them; in pure
    # noise it finds one per image, and a block per cell would cost every cell one click).
    images = [np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((3, 3, 1)))[:im.shape[0], :im.shape[1]]
              .astype(np.uint8) for im in images]
    model = ProbsFromPixels()
    common = dict(region_kind=kind, region_size=4, batch_size=3, budget_fraction=0.2, cost=cost,
                  cost_rule=rule)
    want, pool = acquire(model, images, labels, num_classes=3, **common)
    got = score_and_select(model, ArrayPool(images, labels), metric="entropy", budget_regions=None,
                           per_image=None, total_pixels=sum(lab.size for lab in labels),
                           device=torch.device("cpu"), **common)
    assert [(r.image_index, r.x, r.y, r.superpixel_id) for r in got] == \
        [(r.image_index, r.x, r.y, r.superpixel_id) for r in want]
    assert [r.score for r in got] == pytest.approx([r.score for r in want])
    _, plain = acquire(model, images, labels, num_classes=3, **{**common, "cost": "none"})
    assert any(not np.allclose(a.scores, b.scores) for a, b in zip(pool.images, plain.images, strict=True))


class Tracked(np.ndarray):
    pass


class GeneratedPool(Pool):
    """Images made on demand; counts how many are alive at once (a pool that would not fit if held)."""

    def __init__(self, n: int, side: int = 24):
        self.n, self.side, self.alive, self.peak = n, side, 0, 0

    def __len__(self):
        return self.n

    def _made(self, arr):
        arr = arr.view(Tracked)
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        weakref.finalize(arr, self._gone)
        return arr

    def _gone(self):
        self.alive -= 1

    def image(self, i):
        rng = np.random.default_rng(i)
        return self._made(rng.integers(0, 256, (self.side, self.side, 3), dtype=np.uint8))

    def label(self, i):
        return np.full((self.side, self.side), 255, np.uint8)

    def size(self, i):
        return self.side, self.side


def test_memory_does_not_grow_with_the_pool():
    peaks = []
    for n in (20, 200):
        pool = GeneratedPool(n)
        regions = score_and_select(ProbsFromPixels(), pool, metric="entropy", region_kind="grid",
                                   region_size=8, budget_regions=4, budget_fraction=None, per_image=None,
                                   total_pixels=n * 576, device=torch.device("cpu"), batch_size=4)
        assert len(regions) == 4 and all(r.prelabel is not None for r in regions)
        peaks.append(pool.peak)
    # Flat: the batch being scored (4), the previous one until it is released, the image being read.
    assert peaks[0] == peaks[1] <= 2 * 4 + 1


def test_evaluate_pool_batches_by_pixel_budget_and_counts_every_pixel():
    images, labels = _pool()
    truth = [np.random.default_rng(i).integers(0, 3, lab.shape).astype(np.uint8)
             for i, lab in enumerate(labels)]
    cm_small = evaluate_pool(ProbsFromPixels(), ArrayPool(images, truth), 3, device=torch.device("cpu"),
                             batch_size=32, max_pixels=300)  # 1 image per batch
    cm_big = evaluate_pool(ProbsFromPixels(), ArrayPool(images, truth), 3, device=torch.device("cpu"))
    assert (cm_small == cm_big).all() and cm_big.sum() == sum(t.size for t in truth)
