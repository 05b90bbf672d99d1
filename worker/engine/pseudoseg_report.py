"""After a cycle: what the PseudoSeg module says about the pool.

- `pseudo_label_quality`: on the pixels that were unlabeled during training, the mIoU against ground
  truth of the pseudo-labels the trainer would use: the teacher's argmax (`argmax`) and, when a
  PseudoSeg module is given, the argmax of the fused targets (`pseudoseg`). Images are seen whole and
  unaugmented, with their tags (as in training).
- `classifier_uncertainty`: per image, the mean binary entropy (in bits, so in [0, 1]) of the image
  classifier over the non-background classes: what orders the tagging queue.
- `module_state` / `load_module`: the EMA module in a checkpoint (tensors and numbers only).

Both passes stream their images through `stream.pool_batches` (DESIGN §3): each image is read once, in
batches of consecutive same-size images bounded by `batch_size` and `max_pixels`, so a pool of files
costs O(batch) memory. A plain list is wrapped in an `ArrayPool`; a lazy view is read one index at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from service.masks import IGNORE
from worker.engine.acquisition import forward_at
from worker.engine.classifier_head import image_level_labels
from worker.engine.metrics import ConfusionMeter, iou_list, miou
from worker.engine.pool import ArrayPool, Pool
from worker.engine.pseudoseg import PseudoSegModule, tapped
from worker.engine.resample import base_factor
from worker.engine.stream import pool_batches

MAX_PIXELS = 1 << 23  # as stream.evaluate_pool: bounds a batch of large images


def _tensor(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def pseudo_label_quality(teacher: nn.Module, module: PseudoSegModule | None, images: Sequence[np.ndarray],
                         train_labels: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray],
                         num_classes: int, *, tags: Sequence[Sequence[int] | None] | None = None,
                         gamma: float = 0.5, temperature: float = 0.5, batch_size: int = 32,
                         device: str | torch.device = "cpu", max_pixels: int = MAX_PIXELS,
                         workers: int = 0) -> dict:
    """{"argmax": mIoU, "pseudoseg": mIoU or None, per-class lists, "pixels": count} on the pixels with
    a ground-truth class and no training label."""
    device = torch.device(device)
    teacher.eval()
    meters = {"argmax": ConfusionMeter(num_classes)}
    if module is not None:
        module.eval()
        meters["pseudoseg"] = ConfusionMeter(num_classes)
    pixels = 0
    pool = ArrayPool(images, train_labels)
    for batch in pool_batches(pool, batch_size=batch_size, max_pixels=max_pixels, workers=workers):
        index, ims, labels, _ = zip(*batch, strict=True)
        labels = [np.full(im.shape[:2], IGNORE, np.uint8) if lab is None else lab
                  for im, lab in zip(ims, labels, strict=True)]
        gt = torch.from_numpy(np.stack([ground_truth[i] for i in index])).long()
        unlabeled = torch.from_numpy(np.stack(labels)) == IGNORE
        gt = torch.where(unlabeled, gt, torch.full_like(gt, IGNORE)).to(device)
        pixels += int((gt != IGNORE).sum())
        with tapped(teacher) as tap:
            logits = teacher(_tensor(ims, device)).float()
            meters["argmax"].update(logits.argmax(1), gt)
            if module is not None:
                batch_tags = None if tags is None else [tags[i] for i in index]
                target, known = image_level_labels(labels, num_classes, tags=batch_tags,
                                                   background=module.background)
                fused = module.pseudo_targets(logits, tap.deep, tap.hyper, target, known, gamma=gamma,
                                              temperature=temperature)
                meters["pseudoseg"].update(fused.argmax(1), gt)
    out: dict = {"pixels": pixels, "pseudoseg": None, "pseudoseg_per_class": None}
    for name, meter in meters.items():
        value = miou(meter.cm)
        out[name] = None if np.isnan(value) else float(value)
        out[f"{name}_per_class"] = iou_list(meter.cm)
    return out


@torch.no_grad()
def classifier_uncertainty(teacher: nn.Module, module: PseudoSegModule, images: Pool | Sequence[np.ndarray],
                           *, batch_size: int = 32, device: str | torch.device = "cpu",
                           max_pixels: int = MAX_PIXELS, workers: int = 0, base_size: int | None = None,
                           amp: bool = False) -> list[float]:
    """Per image of `images` (a pool, or a sequence of images), in order: mean over the non-background
    classes of the binary entropy of sigmoid(logit), in bits. Labels are not read. Images run at their
    training resolution (`base_size`, as in scoring): the classifier was trained on features of that scale."""
    device = torch.device(device)
    teacher.eval()
    module.eval()
    k = module.num_classes
    keep = [c for c in range(k) if c != module.background]
    pool = images if isinstance(images, Pool) else ArrayPool(images, ())
    out: list[float] = []
    for batch in pool_batches(pool, batch_size=batch_size, max_pixels=max_pixels, workers=workers,
                              with_labels=False):
        with tapped(teacher) as tap:
            h, w = batch[0][1].shape[:2]
            x = _tensor([item[1] for item in batch], device)
            forward_at(teacher, x, amp, base_factor(h, w, base_size))
            p = torch.sigmoid(module.classifier(tap.deep.float()))[:, keep].clamp(1e-7, 1 - 1e-7)
        entropy = -(p * p.log2() + (1 - p) * (1 - p).log2())
        out.extend(float(v) for v in entropy.mean(1).cpu())
    return out


def module_state(module: PseudoSegModule) -> dict:
    return {"state": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
            "num_classes": module.num_classes,
            "background": -1 if module.background is None else module.background,
            "attention_dim": module.sgc.attention_dim, "max_positions": module.max_positions}


def load_module(saved: dict, model: nn.Module) -> PseudoSegModule:
    """Rebuild the module saved by `module_state` for `model` (the network it was trained with)."""
    background = None if saved["background"] < 0 else int(saved["background"])
    module = PseudoSegModule(model, int(saved["num_classes"]), background=background,
                             attention_dim=int(saved["attention_dim"]),
                             max_positions=int(saved["max_positions"]))
    module.load_state_dict(saved["state"])
    return module.eval()


def check_tags(tags: Sequence[Sequence[int] | None] | None, num_images: int, num_classes: int) -> None:
    """ValueError naming the problem: one entry (a list of class ids, or None) per training image."""
    if tags is None:
        return
    if len(tags) != num_images:
        raise ValueError(f"tags: {len(tags)} entries for {num_images} training images")
    for i, ids in enumerate(tags):
        bad = [c for c in (ids or []) if not 0 <= int(c) < num_classes]
        if bad:
            raise ValueError(f"tags of train image {i}: class ids {bad[:10]} are not in 0..{num_classes - 1}")


def oracle_tags(truth: Sequence[np.ndarray], ignore_index: int = 255) -> list[list[int]]:
    """Image-level tags an oracle annotator would give: the classes of each ground-truth mask."""
    return [sorted(int(c) for c in np.unique(t) if c != ignore_index) for t in truth]


def checkpoint_quality(checkpoint: dict, images: Sequence[np.ndarray], train_labels: Sequence[np.ndarray],
                       truth: Sequence[np.ndarray], num_classes: int, *,
                       tags: Sequence[Sequence[int] | None] | None = None, batch_size: int = 32,
                       device: str | torch.device = "cpu") -> dict | None:
    """`pseudo_label_quality` of a cycle's checkpoint (its teacher, and its PseudoSeg module if it has
    one, fused with the checkpoint's gamma and T); None for a cold-start cycle (no checkpoint)."""
    from worker.engine import checkpoint as ckpt_io

    if not checkpoint:
        return None
    teacher = ckpt_io.load_model(checkpoint).to(device)
    module = load_module(checkpoint["pseudoseg"], teacher).to(device) if "pseudoseg" in checkpoint else None
    config = checkpoint["config"]
    return pseudo_label_quality(teacher, module, images, train_labels, truth, num_classes, tags=tags,
                                gamma=config.get("pseudoseg_gamma", 0.5),
                                temperature=config.get("pseudoseg_temperature", 0.5),
                                batch_size=batch_size, device=device)


def format_quality(quality: dict) -> str:
    fused = "" if quality["pseudoseg"] is None else f"  pseudoseg {100 * quality['pseudoseg']:6.2f}"
    return f"pseudo-label mIoU on unlabeled pixels: argmax {100 * quality['argmax']:6.2f}{fused}"
