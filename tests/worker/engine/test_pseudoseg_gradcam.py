"""Batched Grad-CAM: shapes, range, a hand computation on a linear head, and gradients."""

import pytest
import torch
from torch import nn

from worker.engine.classifier_head import ClassifierHead
from worker.engine.gradcam import grad_cam, with_background


def _seeded_head(c=3, k=4):
    torch.manual_seed(0)
    return ClassifierHead(c, k)


def test_shapes_range_and_mask():
    head = _seeded_head()
    feats = torch.randn(2, 3, 4, 5)
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    cams = grad_cam(feats, head, mask)
    assert cams.shape == (2, 4, 4, 5)
    assert cams.min() >= 0 and cams.max() <= 1
    assert (cams[0, 1] == 0).all() and (cams[1, :3] == 0).all()
    assert not cams.requires_grad


def test_linear_head_matches_hand_computation():
    # logit_c = W_c . mean_ij f_ij + b_c, so d logit_c / d f_ij = W_c / (h w) at every position:
    # alpha_c = W_c / (h w) and CAM_c = ReLU(W_c . f) / (h w), which the max-normalisation turns into
    # ReLU(W_c . f) / max ReLU(W_c . f).
    head = _seeded_head()
    feats = torch.randn(2, 3, 4, 5)
    cams = grad_cam(feats, head)
    raw = torch.relu(torch.einsum("kc,bchw->bkhw", head.fc.weight, feats))
    peak = raw.amax(dim=(2, 3), keepdim=True)
    expected = torch.where(peak > 0, raw / peak.clamp_min(1e-12), torch.zeros_like(raw))
    assert torch.allclose(cams, expected, atol=1e-5)


def test_batched_equals_one_backward_per_class_on_a_nonlinear_head():
    torch.manual_seed(1)
    head = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 1), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    feats = torch.randn(2, 3, 5, 5)
    cams = grad_cam(feats, head)
    for c in range(4):
        f = feats.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(head(f)[:, c].sum(), f)
        raw = torch.relu((g.mean(dim=(2, 3), keepdim=True) * f).sum(1)).detach()
        peak = raw.amax(dim=(1, 2), keepdim=True)
        ref = torch.where(peak > 0, raw / peak.clamp_min(1e-12), torch.zeros_like(raw))
        assert torch.allclose(cams[:, c], ref, atol=1e-5)


def test_gradients_flow_to_features_and_head_when_asked():
    head = _seeded_head()
    feats = torch.randn(2, 3, 4, 5, requires_grad=True)
    cams = grad_cam(feats, head, create_graph=True)
    assert cams.requires_grad
    (cams * torch.rand_like(cams)).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert head.fc.weight.grad is not None and head.fc.weight.grad.abs().sum() > 0


def test_works_on_features_without_a_graph():
    head = _seeded_head()
    feats = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        cams = grad_cam(feats, head)
    assert cams.shape == (1, 4, 4, 4)
    assert torch.allclose(cams, grad_cam(feats, head))


def test_an_all_negative_map_is_zero_not_nan():
    head = ClassifierHead(1, 1)
    with torch.no_grad():
        head.fc.weight.fill_(1.0)
    cams = grad_cam(-torch.ones(1, 1, 3, 3), head)
    assert torch.equal(cams, torch.zeros(1, 1, 3, 3))


def test_background_channel():
    cams = torch.tensor([[[[0.2]], [[0.7]], [[0.4]]]])
    out = with_background(cams, 0)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.3)
    assert torch.equal(out[:, 1:], cams[:, 1:])
    assert with_background(cams, 1, ceiling=2.0)[0, 1, 0, 0].item() == pytest.approx(1.6)
    assert with_background(cams, None) is cams
