"""Self-attention Grad-CAM: attention arithmetic, background score, loss on labeled pixels only."""

import pytest
import torch
import torch.nn.functional as F

from worker.engine.sgc import SelfAttentionCAM, hypercolumn, sgc_loss


def _identity_classifier(sgc: SelfAttentionCAM) -> SelfAttentionCAM:
    with torch.no_grad():
        k = sgc.classify.weight.shape[0]
        sgc.classify.weight.copy_(torch.eye(k)[:, :, None, None])
        sgc.classify.bias.zero_()
    return sgc


def test_attention_rows_are_distributions():
    torch.manual_seed(0)
    sgc = SelfAttentionCAM(5, 3, attention_dim=4)
    att = sgc.attention(torch.randn(2, 5, 3, 4))
    assert att.shape == (2, 12, 12)
    assert torch.allclose(att.sum(-1), torch.ones(2, 12), atol=1e-6)


def test_uniform_features_propagate_the_mean():
    # Identical hypercolumns everywhere -> equal affinities -> sum_j softmax_j m_j = mean(m).
    sgc = _identity_classifier(SelfAttentionCAM(2, 2, attention_dim=3))
    hyper = torch.ones(1, 2, 2, 2)
    seed = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.5], [0.5, 1.0]]]])
    out = sgc(hyper, seed)
    expected = seed + seed.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out, expected, atol=1e-6)


def test_sharp_attention_copies_from_similar_positions():
    # Two positions with orthogonal features and a huge key/query gain: each attends to itself only.
    sgc = _identity_classifier(SelfAttentionCAM(2, 1, attention_dim=2))
    with torch.no_grad():
        sgc.query.weight.copy_(100 * torch.eye(2)[:, :, None, None])
        sgc.key.weight.copy_(100 * torch.eye(2)[:, :, None, None])
    hyper = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # [1, 2, 1, 2]
    seed = torch.tensor([[[[0.8, 0.1]]]])
    assert torch.allclose(sgc(hyper, seed), 2 * seed, atol=1e-5)


def test_background_score_is_two_minus_max_foreground():
    sgc = _identity_classifier(SelfAttentionCAM(2, 3, attention_dim=3, background=0))
    seed = torch.tensor([[[[0.9]], [[0.3]], [[0.6]]]])
    out = sgc(torch.ones(1, 2, 1, 1), seed)
    # One position: propagation doubles the seed; foreground max = 1.2, so background = 0.8.
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.8, 0.6, 1.2])


def test_size_mismatch_is_refused():
    sgc = SelfAttentionCAM(2, 2)
    with pytest.raises(ValueError, match="hypercolumn"):
        sgc(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 2, 2))


def test_hypercolumn_resizes_stacks_and_detaches():
    a = torch.randn(2, 3, 8, 8, requires_grad=True)
    b = torch.randn(2, 5, 2, 2, requires_grad=True)
    h = hypercolumn([a, b], (4, 4))
    assert h.shape == (2, 8, 4, 4) and not h.requires_grad


def test_loss_uses_labeled_pixels_and_trains_only_sgc_weights():
    torch.manual_seed(0)
    sgc = SelfAttentionCAM(4, 3, attention_dim=4)
    hyper = torch.randn(2, 4, 4, 4, requires_grad=True)
    seed = torch.rand(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 8, 8), 255)
    labels[0, :2, :2] = 1
    logits = sgc(hyper, seed)
    loss = sgc_loss(logits, labels)
    loss.backward()
    assert hyper.grad is None and seed.grad is None
    assert all(p.grad is not None for p in sgc.parameters())
    # Only the labeled pixels count: changing the prediction elsewhere does not change the loss.
    up = F.interpolate(logits.detach(), size=(8, 8), mode="bilinear")
    ref = F.cross_entropy(up[0, :, :2, :2].reshape(3, -1).T, torch.ones(4, dtype=torch.long))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_with_no_labeled_pixel_is_zero():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = sgc_loss(logits, torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
