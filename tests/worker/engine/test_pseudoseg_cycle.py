"""run_cycle with PseudoSeg: tags in, per-image classifier uncertainty and the module's state out."""

import numpy as np
import pytest

from worker.engine import checkpoint as ckpt_io
from worker.engine.cycle import AcquisitionConfig, CycleData, TrainConfig, run_cycle
from worker.engine.pseudoseg_report import classifier_uncertainty, load_module


def _data(tags=None):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    labels = [np.full((32, 32), 255, np.uint8) for _ in range(4)]
    labels[0][:8] = 1
    labels[1][:8] = 2
    return CycleData(images, labels, images[:1], [np.zeros((32, 32), np.uint8)], 3,
                     ["background", "a", "b"], tags=tags)


def _cfg(pseudo_label="pseudoseg"):
    return TrainConfig(model="unet_small", iterations=2, batch_size=2, unlabeled_batch_size=2, crop_size=32,
                       mix="classmix",
                       warmup_fraction=0.0, pseudo_label=pseudo_label, device="cpu")


ACQ = AcquisitionConfig(region_size=16, budget_regions=2)


def test_tags_in_uncertainty_and_module_out():
    out = run_cycle(_cfg(), _data(tags=[[1], None, [0, 2], []]), ACQ)
    assert len(out.tag_uncertainty) == 4 and all(0 <= u <= 1 for u in out.tag_uncertainty)
    assert "tag_seconds" in out.metrics
    teacher = ckpt_io.load_model(out.checkpoint)
    module = load_module(out.checkpoint["pseudoseg"], teacher)
    again = classifier_uncertainty(teacher, module, _data().images)
    assert again == pytest.approx(out.tag_uncertainty, abs=1e-5)


def test_argmax_has_no_classifier():
    out = run_cycle(_cfg("argmax"), _data(), ACQ)
    assert out.tag_uncertainty is None and "pseudoseg" not in out.checkpoint


@pytest.mark.parametrize("tags, match", [([[1]], "4 training images"), ([[1], [3], None, None], r"\[3\]")])
def test_bad_tags_are_refused_before_training(tags, match):
    with pytest.raises(ValueError, match=match):
        run_cycle(_cfg(), _data(tags=tags), ACQ)


def test_uncertainty_streams_the_train_pool(monkeypatch):
    from worker.engine import cycle

    seen = {}
    real = cycle.classifier_uncertainty

    def spy(teacher, module, images, **kw):
        seen.update(images=images, **kw)
        return real(teacher, module, images, **kw)

    monkeypatch.setattr(cycle, "classifier_uncertainty", spy)
    data, cfg = _data(), _cfg()
    cfg.eval_pixels = 2 * 32 * 32
    out = run_cycle(cfg, data, ACQ)
    assert seen["images"] is data.train  # the pool itself, read in batches, not a list of its images
    assert seen["max_pixels"] == cfg.eval_pixels and seen["batch_size"] == cfg.eval_batch_size
    assert len(out.tag_uncertainty) == len(data.train)
