import numpy as np
import pytest
import torch

from worker.engine.replay import ReplayBuffer, class_weights


def test_class_weights_are_inverse_labeled_frequency():
    labels = [np.array([[0, 0, 0, 1]], np.uint8), np.array([[0, 255, 255, 255]], np.uint8)]
    w = class_weights(labels, 3)  # counts 4, 1, 0 -> 1/5, 1/2, 1/1
    expected = np.array([1 / 5, 1 / 2, 1.0])
    assert w.numpy() == pytest.approx(expected / expected.sum())


def _crops(n: int, cls: int, size: int = 4):
    return (torch.full((n, 3, size, size), cls / 10), torch.full((n, size, size), 255),
            torch.ones(n, size, size, dtype=torch.bool), torch.full((n, size, size), cls))


def test_buffer_is_bounded_and_keeps_the_most_recent():
    buf = ReplayBuffer(capacity=5, num_classes=3)
    buf.push(*_crops(4, 0))
    buf.push(*_crops(4, 1))
    assert len(buf) == 5
    (xa, ya, ia), _ = buf.sample(50, generator=torch.Generator().manual_seed(0))
    values = set(torch.unique((xa * 10).round()).tolist())
    assert values <= {0.0, 1.0} and 1.0 in values
    assert (xa.mean((1, 2, 3)) * 10).round().eq(0).sum() < 50  # only one class-0 crop left of five
    assert ya.eq(255).all() and ia.all()


def test_weighted_sampling_prefers_crops_with_tail_classes():
    buf = ReplayBuffer(capacity=20, num_classes=3)
    buf.push(*_crops(10, 0))
    buf.push(*_crops(10, 2))
    w = torch.tensor([0.01, 0.01, 0.98])
    (xa, _, _), (xb, _, _) = buf.sample(400, w, generator=torch.Generator().manual_seed(0))
    tail_a = (xa[:, 0, 0, 0] * 10).round().eq(2).float().mean()
    tail_b = (xb[:, 0, 0, 0] * 10).round().eq(2).float().mean()
    assert tail_a > 0.95 and 0.35 < tail_b < 0.65  # A biased, B uniform


def test_sampling_needs_two_crops():
    buf = ReplayBuffer(capacity=4, num_classes=2)
    with pytest.raises(ValueError):
        buf.sample(1)
    with pytest.raises(ValueError):
        ReplayBuffer(capacity=1, num_classes=2)
