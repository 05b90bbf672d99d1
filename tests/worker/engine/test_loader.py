"""The training data path: lazy samples, crop-then-scale geometry, padding, determinism across workers."""

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from worker.engine.loader import FILL_RGB, CropDataset, StepDraws, base_factor, crop_loader, crop_sample
from worker.engine.pool import ArrayPool, FilePool, Sample, check_pool


def _pattern(h: int = 32, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A label whose value encodes its position, and an image whose red channel is that label."""
    yy, xx = np.mgrid[:h, :w]
    label = ((yy * 7 + xx) % 250).astype(np.uint8)
    image = np.stack([label, 255 - label, np.zeros_like(label)], -1)
    return image, label


class CountingPool(FilePool):
    def __init__(self, samples):
        super().__init__(samples)
        self.reads: list[int] = []

    def image(self, i):
        self.reads.append(i)
        return super().image(i)


def _files(tmp_path, n=3, size=32):
    samples = []
    for i in range(n):
        image, label = _pattern(size, size)
        PILImage.fromarray(image).save(tmp_path / f"im{i}.png")
        PILImage.fromarray(label % 3).save(tmp_path / f"lab{i}.png")
        samples.append(Sample(str(tmp_path / f"im{i}.png"), str(tmp_path / f"lab{i}.png")))
    return samples


def test_the_dataset_decodes_only_the_image_it_is_asked_for(tmp_path):
    pool = CountingPool(_files(tmp_path))
    dataset = CropDataset(pool, crop=16, scale=(1.0, 1.0), flip=False, base_size=None)
    assert pool.reads == [] and len(dataset) == 3
    x, y, inside, index = dataset[(2, 123)]
    assert pool.reads == [2] and index == 2
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y.shape == (16, 16) and inside.all()


def test_a_missing_or_unreadable_sample_is_named_before_anything_runs(tmp_path):
    samples = _files(tmp_path)
    (tmp_path / "im1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="im1.png: cannot be read"):
        check_pool(FilePool(samples), 3, "train")
    samples[1] = Sample(str(tmp_path / "gone.png"), None, name="street-7")
    with pytest.raises(ValueError, match="street-7: cannot be read"):
        check_pool(FilePool(samples), 3, "train")


def test_without_scaling_a_crop_is_a_slice_of_image_and_label():
    image, label = _pattern()
    img, lab, inside = crop_sample(image, label, crop=8, factor=1.0, u=np.array([0.5, 0.25, 0.9]), flip=False)
    top, left = int(0.5 * 25), int(0.25 * 25)
    assert (lab == label[top:top + 8, left:left + 8]).all()
    assert (img == image[top:top + 8, left:left + 8]).all()
    assert inside.all()


def test_the_window_is_cut_first_then_scaled():
    image, label = _pattern()
    # x2: the 8x8 crop shows a 4x4 window of the original, each pixel twice (nearest for labels).
    u = np.array([0.5, 0.25, 0.9])
    img, lab, _ = crop_sample(image, label, crop=8, factor=2.0, u=u, flip=False)
    top, left = int(0.5 * (64 - 8 + 1)), int(0.25 * (64 - 8 + 1))
    rows, cols = (top + np.arange(8)) // 2, (left + np.arange(8)) // 2
    assert (lab == label[np.ix_(rows, cols)]).all()
    # The image is resampled from the same window: away from edges its red channel follows the label.
    assert np.abs(img[..., 0].astype(int) - lab.astype(int)).max() <= 8
    # x0.5: a 16x16 scaled image, so the 8x8 crop covers a 16x16 window at every other pixel.
    _, small, _ = crop_sample(image, label, crop=8, factor=0.5, u=np.array([0.0, 0.0, 0.9]), flip=False)
    assert (small == label[1::2, 1::2][:8, :8]).all()


def test_an_image_smaller_than_the_crop_is_padded_with_ignore():
    image, label = _pattern(20, 12)
    img, lab, inside = crop_sample(image, label, crop=32, factor=1.0, u=np.array([0.7, 0.7, 0.9]), flip=False)
    assert (lab[:20, :12] == label).all() and (lab[20:] == 255).all() and (lab[:, 12:] == 255).all()
    assert inside[:20, :12].all() and not inside[20:].any() and not inside[:, 12:].any()
    assert (img[25, 25] == FILL_RGB).all()
    flipped = crop_sample(image, label, crop=32, factor=1.0, u=np.array([0.7, 0.7, 0.1]), flip=True)[1]
    assert (flipped == lab[:, ::-1]).all()


def test_base_size_only_shrinks_long_sides():
    assert base_factor(1024, 2048, 1024) == 0.5 and base_factor(100, 200, 1024) == 1.0
    assert base_factor(1024, 2048, None) == 1.0


def _batches(workers: int) -> list:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (24 + 4 * i, 30, 3), dtype=np.uint8) for i in range(6)]
    labels = [rng.integers(0, 3, im.shape[:2], dtype=np.uint8) for im in images]
    draws = StepDraws([0, 2, 4], 6, batch_size=2, unlabeled_batch_size=2, iterations=5, warmup=2, mixing=True,
                      seed=7)
    loader = crop_loader(ArrayPool(images, labels), draws, crop=16, scale=(0.5, 1.5), flip=True,
                         base_size=None, workers=workers, device=torch.device("cpu"))
    return list(loader)


def test_the_same_seed_gives_the_same_crops_whatever_the_worker_count():
    alone, pooled = _batches(0), _batches(2)
    assert len(alone) == 5 and [len(b[3]) for b in alone] == [2, 2, 4, 4, 4]  # pool crops after warm-up
    assert all(set(b[3][:2]) <= {0, 2, 4} for b in alone)  # labeled draws from labeled images only
    for a, b in zip(alone, pooled, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(a[:3], b[:3], strict=True)) and a[3] == b[3]


@pytest.mark.parametrize("factor", [0.37, 0.5, 0.8, 1.3, 2.0, 3.1])
def test_a_crop_reads_all_the_rows_its_filter_reaches(factor):
    """Resampling the band alone gives the crop of the whole image, within 2/255 (PIL takes the box in
    float32 and rounds between its two passes); the label is the exact nearest neighbour."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    label = rng.integers(0, 250, (70, 90), dtype=np.uint8)
    for seed in range(20):
        u = np.random.default_rng(seed).random(3)
        img, lab, inside = crop_sample(image, label, crop=24, factor=factor, u=u, flip=False)
        sh, sw = max(1, round(70 * factor)), max(1, round(90 * factor))
        top, left = int(u[0] * (max(sh, 24) - 23)), int(u[1] * (max(sw, 24) - 23))
        ih, iw = min(24, sh - top), min(24, sw - left)
        box = (left * 90 / sw, top * 70 / sh, (left + iw) * 90 / sw, (top + ih) * 70 / sh)
        whole = np.asarray(PILImage.fromarray(image).resize((iw, ih), PILImage.BILINEAR, box=box))
        assert np.abs(img[:ih, :iw].astype(int) - whole).max() <= 2
        rows = np.floor((top + np.arange(ih) + 0.5) * 70 / sh).astype(int)
        cols = np.floor((left + np.arange(iw) + 0.5) * 90 / sw).astype(int)
        assert (lab[:ih, :iw] == label[np.ix_(rows, cols)]).all() and inside[:ih, :iw].all()
