import numpy as np
import pytest
import torch

from tests.worker.engine._tiny import cycle_data
from worker.engine.targets import ArgmaxTargets
from worker.engine.trainer import TrainConfig, train
from worker.engine.unsup_gate import EDGES, PRIOR, UnsupGate, bin_of, hold_out, precision_table


def _labels() -> list[np.ndarray]:
    a = np.full((32, 32), 255, np.uint8)
    a[:16, :16] = 1  # one labeled 16 px block ...
    a[16:, 16:] = 2  # ... and another
    b = np.zeros((32, 32), np.uint8)  # a fully labeled image: four blocks
    return [a, b, np.full((32, 32), 255, np.uint8)]


def test_hold_out_splits_labeled_blocks_without_overlap():
    labels = _labels()
    train_labels, held = hold_out(labels, 0.5, block=16, seed=0)
    for lab, t, h in zip(labels, train_labels, held, strict=True):
        assert not ((t != 255) & (h != 255)).any()
        union = np.where(h != 255, h, t)
        assert np.array_equal(union, lab)
    blocks = sum(int((h[y:y + 16, x:x + 16] != 255).all()) for h in held for y in (0, 16) for x in (0, 16))
    assert blocks == 3  # half of the six labeled blocks, whole blocks only
    again = hold_out(labels, 0.5, block=16, seed=0)[1]
    assert all(np.array_equal(x, y) for x, y in zip(held, again, strict=True))


def test_hold_out_keeps_one_block_for_training_and_holds_none_of_one():
    one = [np.full((16, 16), 3, np.uint8)]
    train_labels, held = hold_out(one, 0.9, block=16, seed=0)
    assert (held[0] == 255).all() and np.array_equal(train_labels[0], one[0])
    two = [np.full((16, 32), 3, np.uint8)]
    train_labels, held = hold_out(two, 0.99, block=16, seed=0)
    assert (held[0] != 255).sum() == 256 and (train_labels[0] != 255).sum() == 256


def test_precision_table_counts_right_pseudo_labels_per_class_and_confidence():
    pred = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    conf = torch.tensor([0.999, 0.999, 0.999, 0.6, 0.98, 0.98, 0.98, 0.98])
    truth = torch.tensor([0, 0, 1, 0, 1, 1, 1, 255])  # the last pixel is not held: not counted
    table = precision_table(pred, conf, truth, num_classes=3, prior=1.0)
    top, low, b98 = (int(bin_of(torch.tensor(p))) for p in (0.999, 0.6, 0.98))
    assert table[0, top] == pytest.approx(2 / (3 + 1))
    assert table[0, low] == pytest.approx(1 / (1 + 1))
    assert table[1, b98] == pytest.approx(3 / (3 + 1))
    assert table[2].sum() == 0  # class 2 never predicted: unmeasured bins are closed
    assert table.shape == (3, len(EDGES) + 1)


class _ByChannel(torch.nn.Module):
    """A fixed 'teacher': class c where channel c is brightest, confidence from a 1x1 conv scaled x20."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * x


def test_gate_measures_the_teacher_and_maps_confidence_to_precision():
    images = [torch.zeros(3, 16, 16, dtype=torch.uint8) for _ in range(2)]
    images[0][0] = 255  # the teacher says class 0 everywhere in image 0 (confidence ~1)
    images[1][1] = 255  # and class 1 in image 1
    held = [np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)]  # both truly class 0
    gate = UnsupGate(images, held, 3, start=2, every=3)
    assert [gate.due(s) for s in range(7)] == [False, False, True, False, False, True, False]
    assert gate.table.sum() == 0  # closed before the first measurement
    gate.measure(_ByChannel(), torch.device("cpu"))
    top = len(EDGES)
    assert gate.table[0, top] == pytest.approx(256 / (256 + PRIOR))  # right on all its pixels
    assert gate.table[1, top] == 0  # class 1 was always wrong
    target = torch.tensor([[0, 1, 1]])
    conf = torch.tensor([[0.9999, 0.9999, 0.9999]])
    human = torch.tensor([[False, False, True]])
    out = gate.confidence(target, conf, human)
    assert out[0, 0] == pytest.approx(256 / (256 + PRIOR)) and out[0, 1] == 0 and out[0, 2] == 1


def test_gate_without_held_pixels_never_measures():
    gate = UnsupGate([torch.zeros(3, 8, 8, dtype=torch.uint8)], [np.full((8, 8), 255, np.uint8)], 2,
                     start=0, every=1)
    assert not gate.due(0) and gate.pixels == 0


def _tiny(**kw) -> TrainConfig:
    base = dict(model="unet_small", iterations=6, batch_size=2, unlabeled_batch_size=2, crop_size=32,
                warmup_fraction=0.2,
                device="cpu", gate_holdout=0.3)
    return TrainConfig(**{**base, **kw})


def test_training_records_the_gate_only_when_it_is_on():
    data = cycle_data(fraction=0.5)
    on = train(_tiny(), data).losses
    assert "gate_top" in on and on["gate_pixels"] > 0
    off = train(_tiny(unsup_gate="off"), data).losses
    assert "gate_top" not in off and "eta_unsup" in off
    assert "gate_top" not in train(_tiny(mix="none"), data).losses  # no unsupervised term, nothing held


def test_a_closed_gate_silences_the_unsupervised_term_but_not_human_labels():
    torch.manual_seed(0)
    probs = torch.zeros(2, 3, 8, 8)
    probs[:, 1] = 1.0  # an over-confident teacher: class 1 with p = 1 everywhere
    no_labels = torch.full((2, 8, 8), 255)
    inside = torch.ones(2, 8, 8, dtype=torch.bool)
    m = torch.ones(2, 1, 8, 8)
    logits = torch.randn(2, 3, 8, 8)
    gate = UnsupGate([], [], 3, start=0, every=1)  # nothing measured: every bin closed
    targets = ArgmaxTargets(TrainConfig())
    view = (probs, no_labels, inside)
    ungated, eta = targets.mix_loss(logits, view, view, m, "classmix")
    assert ungated > 0 and eta.min() == 1.0  # self-reported confidence: full weight
    targets.gate = gate
    gated, eta = targets.mix_loss(logits, view, view, m, "classmix")
    assert gated == 0 and eta.max() == 0.0
    labeled = no_labels.clone()
    labeled[:, :4] = 0  # human labels keep confidence 1 and their loss
    human_view = (probs, labeled, inside)
    gated, eta = targets.mix_loss(logits, human_view, human_view, m, "classmix")
    assert gated > 0 and eta.min() == 0.5


@pytest.mark.parametrize("change, message", [({"unsup_gate": "maybe"}, "unknown unsup_gate"),
                                             ({"gate_holdout": 0.0}, "gate_holdout")])
def test_bad_gate_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**change).validate()


def test_held_out_pool_hides_blocks_from_training_and_gives_them_to_the_gate():
    from worker.engine.pool import ArrayPool
    from worker.engine.unsup_gate import HeldOutPool, gate_sample

    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 3, (64, 48)).astype(np.uint8) for _ in range(6)]
    images = [rng.integers(0, 255, (64, 48, 3)).astype(np.uint8) for _ in labels]
    pool = HeldOutPool(ArrayPool(images, labels), 0.5, block=16, seed=3)
    for i, full in enumerate(labels):
        train_part, held = pool.label(i), pool.held(i)
        assert not ((train_part != 255) & (held != 255)).any()  # disjoint
        np.testing.assert_array_equal(np.where(held != 255, held, train_part), full)  # together, all of it
        np.testing.assert_array_equal(HeldOutPool(ArrayPool(images, labels), 0.5, 16, 3).held(i), held)
        assert pool.split(i) == ((train_part != 255).any(), (held != 255).any())
    assert sum(int((pool.held(i) != 255).sum()) for i in range(6)) > 0
    sample, held = gate_sample(pool, range(6), max_images=2, base=32)
    assert len(sample) == 2 and sample[0].shape == (3, 32, 24) and held[0].shape == (32, 24)
    sample, _ = gate_sample(pool, range(6), max_images=6, base=32, max_pixels=32 * 24 + 1)
    assert len(sample) == 2  # the second image passes the pixel budget and is the last


def test_sparse_labels_still_give_the_gate_its_share_of_the_labeled_blocks():
    """With one labeled block in most images (2% of pixels in 8 px cells), the gate holds back about
    `fraction` of all labeled blocks; an image whose only block is held leaves the training draws."""
    from worker.engine.pool import ArrayPool
    from worker.engine.trainer import unsup_gate
    from worker.engine.unsup_gate import HeldOutPool

    rng = np.random.default_rng(0)
    labels = []
    for _ in range(200):
        label = np.full((64, 64), 255, np.uint8)
        y, x = rng.integers(0, 8, 2) * 8
        label[y:y + 8, x:x + 8] = rng.integers(0, 3)
        labels.append(label)
    images = [np.zeros((64, 64, 3), np.uint8) for _ in labels]
    pool = HeldOutPool(ArrayPool(images, labels), 0.1, block=16, seed=0)
    held = sum(pool.split(i)[1] for i in range(200))
    assert 10 <= held <= 30  # about 10% of the 200 labeled blocks (binomial: 20 +- 4.2)

    class Data:
        train, num_classes = ArrayPool(images, labels), 3

    cfg = _tiny(gate_holdout=0.1, iterations=20)
    _, gate, kept = unsup_gate(cfg, Data(), list(range(200)))
    assert len(kept) == 200 - held and gate.pixels == 64 * held
    assert all(HeldOutPool(Data.train, 0.1, block=16, seed=cfg.seed).split(i)[0] for i in kept)


def test_the_gate_measures_on_a_tile_around_the_held_pixels_not_the_whole_image():
    from worker.engine.pool import ArrayPool
    from worker.engine.unsup_gate import HeldOutPool, gate_sample

    rng = np.random.default_rng(1)
    label = np.full((256, 512), 255, np.uint8)
    label[200:232, 400:432] = rng.integers(0, 3, (32, 32))  # one labeled 32 px box near a corner
    image = rng.integers(0, 255, (256, 512, 3)).astype(np.uint8)
    pool = HeldOutPool(ArrayPool([image], [label]), 0.5, block=16, seed=0)
    whole, whole_held = gate_sample(pool, [0], max_images=1, base=None)
    tile, tile_held = gate_sample(pool, [0], max_images=1, base=None, window=64)
    assert whole[0].shape == (3, 256, 512) and tile[0].shape == (3, 64, 64)
    # every held pixel is in the tile, with its own image pixels under it
    assert (tile_held[0] != 255).sum() == (whole_held[0] != 255).sum() > 0
    ys, xs = np.nonzero(whole_held[0] != 255)
    ty, tx = np.nonzero(tile_held[0] != 255)
    top, left = ys.min() - ty.min(), xs.min() - tx.min()
    np.testing.assert_array_equal(tile[0].numpy(), whole[0][:, top:top + 64, left:left + 64].numpy())
    assert 0 <= top <= 256 - 64 and 0 <= left <= 512 - 64


def test_with_tau_a_pseudo_label_below_it_counts_for_nothing_not_for_its_precision():
    image, held = torch.zeros(3, 8, 8, dtype=torch.uint8), np.zeros((8, 8), np.uint8)
    soft = UnsupGate([image], [held], 2, start=0, every=1)
    cut = UnsupGate([image], [held], 2, start=0, every=1, tau=0.97)
    for gate in (soft, cut):
        gate.table = torch.zeros(2, len(EDGES) + 1)
        gate.table[0, -1], gate.table[1, -1] = 0.9, 0.99  # class 0 right 90% of the time, class 1 99%
    target = torch.tensor([[0, 1, 0]])
    confidence = torch.full((1, 3), 0.9999)
    human = torch.tensor([[False, False, True]])
    assert soft.confidence(target, confidence, human)[0].tolist() == pytest.approx([0.9, 0.99, 1.0])
    assert cut.confidence(target, confidence, human)[0].tolist() == pytest.approx([0.0, 0.99, 1.0])
