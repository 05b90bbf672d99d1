import pytest
import torch

from tests.worker.engine._tiny import cycle_data
from worker.engine.trainer import MIX_MODES, Cancelled, TrainConfig, train


def tiny(**kw) -> TrainConfig:
    base = dict(model="unet_small", iterations=4, batch_size=2, unlabeled_batch_size=2, replay_batch_size=2,
                replay_size=4,
                crop_size=32, warmup_fraction=0.25, device="cpu")
    return TrainConfig(**{**base, **kw})


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = TrainConfig(mix="cowmix", scale_range=(0.5, 2.0))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus, colour"):
        TrainConfig.from_dict({"bogus": 1, "colour": 2, "iterations": 3})


@pytest.mark.parametrize("change, message", [
    ({"mix": "mixup"}, "unknown mix 'mixup'"),
    ({"model": "vgg"}, "unknown model 'vgg'"),
    ({"init": "warm"}, "unknown init"),
    ({"consistency": "kl"}, "unknown consistency"),
    ({"iterations": 0}, "iterations"),
    ({"tau": 1.0}, "tau"),
    ({"unlabeled_batch_size": 1}, "unlabeled_batch_size"),
])
def test_bad_config_is_refused_before_training(change, message):
    calls = []
    with pytest.raises(ValueError, match=message):
        train(tiny(**change), cycle_data(), progress=lambda *a: calls.append(a))
    assert calls == []


def test_default_lr_and_scales_depend_on_the_model():
    assert TrainConfig().learning_rate == 1e-2 and TrainConfig(model="unet_small").learning_rate == 1e-1
    assert TrainConfig(model="unet_small").scales == (1.0, 1.0)
    deeplab = TrainConfig(model="deeplabv3plus_mobilenetv2")
    assert deeplab.learning_rate == 1e-2 and deeplab.scales == (0.5, 1.5)
    assert TrainConfig(lr=0.3, scale_range=[0.8, 1.2]).learning_rate == 0.3
    assert TrainConfig(lr=0.3, scale_range=[0.8, 1.2]).scales == (0.8, 1.2)
    with pytest.raises(ValueError, match="scale_range"):
        TrainConfig(scale_range=(1.5, 1.0)).validate()


def test_training_is_deterministic_for_a_seed_on_cpu():
    data = cycle_data()
    a = train(tiny(seed=3), data)
    b = train(tiny(seed=3), data)
    c = train(tiny(seed=4), data)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.teacher), _weights(b.teacher), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a.teacher), _weights(c.teacher), strict=True))


@pytest.mark.parametrize("mix", MIX_MODES)
def test_every_mix_mode_trains_and_reports_its_terms(mix):
    seen = []
    result = train(tiny(mix=mix, warmup_fraction=0.0), cycle_data(), progress=lambda *a: seen.append(a))
    assert [s[:3] for s in seen] == [("train", i + 1, 4, ) for i in range(4)]
    losses = seen[-1][3]
    assert ("unsup" in losses) == (mix != "none")
    assert ("replay" in losses) == (mix == "balanced_classmix")
    assert all(v == v for v in result.losses.values())  # no NaN


def test_warmup_steps_are_supervised_only():
    seen = []
    # log_every=1: the losses reported with each step are read back at that step
    train(tiny(iterations=4, warmup_fraction=0.5, log_every=1), cycle_data(),
          progress=lambda *a: seen.append(a[3]))
    assert ["unsup" in s for s in seen] == [False, False, True, True]


def test_mse_consistency_and_cutout_run():
    result = train(tiny(consistency="mse", cutout=True, warmup_fraction=0.0), cycle_data())
    assert "unsup" in result.losses


def test_should_stop_cancels():
    with pytest.raises(Cancelled):
        train(tiny(), cycle_data(), should_stop=lambda: True)


def test_nothing_labeled_is_an_error():
    data = cycle_data(fraction=0.0)
    with pytest.raises(ValueError, match="no labeled pixel"):
        train(tiny(), data)


def test_previous_init_starts_from_the_given_student():
    data = cycle_data()
    first = train(tiny(), data)
    state = {"student": first.student.state_dict()}
    cfg = tiny(init="previous", iterations=1, lr=1e-9, weight_decay=0.0, nesterov=False, momentum=0.0)
    warm = train(cfg, data, init_state=state)
    cold = train(tiny(iterations=1, lr=1e-9, weight_decay=0.0, nesterov=False, momentum=0.0), data)
    w0 = first.student.state_dict()["head.weight"]
    assert torch.allclose(warm.student.state_dict()["head.weight"], w0, atol=1e-6)
    assert not torch.allclose(cold.student.state_dict()["head.weight"], w0, atol=1e-6)


def test_learns_the_tiny_task():
    data = cycle_data(n=6, fraction=0.5)
    result = train(tiny(iterations=60, mix="none", lr=0.1), data)
    x = torch.from_numpy(data.val_images[0]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        pred = result.teacher(x).argmax(1)[0].numpy()
    assert (pred == data.val_labels[0]).mean() > 0.8


def test_deeplab_trains_from_the_packaged_imagenet_encoder():
    result = train(tiny(model="deeplabv3plus_mobilenetv2", iterations=2, warmup_fraction=0.0), cycle_data())
    assert set(result.losses) >= {"sup", "unsup"}
    assert result.teacher(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
