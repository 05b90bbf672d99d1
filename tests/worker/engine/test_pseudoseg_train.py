"""The trainer's PseudoSeg hook, its soft loss, and the after-cycle report, on a tiny U-Net (32x32)."""

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worker.engine.models import build_model
from worker.engine.pool import ArrayPool
from worker.engine.pseudoseg_report import (
    classifier_uncertainty,
    load_module,
    module_state,
    pseudo_label_quality,
)
from worker.engine.pseudoseg_train import (
    PseudoSegHook,
    check_config,
    mix_loss,
    resolve_background,
    soft_unsupervised_loss,
)
from worker.engine.teacher import EMATeacher

K = 3


def _cfg(**kw):
    base = dict(pseudo_label="pseudoseg", pseudoseg_gamma=0.5, pseudoseg_temperature=0.5,
                pseudoseg_cutout=0.1, pseudoseg_background=None, ema_momentum=0.99)
    return SimpleNamespace(**{**base, **kw})


@dataclass
class _Data:
    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    num_classes: int = K
    class_names: list = field(default_factory=lambda: ["background", "a", "b"])
    tags: list | None = None

    @property
    def train(self):  # the pool the hook reads its labels from, as CycleData.train
        return ArrayPool(self.images, self.labels)


def _data(tags=None):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    labels = [np.full((32, 32), 255, np.uint8) for _ in range(3)]
    labels[0][:8] = 1
    labels[1][:] = 0
    labels[1][8:16] = 2
    return _Data(images, labels, tags=tags)


@pytest.mark.parametrize("bad, match", [({"pseudo_label": "fancy"}, "pseudo_label"),
                                        ({"pseudoseg_gamma": 1.5}, "gamma"),
                                        ({"pseudoseg_temperature": 0.0}, "temperature"),
                                        ({"pseudoseg_cutout": 1.0}, "cutout"),
                                        ({"pseudoseg_background": -2}, "background"),
                                        ({"consistency": "mse"}, "soft cross-entropy")])
def test_bad_config_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        check_config(_cfg(**bad))
    check_config(_cfg())


def test_background_from_config_or_name():
    assert resolve_background(2, ["background", "x", "y"]) == 2
    assert resolve_background(None, ["sky", "Background"]) == 1
    assert resolve_background(None, ["sky", "road"]) is None


def test_hook_labels_tags_and_no_hooks_leak_into_the_teacher():
    torch.manual_seed(0)
    student = build_model("unet_small", K)
    teacher = EMATeacher(student)
    hook = PseudoSegHook(_cfg(), _data(tags=[None, None, [2]]), student, torch.device("cpu"))
    assert hook.background == 0
    assert hook.target.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 1]]
    assert hook.known.tolist() == [[False, True, False], [False, True, True], [False, True, True]]
    assert not any(m._forward_hooks for m in teacher.module.modules())
    x = torch.rand(2, 3, 32, 32)
    y = torch.full((2, 32, 32), 255)
    y[0, :4] = 1
    student(x)
    losses = hook.student_losses(2, y, [0, 2])
    assert set(losses) == {"cls", "sgc"} and all(torch.isfinite(v) for v in losses.values())
    inside = torch.ones(2, 32, 32, dtype=torch.bool)
    fused, labels, inside, conf = hook.teacher_view(teacher.module, x, y, inside, [0, 2])
    assert fused.shape == (2, K, 32, 32) and torch.allclose(fused.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert (fused[1, 1] == 0).all()  # image 2 is tagged [2]: class 1 is absent
    assert (conf[0, :4] == 1).all() and (conf <= 1).all()
    replay = hook.teacher_view(teacher.module, x, y, inside, None)
    assert (replay[0][1, 1] > 0).all()  # a replayed crop knows no tags
    module = hook.close()
    assert not any(m._forward_hooks for m in student.modules())
    assert module is hook.ema.module and not module.training


def test_hook_refuses_mismatched_tags():
    with pytest.raises(ValueError, match="tag lists"):
        PseudoSegHook(_cfg(), _data(tags=[None]), build_model("unet_small", K), torch.device("cpu"))


def test_cutout_leaves_the_square_out_of_both_views():
    torch.manual_seed(0)
    student = build_model("unet_small", K)
    hook = PseudoSegHook(_cfg(pseudoseg_cutout=0.25), _data(), student, torch.device("cpu"))
    x = torch.rand(2, 3, 16, 16)
    inside = torch.ones(2, 16, 16, dtype=torch.bool)
    view = (torch.rand(2, K, 16, 16), torch.full((2, 16, 16), 255), inside, torch.ones(2, 16, 16))
    out, va, vb = hook.cutout(x, view, view, torch.Generator().manual_seed(0))
    erased = ~va[2]
    assert 0.15 < erased.float().mean() < 0.35
    assert torch.equal(va[2], vb[2])
    assert torch.equal(out[~erased[:, None].expand_as(out)], x[~erased[:, None].expand_as(x)])


def test_soft_loss_equals_weighted_ce_for_one_hot_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, K, 4, 4)
    hard = torch.randint(0, K, (2, 4, 4))
    conf = torch.rand(2, 4, 4)
    soft, eta = soft_unsupervised_loss(logits, F.one_hot(hard, K).permute(0, 3, 1, 2).float(), conf, tau=0.5)
    per_pixel = F.cross_entropy(logits, hard, reduction="none") * conf
    expected_eta = (conf > 0.5).float().mean((1, 2))
    assert torch.allclose(eta, expected_eta)
    assert soft.item() == pytest.approx((expected_eta * per_pixel.mean((1, 2))).mean().item(), rel=1e-5)


def test_mix_loss_takes_each_pixel_from_its_source_and_humans_win():
    logits = torch.zeros(1, 2, 1, 2, requires_grad=True)
    fa = torch.tensor([[[[0.9, 0.9]], [[0.1, 0.1]]]])
    fb = torch.tensor([[[[0.2, 0.2]], [[0.8, 0.8]]]])
    ya = torch.tensor([[[255, 1]]])
    yb = torch.full((1, 1, 2), 255)
    ones = torch.ones(1, 1, 2)
    m = torch.tensor([[[[1.0, 1.0]]]])  # both pixels from A; A's second pixel is human-labeled class 1
    loss, eta = mix_loss(logits, (fa, ya, ones.bool(), ones), (fb, yb, ones.bool(), ones), m, "classmix", 0.5)
    assert loss.item() == pytest.approx(np.log(2))  # uniform student: CE = log 2 for any target
    loss.backward()
    g = logits.grad[0, :, 0]  # d/dlogits of soft CE = softmax - target, /2 pixels
    assert g[:, 0].tolist() == pytest.approx([(0.5 - 0.9) / 2, (0.5 - 0.1) / 2])
    assert g[:, 1].tolist() == pytest.approx([(0.5 - 0.0) / 2, (0.5 - 1.0) / 2])


def test_report_quality_uncertainty_and_state_round_trip():
    torch.manual_seed(0)
    teacher = build_model("unet_small", K).eval()
    data = _data()
    hook = PseudoSegHook(_cfg(), data, teacher, torch.device("cpu"))
    module = hook.close()
    gt = [np.random.default_rng(i).integers(0, K, (32, 32)).astype(np.uint8) for i in range(3)]
    report = pseudo_label_quality(teacher, module, data.images, data.labels, gt, K, tags=[None, [1], None],
                                  batch_size=2)
    unlabeled = sum(int((lab == 255).sum()) for lab in data.labels)
    assert report["pixels"] == unlabeled
    assert 0 <= report["argmax"] <= 1 and 0 <= report["pseudoseg"] <= 1
    assert len(report["pseudoseg_per_class"]) == K
    plain = pseudo_label_quality(teacher, None, data.images, data.labels, gt, K)
    assert plain["pseudoseg"] is None and plain["argmax"] == report["argmax"]
    unc = classifier_uncertainty(teacher, module, data.images, batch_size=2)
    assert len(unc) == 3 and all(0 <= u <= 1 for u in unc)
    again = load_module(module_state(module), teacher)
    assert classifier_uncertainty(teacher, again, data.images) == pytest.approx(unc)


def test_train_with_pseudoseg_targets():
    from worker.engine.cycle import CycleData
    from worker.engine.trainer import TrainConfig, train

    d = _data(tags=[[1], None, None])
    data = CycleData(d.images, d.labels, [], [], d.num_classes, d.class_names, tags=d.tags)
    cfg = TrainConfig(model="unet_small", iterations=3, batch_size=2, unlabeled_batch_size=2,
                      replay_batch_size=2, replay_size=4,
                      crop_size=32, mix="balanced_classmix", pseudo_label="pseudoseg", warmup_fraction=0.0,
                      device="cpu")
    first = train(cfg, data)
    assert {"cls", "sgc", "unsup", "replay"} <= set(first.losses)
    assert first.pseudoseg is not None and not first.pseudoseg.training
    assert not any(m._forward_hooks for m in first.student.modules())
    again = train(cfg, data)  # deterministic for a seed on CPU, hooks and CutOut included
    for a, b in zip(first.teacher.state_dict().values(), again.teacher.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    plain = TrainConfig(**{**cfg.to_dict(), "pseudo_label": "argmax", "iterations": 1})
    assert train(plain, data).pseudoseg is None
