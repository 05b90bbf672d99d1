"""Calibrated fusion and sharpening on hand-made inputs; absent-class masking."""

import math

import pytest
import torch

from worker.engine.fusion import fuse, logit_norm, mask_absent, sharpen


def _px(*values):
    """A [1, K, 1, 1] tensor from K values."""
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)


def test_logit_norm_is_the_joint_rms():
    # concat = [3, 4, 0, 0] -> mean of squares 25/4 -> RMS 2.5
    assert logit_norm(_px(3.0, 4.0), _px(0.0, 0.0)).item() == pytest.approx(2.5)


def test_sharpen_by_hand():
    out = sharpen(_px(0.2, 0.8), 0.5)
    assert out.flatten().tolist() == pytest.approx([0.04 / 0.68, 0.64 / 0.68])
    assert sharpen(_px(0.2, 0.8), 1.0).flatten().tolist() == pytest.approx([0.2, 0.8])


def test_sharpen_refuses_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        sharpen(_px(0.5, 0.5), 0.0)


def test_fuse_by_hand():
    p, m = _px(2.0, 0.0), _px(0.0, 1.0)
    n = math.sqrt((4 + 0 + 0 + 1) / 4 + 1e-8)  # the joint RMS, with its epsilon
    sp = [math.exp(2 / n) / (math.exp(2 / n) + 1), 1 / (math.exp(2 / n) + 1)]
    sm = [1 / (1 + math.exp(1 / n)), math.exp(1 / n) / (1 + math.exp(1 / n))]
    avg = [0.3 * a + 0.7 * b for a, b in zip(sp, sm, strict=True)]
    sq = [a ** 2 for a in avg]
    expected = [v / sum(sq) for v in sq]
    out = fuse(p, m, gamma=0.3, temperature=0.5)
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-9)


def test_fuse_with_gamma_one_is_the_decoder_alone():
    torch.manual_seed(0)
    p, m = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    n = logit_norm(p, m)
    expected = sharpen(torch.softmax(p / n, 1), 0.5)
    assert torch.allclose(fuse(p, m, gamma=1.0, temperature=0.5), expected, atol=1e-6)


def test_fused_targets_are_distributions():
    torch.manual_seed(0)
    out = fuse(torch.randn(2, 5, 4, 4) * 10, torch.randn(2, 5, 4, 4))
    assert out.shape == (2, 5, 4, 4)
    assert torch.allclose(out.sum(1), torch.ones(2, 4, 4), atol=1e-6)


def test_absent_classes_get_zero_before_sharpening():
    p, m = _px(1.0, 2.0, 3.0), _px(3.0, 2.0, 1.0)
    absent = torch.tensor([[False, False, True]])
    out = fuse(p, m, absent=absent).flatten()
    assert out[2].item() == 0.0
    n = logit_norm(p, m)
    avg = 0.5 * torch.softmax(p / n, 1) + 0.5 * torch.softmax(m / n, 1)
    kept = avg.flatten()[:2] ** 2
    assert out[:2].tolist() == pytest.approx((kept / kept.sum()).tolist())


def test_a_pixel_with_every_class_absent_keeps_its_distribution():
    probs = _px(0.25, 0.75)
    assert torch.equal(mask_absent(probs, torch.tensor([[True, True]])), probs)


def test_absent_mask_is_per_image():
    probs = torch.full((2, 2, 1, 1), 0.5)
    out = mask_absent(probs, torch.tensor([[True, False], [False, False]]))
    assert out[0].flatten().tolist() == [0.0, 0.5] and out[1].flatten().tolist() == [0.5, 0.5]


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ"):
        fuse(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="gamma"):
        fuse(torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), gamma=1.5)
