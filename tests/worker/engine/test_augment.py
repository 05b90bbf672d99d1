import numpy as np
import torch

from worker.engine import augment


def _coded(size: int = 32):
    """An image whose red channel encodes its label (label * 20), in blocks so resizing keeps most."""
    lab = torch.zeros(size, size, dtype=torch.uint8)
    lab[4:20, 6:26] = 3
    lab[22:30, 2:12] = 7
    img = torch.stack([lab * 20, torch.zeros_like(lab), torch.zeros_like(lab)])
    return img, lab


def test_weak_augment_without_scaling_moves_image_and_label_together():
    img, lab = _coded()
    for seed in range(8):
        x, y, inside = augment.weak_augment(img, lab, crop=24, scale=(1.0, 1.0),
                                            generator=torch.Generator().manual_seed(seed))
        assert x.shape == (3, 24, 24) and y.shape == (24, 24) and inside.all()
        assert torch.equal((x[0] * 255 / 20).round().long(), y)


def test_weak_augment_with_scaling_stays_aligned_and_pads_with_ignore():
    img, lab = _coded()
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        x, y, inside = augment.weak_augment(img, lab, crop=32, scale=(0.6, 1.4), generator=g)
        value = x[0] * 255 / 20
        pure = inside & ((value - value.round()).abs() < 1e-3)  # not blended across an object border
        assert pure.sum() > 0.6 * inside.sum()
        assert torch.equal(value.round().long()[pure], y[pure])  # labels are centre-aligned with pixels
        assert torch.all(y[~inside] == 255)


def test_weak_augment_flips_both():
    img, lab = _coded()
    flips = 0
    for seed in range(20):
        x, y, _ = augment.weak_augment(img, lab, crop=32, scale=(1.0, 1.0),
                                       generator=torch.Generator().manual_seed(seed))
        flips += int(torch.equal(y, lab.long().flip(-1)))
        assert torch.equal(y, lab.long()) or torch.equal(y, lab.long().flip(-1))
    assert 3 < flips < 17


def test_weak_batch_stacks_and_is_deterministic():
    img, lab = _coded()
    images, labels = [img, img], [lab, lab]
    a = augment.weak_batch(images, labels, [0, 1, 1], crop=16, generator=torch.Generator().manual_seed(1))
    b = augment.weak_batch(images, labels, [0, 1, 1], crop=16, generator=torch.Generator().manual_seed(1))
    assert a[0].shape == (3, 3, 16, 16) and a[1].dtype == torch.long
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_strong_augment_is_photometric_bounded_and_identity_when_off():
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(augment.strong_augment(x, jitter=0.0, blur_prob=0.0), x)
    y = augment.strong_augment(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.allclose(x, y)


def test_blur_smooths_and_keeps_constant_images():
    const = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(augment.gaussian_blur(const, prob=1.0), const, atol=1e-6)
    noise = torch.rand(2, 3, 16, 16)
    assert augment.gaussian_blur(noise, prob=1.0, sigma=(1.0, 1.0)).std() < noise.std()


def test_cutout_erases_one_rectangle_with_the_fill_colour():
    x = torch.rand(8, 3, 16, 16)
    y, kept = augment.cutout(x, proportion=0.25, generator=torch.Generator().manual_seed(0))
    erased = kept[:, 0] == 0
    assert abs(erased.float().mean().item() - 0.25) < 0.05
    assert torch.allclose(y.permute(0, 2, 3, 1)[erased], augment.FILL.view(3).expand(int(erased.sum()), 3))
    assert torch.equal(y.permute(0, 2, 3, 1)[~erased], x.permute(0, 2, 3, 1)[~erased])


def test_image_tensor_layout():
    im = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = augment.image_tensor(im)
    assert t.shape == (3, 2, 3) and t[1, 0, 2] == im[0, 2, 1]
