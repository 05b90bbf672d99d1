import math

import pytest
import torch
import torch.nn.functional as F

from worker.engine.losses import labels_to_probs, supervised_ce, teacher_targets, unsupervised_loss


def test_supervised_ce_ignores_255_pixels():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # [1, K=2, 1, 2]
    labels = torch.tensor([[[0, 255]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))  # only pixel 0 counts
    assert supervised_ce(logits, labels).item() == pytest.approx(expected)


def test_supervised_ce_with_nothing_labeled_is_zero_and_differentiable():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = supervised_ce(logits, torch.full((2, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_teacher_targets_human_labels_override_with_confidence_one():
    probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # argmax [0, 1], max [0.9, 0.8]
    target, conf = teacher_targets(probs, torch.tensor([[[255, 0]]]))
    assert target.tolist() == [[[0, 0]]]
    assert conf.flatten().tolist() == pytest.approx([0.9, 1.0])


def test_unsupervised_loss_by_hand():
    logits = torch.zeros(2, 2, 1, 2)  # uniform student: CE = ln 2 on every pixel
    target = torch.zeros(2, 1, 2, dtype=torch.long)
    conf = torch.tensor([[[0.99, 0.5]], [[0.6, 0.7]]])
    loss, eta = unsupervised_loss(logits, target, conf, tau=0.97)
    # image 0: eta 1/2, mean weighted CE ln2 * (0.99 + 0.5) / 2; image 1: eta 0
    assert eta.tolist() == pytest.approx([0.5, 0.0])
    assert loss.item() == pytest.approx(0.5 * (0.5 * math.log(2) * 1.49 / 2))


def test_unsupervised_loss_counts_only_valid_pixels():
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.zeros(1, 1, 2, dtype=torch.long)
    conf = torch.tensor([[[0.99, 0.1]]])
    loss, eta = unsupervised_loss(logits, target, conf, valid=torch.tensor([[[True, False]]]))
    assert eta.item() == 1.0
    assert loss.item() == pytest.approx(math.log(2) * 0.99)


def test_mse_consistency_is_squared_softmax_difference_times_eta():
    logits = torch.zeros(1, 2, 1, 1)
    probs = torch.tensor([[[[1.0]], [[0.0]]]])
    target, conf = teacher_targets(probs)
    loss, _ = unsupervised_loss(logits, target, conf, kind="mse", target_probs=probs)
    assert loss.item() == pytest.approx(0.25 + 0.25)
    with pytest.raises(ValueError, match="consistency"):
        unsupervised_loss(logits, target, conf, kind="kl")


def test_labels_to_probs_puts_one_hot_on_labeled_pixels():
    probs = F.softmax(torch.randn(1, 3, 2, 2), 1)
    out = labels_to_probs(probs, torch.tensor([[[2, 255], [255, 0]]]))
    assert out[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert torch.equal(out[0, :, 0, 1], probs[0, :, 0, 1])
