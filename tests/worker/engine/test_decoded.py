"""Decoded copies: crops read from them equal crops from decoding, read only their rows, survive
concurrent first reads, and never serve a file that has changed."""

import multiprocessing
import os

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from worker.engine import decoded
from worker.engine.loader import CropDataset
from worker.engine.pool import ArrayPool, FilePool, Sample
from worker.engine.unsup_gate import HeldOutPool

H, W = 64, 96


def _image_and_label(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (H, W), dtype=np.uint8)
    label[:, :20] = 255  # an unlabeled stripe
    return image, label


def _samples(tmp_path, n: int = 2, cache: bool = True) -> list[Sample]:
    samples = []
    for i in range(n):
        image, label = _image_and_label(i)
        PILImage.fromarray(image).save(tmp_path / f"im{i}.png")
        PILImage.fromarray(label).save(tmp_path / f"lab{i}.png")
        samples.append(Sample(str(tmp_path / f"im{i}.png"), str(tmp_path / f"lab{i}.png"),
                              cache=str(tmp_path / "decoded") if cache else None))
    return samples


def _crops(pool, *, crop=16, scale=(1.0, 1.0), base_size=None, seeds=range(12), index=0):
    dataset = CropDataset(pool, crop=crop, scale=scale, flip=True, base_size=base_size)
    return [dataset[(index, seed)][:3] for seed in seeds]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(x, y, strict=True))


@pytest.mark.parametrize("crop, scale, base_size", [
    (16, (1.0, 1.0), None),  # plain slices
    (16, (0.5, 1.5), None),  # windows rescaled alone
    (16, (1.0, 1.0), 48),  # the image resized to its base size first
    (16, (0.6, 1.4), 48),
    (80, (0.8, 1.2), 48),  # larger than the image: padded
])
def test_crops_from_the_copy_equal_crops_from_decoding(tmp_path, crop, scale, base_size):
    samples = _samples(tmp_path)
    image, label = _image_and_label(0)
    kw = dict(crop=crop, scale=scale, base_size=base_size)
    decoding = _crops(FilePool([Sample(s.image, s.label) for s in samples]), **kw)
    _assert_same(_crops(ArrayPool([image], [label]), **kw), decoding)
    cold = _crops(FilePool(samples), **kw)  # the first crop decodes and writes the copy
    warm = _crops(FilePool(samples), **kw)
    assert len(os.listdir(tmp_path / "decoded")) == 2  # the image's copy and its label's
    _assert_same(cold, decoding)
    _assert_same(warm, decoding)
    if crop > max(H, W):
        assert not decoding[0][2].all() and (decoding[0][1][~decoding[0][2]] == 255).all()


def test_held_back_blocks_are_the_same_from_the_copy(tmp_path):
    samples = _samples(tmp_path)
    image, label = _image_and_label(0)
    kw = dict(crop=32, scale=(0.7, 1.3), base_size=48)
    expected = _crops(HeldOutPool(ArrayPool([image], [label]), 0.5, block=16, seed=1), **kw)
    assert any((c[1] == 255).sum() > (c[1] != 255).sum() for c in expected)
    _assert_same(_crops(HeldOutPool(FilePool(samples), 0.5, block=16, seed=1), **kw), expected)


class CountingPool(FilePool):
    def __init__(self, samples):
        super().__init__(samples)
        self.decoded: list[int] = []

    def image(self, i):
        self.decoded.append(i)
        return super().image(i)


def test_a_warm_crop_reads_only_its_rows_and_decodes_nothing(tmp_path, monkeypatch):
    samples = _samples(tmp_path)
    pool = CountingPool(samples)
    _crops(pool, seeds=[0])
    assert pool.decoded == [0]
    read: list[int] = []
    pread = os.pread

    def counting_pread(fd, n, offset):
        data = pread(fd, n, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(decoded.os, "pread", counting_pread)
    _crops(pool, crop=16, seeds=range(1, 6))
    assert pool.decoded == [0]  # no further decode
    assert read == [16 * W * 3, 16 * W] * 5  # 16 rows of the image, 16 of the label, per crop
    sizes = sorted(os.path.getsize(tmp_path / "decoded" / f) for f in os.listdir(tmp_path / "decoded"))
    assert sizes == [128 + H * W, 128 + H * W * 3]  # .npy: a 128-byte header, then the rows


def _crop_in_process(args):
    samples, seed = args
    return [t.numpy() for t in CropDataset(FilePool(samples), crop=16, scale=(0.5, 1.5), flip=True,
                                           base_size=48)[(0, seed)][:3]]


def test_concurrent_first_reads_all_get_the_same_crops(tmp_path):
    samples = _samples(tmp_path)
    reference = [[t.numpy() for t in c] for c in _crops(FilePool([Sample(s.image, s.label) for s in samples]),
                                                         scale=(0.5, 1.5), base_size=48, seeds=range(8))]
    with multiprocessing.get_context("fork").Pool(4) as procs:
        got = procs.map(_crop_in_process, [(samples, seed) for seed in range(8)])
    for a, b in zip(got, reference, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    names = sorted(os.listdir(tmp_path / "decoded"))
    assert len(names) == 2 and all(n.endswith(".npy") for n in names)  # no temporary file left behind


def test_a_changed_label_file_is_not_served_stale(tmp_path):
    samples = _samples(tmp_path, n=1)
    first = _crops(FilePool(samples), seeds=[3])[0][1]
    new_label = np.full((H, W), 2, np.uint8)
    PILImage.fromarray(new_label).save(samples[0].label)
    st = os.stat(samples[0].label)
    os.utime(samples[0].label, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # even within one clock tick
    second = _crops(FilePool(samples), seeds=[3])[0]
    assert (first != 2).any() and (second[1][second[2]] == 2).all()
    assert len(os.listdir(tmp_path / "decoded")) == 3  # the old label's copy stays until pruned
    assert decoded.prune(str(tmp_path / "decoded"), FilePool(samples).cache_entries())[0] == 1
    assert len(os.listdir(tmp_path / "decoded")) == 2


def test_a_copy_of_another_shape_or_cut_short_is_decoded_again(tmp_path):
    samples = _samples(tmp_path, n=1)
    plain = FilePool([Sample(s.image, s.label) for s in samples])
    folder = tmp_path / "decoded"
    _crops(FilePool(samples), seeds=[1])  # copies at full resolution
    at_base = _crops(FilePool(samples), base_size=48, seeds=[1])  # the base size changed: replaced
    _assert_same(at_base, _crops(plain, base_size=48, seeds=[1]))
    image_copy = folder / decoded.entry_name(samples[0].image, "rgb")
    label_copy = decoded.entry_name(samples[0].label, "label")
    assert sorted(os.listdir(folder)) == sorted([image_copy.name, label_copy])
    assert np.load(image_copy).shape == (32, 48, 3)
    size = os.path.getsize(image_copy)
    for name in os.listdir(folder):
        os.truncate(folder / name, os.path.getsize(folder / name) - 10)  # e.g. a disk that filled up
    _assert_same(_crops(FilePool(samples), base_size=48, seeds=[1]), at_base)
    assert os.path.getsize(image_copy) == size


def test_prune_keeps_what_is_read_and_removes_the_rest(tmp_path):
    samples = _samples(tmp_path, n=2)
    _crops(FilePool(samples), index=0, seeds=[0])
    _crops(FilePool(samples), index=1, seeds=[0])
    folder = str(tmp_path / "decoded")
    stale_temp = os.path.join(folder, ".x.npy.1-abc.tmp")
    fresh_temp = os.path.join(folder, ".y.npy.2-abc.tmp")
    for path in (stale_temp, fresh_temp):
        open(path, "wb").close()
    os.utime(stale_temp, (0, 0))
    removed, _ = decoded.prune(folder, FilePool(samples[:1]).cache_entries())
    assert removed == 3  # image 1's copy and its label's, and the dead writer's file
    assert sorted(os.listdir(folder)) == sorted([".y.npy.2-abc.tmp"] + [
        decoded.entry_name(samples[0].image, "rgb"), decoded.entry_name(samples[0].label, "label")])
    assert decoded.prune(str(tmp_path / "absent"), []) == (0, 0)


def test_an_unwritable_folder_only_costs_decoding(tmp_path):
    (tmp_path / "decoded").write_text("a file where the folder should be")
    samples = _samples(tmp_path, n=1)
    _assert_same(_crops(FilePool(samples), seeds=[2, 5]),
                 _crops(FilePool([Sample(s.image, s.label) for s in samples]), seeds=[2, 5]))
