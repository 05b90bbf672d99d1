"""The PseudoSeg module on a real (tiny) U-Net: feature taps, losses, fused targets, CutOut."""

import pytest
import torch
from torch import nn

from worker.engine.classifier_head import image_level_labels
from worker.engine.models import build_model
from worker.engine.pseudoseg import FeatureTap, PseudoSegModule, tapped

K = 4


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("unet_small", K)


def _batch():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 32, 32, generator=g)
    labels = torch.randint(0, K, (2, 32, 32), generator=g)
    labels[:, 8:] = 255
    return images, labels


def test_taps_capture_encoder_features_and_go_away(model):
    images, _ = _batch()
    with tapped(model) as tap:
        model(images)
        deep = 32 // model.stride  # the bottleneck, at the model's deepest stride
        assert tap.deep.shape == (2, model.enc[4][1][0].out_channels, deep, deep)
        assert [t.shape[-1] for t in tap.hyper] == [4 * deep, 2 * deep, deep]
    assert not any(m._forward_hooks for m in model.modules())


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="does not know"):
        FeatureTap(nn.Conv2d(3, 2, 1))


def test_losses_train_the_encoder_through_the_classifier_only(model):
    images, labels = _batch()
    ps = PseudoSegModule(model, K, background=0)
    target, known = image_level_labels(labels, K, background=0)
    with tapped(model) as tap:
        model(images)
        losses = ps.losses(tap.deep, tap.hyper, labels, target, known)
    assert set(losses) == {"cls", "sgc"} and all(torch.isfinite(v) for v in losses.values())
    losses["sgc"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.parameters())  # SGC inputs are detached
    assert all(p.grad is not None for p in ps.sgc.parameters())
    losses["cls"].backward()
    assert model.enc[4][0][0].weight.grad.abs().sum() > 0


def test_pseudo_targets_are_distributions_without_absent_classes(model):
    images, labels = _batch()
    ps = PseudoSegModule(model, K, background=0)
    labels[0, :8] = 1
    labels[1, :8] = 3
    target, known = image_level_labels(labels, K, tags=[[1, 2], [3]], background=0)
    model.eval()
    with torch.no_grad(), tapped(model) as tap:
        p_logits = model(images)
        fused = ps.pseudo_targets(p_logits, tap.deep, tap.hyper, target, known, gamma=0.5, temperature=0.5)
    assert fused.shape == (2, K, 32, 32)
    assert torch.allclose(fused.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert (fused[0, 3] == 0).all() and (fused[1, 1:3] == 0).all()
    assert (fused[:, 0] > 0).all()  # background is never ruled out


def test_sgc_resolution_is_capped():
    ps = PseudoSegModule(build_model("unet_small", K), K, max_positions=16)
    assert ps.sgc_size([torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 4, 4)]) == (4, 4)
    assert ps.sgc_size([torch.zeros(1, 1, 9, 3)]) == (5, 2)

