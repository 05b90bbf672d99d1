"""PseudoSeg reads its pool as a stream: image-level labels one label at a time, the after-cycle passes in
bounded batches, every image decoded once, with the numbers of the whole-list computation."""

import weakref
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from worker.engine.batching import same_size_runs
from worker.engine.classifier_head import image_level_labels
from worker.engine.cycle import CycleData
from worker.engine.models import build_model
from worker.engine.pool import ArrayPool
from worker.engine.pseudoseg import tapped
from worker.engine.pseudoseg_report import classifier_uncertainty, pseudo_label_quality
from worker.engine.pseudoseg_train import PseudoSegHook, pool_image_labels

K = 3
U = 255
TAGS = [None, [1], None, [], None, [2], None]


class CountingPool(ArrayPool):
    """Hands out a fresh copy on every read, counts the reads, and records the most arrays it handed out
    that were alive at once. Images in `unlabeled` have no label file: decoding their label fails."""

    def __init__(self, images, labels, unlabeled=()) -> None:
        super().__init__(images, labels)
        self.unlabeled = set(unlabeled)
        self.reads: Counter = Counter()
        self.refs: list = []
        self.peak = 0

    def _handed(self, kind: str, i: int, array: np.ndarray) -> np.ndarray:
        self.reads[kind, i] += 1
        copy = array.copy()
        self.refs.append(weakref.ref(copy))
        self.peak = max(self.peak, sum(r() is not None for r in self.refs))
        return copy

    def image(self, i: int) -> np.ndarray:
        return self._handed("image", i, super().image(i))

    def label(self, i: int) -> np.ndarray:
        if i in self.unlabeled:
            raise AssertionError(f"the label of image {i}, which has no label file, was decoded")
        return self._handed("label", i, super().label(i))

    def has_label(self, i: int) -> bool:
        return i not in self.unlabeled

    def read_once(self, kind: str) -> bool:
        wanted = [i for i in range(len(self)) if kind == "image" or i not in self.unlabeled]
        return {i: self.reads[kind, i] for i in wanted} == dict.fromkeys(wanted, 1)


def _arrays():
    """Seven images, two sizes in runs (32x32 x3, 32x48 x2, 32x32 x2); images 2 and 4 have no label."""
    rng = np.random.default_rng(0)
    sizes = [(32, 32)] * 3 + [(32, 48)] * 2 + [(32, 32)] * 2
    images = [rng.integers(0, 255, (*s, 3), dtype=np.uint8) for s in sizes]
    labels = [np.full(s, U, np.uint8) for s in sizes]
    labels[0][:8] = 1
    labels[1][:] = 0
    labels[1][8:16] = 2
    labels[3][4:10, 4:10] = 2
    labels[5][:] = 1  # fully labeled: every class is known
    labels[6][20:] = 0
    truth = [rng.integers(0, K, s).astype(np.uint8) for s in sizes]
    return images, labels, truth


def _pool():
    images, labels, _ = _arrays()
    return CountingPool(images, labels, unlabeled=(2, 4))


def _cfg():
    return SimpleNamespace(pseudo_label="pseudoseg", pseudoseg_gamma=0.5, pseudoseg_temperature=0.5,
                           pseudoseg_cutout=0.1, pseudoseg_background=None, ema_momentum=0.99)


@pytest.mark.parametrize("background", [None, 0])
def test_image_labels_streamed_equal_the_whole_list(background):
    images, labels, _ = _arrays()
    whole = image_level_labels(labels, K, tags=TAGS, background=background)
    pool = _pool()
    target, known = pool_image_labels(pool, K, TAGS, background=background)
    assert torch.equal(target, whole[0]) and torch.equal(known, whole[1])
    assert pool.peak <= 2  # the label being read and the one before it, never the pool
    assert pool.read_once("label") and not any(kind == "image" for kind, _ in pool.reads)


def test_hook_reads_each_label_once_and_none_without_a_file():
    images, labels, _ = _arrays()
    pool = _pool()
    data = CycleData.from_pools(pool, ArrayPool([], []), K, ["background", "a", "b"], tags=TAGS)
    hook = PseudoSegHook(_cfg(), data, build_model("unet_small", K), torch.device("cpu"))
    whole = image_level_labels(labels, K, tags=TAGS, background=0)
    assert torch.equal(hook.target, whole[0]) and torch.equal(hook.known, whole[1])
    assert pool.peak <= 2 and pool.read_once("label")
    with pytest.raises(ValueError, match="tag lists"):
        pool_image_labels(pool, K, TAGS[:3])


def _old_uncertainty(teacher, module, images, batch_size):
    """The whole-list computation the streamed one replaces: same-size runs of `images[i:j]`."""
    keep = [c for c in range(K) if c != module.background]
    out = []
    for i, j in same_size_runs([im.shape for im in images], batch_size):
        x = torch.from_numpy(np.stack(images[i:j])).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.no_grad(), tapped(teacher) as tap:
            teacher(x)
            p = torch.sigmoid(module.classifier(tap.deep.float()))[:, keep].clamp(1e-7, 1 - 1e-7)
        out.extend(float(v) for v in (-(p * p.log2() + (1 - p) * (1 - p).log2())).mean(1))
    return out


def _trained():
    torch.manual_seed(0)
    teacher = build_model("unet_small", K).eval()
    images, labels, _ = _arrays()
    data = CycleData(images, labels, [], [], K, ["background", "a", "b"], tags=TAGS)
    module = PseudoSegHook(_cfg(), data, teacher, torch.device("cpu")).close()
    return teacher, module


def test_classifier_uncertainty_streams_the_pool_with_the_old_numbers():
    teacher, module = _trained()
    images, _, _ = _arrays()
    expected = _old_uncertainty(teacher, module, images, batch_size=2)
    pool = _pool()
    assert classifier_uncertainty(teacher, module, pool, batch_size=2) == expected
    assert pool.read_once("image") and not any(kind == "label" for kind, _ in pool.reads)
    assert pool.peak <= 2 * 2 + 1  # the batch at hand, the one before it, and the next image
    assert classifier_uncertainty(teacher, module, images, batch_size=2) == expected  # a plain list
    lazy = _pool()  # a pool's lazy view is read one index at a time, each image once
    assert classifier_uncertainty(teacher, module, lazy.images, batch_size=2) == expected
    assert lazy.read_once("image")
    single = _pool()  # a pixel budget of one image: batches of one, the same numbers
    one = classifier_uncertainty(teacher, module, single, batch_size=2, max_pixels=32 * 48)
    assert one == pytest.approx(expected, abs=1e-6) and single.peak <= 3


def test_quality_reads_each_image_once_with_the_old_numbers():
    teacher, module = _trained()
    images, labels, truth = _arrays()
    report = pseudo_label_quality(teacher, module, images, labels, truth, K, tags=TAGS, batch_size=2)
    assert report["pixels"] == sum(int((lab == U).sum()) for lab in labels)  # every truth pixel has a class
    pool = CountingPool(images, labels)
    again = pseudo_label_quality(teacher, module, pool.images, pool.labels, truth, K, tags=TAGS, batch_size=2)
    assert again == report
    assert pool.read_once("image") and pool.read_once("label")
    assert pool.peak <= 2 * (2 * 2 + 1)  # each image with its label
    alone = pseudo_label_quality(teacher, module, images, labels, truth, K, tags=TAGS, batch_size=1)
    assert alone["pseudoseg"] == pytest.approx(report["pseudoseg"], abs=1e-6)  # per-image, as in a batch
    # the whole-list numbers: argmax mIoU of the teacher on the unlabeled pixels
    pred = [teacher(torch.from_numpy(im[None]).permute(0, 3, 1, 2).float() / 255).argmax(1)[0].numpy()
            for im in images]
    cm = np.zeros((K, K), np.int64)
    for p, lab, t in zip(pred, labels, truth, strict=True):
        m = lab == U
        np.add.at(cm, (t[m].astype(np.int64), p[m]), 1)
    iou = np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)
    assert report["argmax"] == pytest.approx(float(iou[(cm.sum(0) + cm.sum(1)) > 0].mean()), abs=1e-6)


def test_classifier_uncertainty_runs_images_at_their_training_resolution():
    """With `base_size` below an image's long side the classifier sees the image as training saw it:
    resized (bilinear, antialiased) so that its long side is `base_size`."""
    import torch.nn.functional as F

    teacher, module = _trained()
    images, _, _ = _arrays()
    keep = [c for c in range(K) if c != module.background]
    expected = []
    for image in images:
        x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float().div_(255.0)
        h, w = image.shape[:2]
        f = 16 / max(h, w)
        x = F.interpolate(x, size=(round(h * f), round(w * f)), mode="bilinear", align_corners=False,
                          antialias=True)
        with torch.no_grad(), tapped(teacher) as tap:
            teacher(x)
            p = torch.sigmoid(module.classifier(tap.deep.float()))[:, keep].clamp(1e-7, 1 - 1e-7)
        expected.append(float((-(p * p.log2() + (1 - p) * (1 - p).log2())).mean()))
    got = classifier_uncertainty(teacher, module, images, batch_size=1, base_size=16)
    assert got == pytest.approx(expected, abs=1e-6)
    assert classifier_uncertainty(teacher, module, images, batch_size=2, base_size=48) == \
        classifier_uncertainty(teacher, module, images, batch_size=2)  # no image above 48 px: as before
