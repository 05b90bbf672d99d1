import pytest
import torch

from worker.engine.masks import classmix_mask, cow_mask, cutmix_mask


def _labels() -> torch.Tensor:
    lab = torch.zeros(1, 8, 8, dtype=torch.long)
    lab[0, :4, :4] = 1
    lab[0, 4:, 4:] = 2
    lab[0, 0, 7] = 255  # ignored: never chosen, never masked
    return lab


def test_classmix_picks_ceil_half_of_present_classes_and_masks_exactly_them():
    lab = _labels()  # classes {0, 1, 2} present -> ceil(3/2) = 2 chosen
    for seed in range(10):
        m = classmix_mask(lab, generator=torch.Generator().manual_seed(seed))
        assert m.shape == (1, 1, 8, 8) and m.dtype == torch.float32
        chosen = torch.unique(lab[0][m[0, 0] == 1])
        assert len(chosen) == 2 and 255 not in chosen.tolist()
        assert torch.equal(m[0, 0] == 1, torch.isin(lab[0], chosen))


def test_classmix_single_class_pastes_whole_image_and_empty_image_pastes_nothing():
    lab = torch.stack([torch.full((4, 4), 3), torch.full((4, 4), 255)])
    m = classmix_mask(lab)
    assert m[0].sum() == 16 and m[1].sum() == 0


def test_classmix_choice_is_uniform_without_weights_and_follows_weights_with_them():
    lab = _labels()
    counts = torch.zeros(3)
    weighted = torch.zeros(3)
    w = torch.tensor([1.0, 1.0, 1e6])  # class 2 is (almost) always drawn first
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        m = classmix_mask(lab, generator=g)[0, 0]
        counts += torch.tensor([bool((m[lab[0] == c] == 1).all()) for c in range(3)]).float()
        mw = classmix_mask(lab, class_weights=w, generator=g)[0, 0]
        weighted += torch.tensor([bool((mw[lab[0] == c] == 1).all()) for c in range(3)]).float()
    assert torch.all((counts / 300 - 2 / 3).abs() < 0.1)  # each class in 2 of 3 choices
    assert weighted[2] == 300


def test_classmix_is_deterministic_for_a_generator_seed():
    lab = torch.randint(0, 6, (4, 16, 16))
    a = classmix_mask(lab, generator=torch.Generator().manual_seed(3))
    b = classmix_mask(lab, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("proportion", [0.25, 0.5, 0.8])
def test_cutmix_is_one_rectangle_of_the_requested_area(proportion):
    m = cutmix_mask(16, 32, 32, proportion=proportion, generator=torch.Generator().manual_seed(0))
    assert m.shape == (16, 1, 32, 32)
    heights = set()
    for mask in m[:, 0]:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert mask.sum() == h * w  # filled bounding box: one rectangle
        assert abs(mask.mean().item() - proportion) < 0.06  # up to rounding to whole pixels
        heights.add(int(h))
    assert len(heights) > 3  # random aspect


def test_cow_mask_share_of_ones_matches_proportion():
    g = torch.Generator().manual_seed(0)
    for p in (0.3, 0.5, 0.7):
        m = cow_mask(32, 32, 32, proportion=p, sigma=(2.0, 4.0), generator=g)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert abs(m.mean().item() - p) < 0.05


def test_cow_mask_per_image_proportion_and_edges():
    props = torch.tensor([0.0, 1.0, 0.5])
    m = cow_mask(3, 16, 16, proportion=props, sigma=(2.0, 2.0))
    assert m[0].sum() == 0 and m[1].sum() == 256
    with pytest.raises(ValueError):
        cow_mask(1, 8, 8, proportion=1.5)
    with pytest.raises(ValueError):
        cow_mask(1, 8, 8, sigma=(0.0, 1.0))
