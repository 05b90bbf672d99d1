import json

import numpy as np
import pytest

from tests.worker.engine._tiny import cycle_data
from worker.engine.cycle import AcquisitionConfig, Cancelled, CycleData, TrainConfig, evaluate, run_cycle


def tiny() -> TrainConfig:
    return TrainConfig(model="unet_small", iterations=3, batch_size=2, unlabeled_batch_size=2, crop_size=32,
                       device="cpu")


def test_a_cycle_trains_scores_and_evaluates():
    data = cycle_data()
    phases = []
    out = run_cycle(tiny(), data, AcquisitionConfig(region_size=8, budget_regions=5),
                    progress=lambda phase, step, total, losses: phases.append(phase))
    assert phases[0] == "train" and {"score", "evaluate"} <= set(phases)
    assert len(out.regions) == 5 and out.regions == sorted(out.regions, key=lambda r: -r.score)
    assert all(r.w == 8 and r.h == 8 and r.superpixel_id == -1 for r in out.regions)
    # Each selected region carries the teacher's prediction inside it (a pre-label), nothing more.
    assert all(r.prelabel.shape == (8, 8) and r.prelabel.dtype == np.uint8 and r.prelabel.max() < 3
               for r in out.regions)
    m = out.metrics
    assert 0.0 <= m["miou"] <= 1.0 and len(m["per_class_iou"]) == 3 and m["iterations"] == 3
    labeled = sum(int((lab != 255).sum()) for lab in data.labels)
    assert m["labeled_fraction"] == pytest.approx(labeled / (6 * 32 * 32)) and not m["cold_start"]
    json.dumps(m)  # JSON-able
    assert set(out.checkpoint) >= {"student", "teacher", "config", "class_names"}
    assert out.checkpoint["class_names"] == data.class_names


def test_cold_start_selects_random_regions_without_training():
    data = cycle_data(fraction=0.0)
    calls = []
    acq = AcquisitionConfig(region_size=16, budget_regions=4, seed=1)
    out = run_cycle(tiny(), data, acq, progress=lambda *a: calls.append(a[0]))
    assert "train" not in calls and out.metrics["cold_start"] and out.checkpoint == {}
    assert len(out.regions) == 4 and all(r.prelabel is None for r in out.regions)
    again = run_cycle(tiny(), data, acq)
    assert [(r.image_index, r.x, r.y) for r in again.regions] == \
        [(r.image_index, r.x, r.y) for r in out.regions]


@pytest.mark.parametrize("acq, message", [
    (AcquisitionConfig(metric="bald", budget_regions=1), "unknown acquisition metric"),
    (AcquisitionConfig(budget_fraction=0.0), "budget_fraction"),
    (AcquisitionConfig(budget_fraction=1.5), "budget_fraction"),
    (AcquisitionConfig(), "no acquisition budget"),
    (AcquisitionConfig(region_kind="hexagon", budget_regions=1), "region kind"),
])
def test_bad_acquisition_is_refused_before_training(acq, message):
    calls = []
    with pytest.raises(ValueError, match=message):
        run_cycle(tiny(), cycle_data(), acq, progress=lambda *a: calls.append(a))
    assert calls == []


def test_bad_masks_and_configs_are_refused_before_training():
    data = cycle_data()
    data.labels[2][0, 0] = 7  # 3 classes: 7 is neither a class nor 255
    calls = []
    with pytest.raises(ValueError, match=r"train mask 2: values \[7\]"):
        run_cycle(tiny(), data, AcquisitionConfig(budget_regions=1), progress=lambda *a: calls.append(a))
    good = cycle_data()
    bad_size = CycleData(good.images, good.labels[:-1], [], [], 3, good.class_names)
    with pytest.raises(ValueError, match="6 images but 5 label masks"):
        run_cycle(tiny(), bad_size, AcquisitionConfig(budget_regions=1))
    with pytest.raises(ValueError, match="unknown mix"):
        run_cycle(TrainConfig(mix="cutout"), good, AcquisitionConfig(budget_regions=1))
    with pytest.raises(ValueError, match="unknown model"):
        run_cycle(TrainConfig(model="unet_huge"), good, AcquisitionConfig(budget_regions=1))
    assert calls == []


def test_should_stop_cancels_the_cycle():
    with pytest.raises(Cancelled):
        run_cycle(tiny(), cycle_data(), AcquisitionConfig(budget_regions=1), should_stop=lambda: True)


def test_evaluate_counts_every_val_pixel_with_mixed_sizes():
    data = cycle_data()
    out = run_cycle(tiny(), data, AcquisitionConfig(budget_regions=1))
    from worker.engine.checkpoint import load_model

    model = load_model(out.checkpoint)
    images = [data.val_images[0], data.val_images[1][:20, :24]]
    labels = [data.val_labels[0], data.val_labels[1][:20, :24]]
    cm = evaluate(model, images, labels, 3)
    assert cm.sum() == 32 * 32 + 20 * 24
