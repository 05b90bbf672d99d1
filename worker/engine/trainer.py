"""Semi-supervised training of one S4AL cycle: `train(config, data)`.

Each step: a weakly augmented batch of labeled crops (supervised CE, 255 ignored) and, after the
supervised-only warm-up, a batch of crops from the whole pool whose teacher predictions (human labels
override, confidence 1) are mixed in pairs (ClassMix by default); the student sees the mixed images
with colour jitter and blur and is trained toward the mixed teacher targets, weighted per pixel by
the teacher's confidence and per image by eta (see losses.py). `balanced_classmix` adds a second
term on pairs from the replay buffer with tail classes pasted more often. The teacher is an EMA of
the student and is the model returned for scoring.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from worker.engine import augment, pseudoseg_train
from worker.engine.errors import Cancelled
from worker.engine.losses import (
    CONSISTENCY,
    labels_to_probs,
    supervised_ce,
    teacher_targets,
    unsupervised_loss,
)
from worker.engine.masks import classmix_mask, cow_mask, cutmix_mask
from worker.engine.models import build_model, check_model_name
from worker.engine.replay import ReplayBuffer, class_weights
from worker.engine.teacher import EMATeacher

MIX_MODES = ("classmix", "balanced_classmix", "cutmix", "cowmix", "cowout", "none")
INITS = ("pretrained", "previous")
DEVICES = ("auto", "cpu", "cuda")
# Per-model defaults. The published S4AL values (lr 1e-2, random scale) are for an ImageNet-pretrained
# DeepLabv3+ on street scenes. unet_small starts from random weights on small images; measured with full
# labels on fashion-scenes 64x64 (val mIoU, teacher): lr 1e-1 beat 5e-2 and 1e-2 at 1000-1500 steps
# (0.251 / 0.242 / 0.09), and random rescaling (0.75-1.25) left training unconverged where the data
# already varies object scale. Without it, full labels, seed 0 (deterministic on CPU): 1500 / 3000 /
# 6000 / 12000 steps -> 0.294 / 0.328 / 0.363 / 0.364 val mIoU.
DEFAULT_LR = {"unet_small": 1e-1, "deeplabv3plus_mobilenetv2": 1e-2}
DEFAULT_SCALE = {"unet_small": (1.0, 1.0), "deeplabv3plus_mobilenetv2": (0.5, 1.5)}


class TrainData(Protocol):
    images: list[np.ndarray]  # HxWx3 uint8
    labels: list[np.ndarray]  # HxW uint8, 255 = unlabeled
    num_classes: int


@dataclass
class TrainConfig:
    model: str = "unet_small"
    weights: str | None = None  # ImageNet MobileNetV2 file for deeplab; None = the packaged file
    init: str = "pretrained"  # pretrained: fresh model each cycle (S4AL) | previous: warm start
    iterations: int = 1000
    batch_size: int = 8  # labeled crops per step
    unlabeled_batch_size: int = 8  # pool crops per step, mixed in pairs (i, i-1)
    replay_batch_size: int = 4  # mixed pairs per step from the replay buffer (balanced_classmix)
    replay_size: int = 256  # crops kept in the replay buffer
    crop_size: int = 64
    scale_range: tuple[float, float] | None = None  # random rescaling; None = DEFAULT_SCALE[model]
    flip: bool = True
    lr: float | None = None  # None = DEFAULT_LR[model]
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    warmup_fraction: float = 0.1  # supervised-only share of the iterations
    ema_momentum: float = 0.99
    tau: float = 0.97
    mix: str = "classmix"
    consistency: str = "ce"  # ce (S4AL, ClassMix) | mse (French et al.)
    cutout: bool = False  # CutOut on the student's view as well
    color_jitter: float = 0.4
    blur_prob: float = 0.5
    cow_sigma: tuple[float, float] = (4.0, 16.0)
    # --- PseudoSeg (worker/engine/pseudoseg_train.py) ---
    pseudo_label: str = "argmax"  # argmax: teacher argmax (S4AL, ClassMix) | pseudoseg: fused soft targets
    pseudoseg_gamma: float = 0.5  # weight of the decoder's softmax in the fusion (1 - gamma: the SGC map)
    pseudoseg_temperature: float = 0.5  # sharpening temperature T
    pseudoseg_cutout: float = 0.04  # CutOut area on the student's view (PseudoSeg: 100x100 px of 513x513)
    pseudoseg_background: int | None = None  # None: the class named "background", if there is one
    # --- end PseudoSeg ---
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    eval_batch_size: int = 32
    extra: dict = field(default_factory=dict)  # free-form notes carried into checkpoints

    def __post_init__(self) -> None:
        if self.scale_range is not None:
            self.scale_range = tuple(self.scale_range)  # type: ignore[assignment]
        self.cow_sigma = tuple(self.cow_sigma)  # type: ignore[assignment]

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR.get(self.model, 1e-2)

    @property
    def scales(self) -> tuple[float, float]:
        return self.scale_range if self.scale_range is not None else DEFAULT_SCALE.get(self.model, (1.0, 1.0))

    def validate(self) -> None:
        check_model_name(self.model)
        choices = {"mix": (self.mix, MIX_MODES), "init": (self.init, INITS), "device": (self.device, DEVICES),
                   "consistency": (self.consistency, CONSISTENCY)}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")
        positive = {"iterations": self.iterations, "batch_size": self.batch_size, "crop_size": self.crop_size,
                    "eval_batch_size": self.eval_batch_size, "replay_batch_size": self.replay_batch_size}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.unlabeled_batch_size < 2 and self.mix != "none":
            raise ValueError("unlabeled_batch_size must be >= 2 to mix pairs")
        if self.replay_size < 2:
            raise ValueError(f"replay_size must be >= 2, got {self.replay_size}")
        if not 0.0 < self.tau < 1.0 or not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError("tau must be in (0, 1) and ema_momentum in [0, 1)")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if len(self.scales) != 2 or not 0.0 < self.scales[0] <= self.scales[1]:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {self.scale_range}")
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.learning_rate <= 0:
            raise ValueError(f"lr must be > 0, got {self.learning_rate}")
        pseudoseg_train.check_config(self)  # PseudoSeg's own settings

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scale_range"] = None if self.scale_range is None else list(self.scale_range)
        d["cow_sigma"] = list(self.cow_sigma)
        return d


@dataclass
class TrainResult:
    student: nn.Module
    teacher: nn.Module  # the EMA model: use it for scoring and prediction
    iterations: int
    seconds: float
    losses: dict[str, float]  # means over the last 10% of steps
    device: str
    pseudoseg: nn.Module | None = None  # PseudoSeg's EMA classifier + SGC (pseudo_label "pseudoseg")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


def _mask(mode: str, target_a: torch.Tensor, cfg: TrainConfig, weights: torch.Tensor | None,
          gen: torch.Generator) -> torch.Tensor:
    b, h, w = target_a.shape
    if mode in ("classmix", "balanced_classmix"):
        return classmix_mask(target_a, class_weights=weights, generator=gen)
    if mode == "cutmix":
        return cutmix_mask(b, h, w, proportion=0.5, generator=gen)
    # CowOut keeps a share p ~ U[0.25, 1] of each image (French et al.); CowMix mixes half and half.
    p = 0.5 if mode == "cowmix" else 0.25 + 0.75 * torch.rand(b, generator=gen)
    return cow_mask(b, h, w, proportion=p, sigma=cfg.cow_sigma, generator=gen)


def _mix_loss(student_logits: torch.Tensor, view_a: tuple, view_b: tuple, m: torch.Tensor,
              mode: str, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of the student on mixed images against mixed teacher targets; view = (probs, labels, inside)."""
    if cfg.pseudo_label == "pseudoseg":  # PseudoSeg: soft targets, views carry a confidence
        return pseudoseg_train.mix_loss(student_logits, view_a, view_b, m, mode, cfg.tau)
    (pa, ya, ia), (pb, yb, ib) = view_a, view_b
    ta, ca = teacher_targets(pa, ya)
    mm = m[:, 0] > 0.5
    if mode == "cowout":  # the erased part carries no target: only kept pixels count
        target, conf, valid = ta, ca, mm & ia
        probs = labels_to_probs(pa, ya) if cfg.consistency == "mse" else None
    else:
        tb, cb = teacher_targets(pb, yb)
        target, conf, valid = torch.where(mm, ta, tb), torch.where(mm, ca, cb), torch.where(mm, ia, ib)
        probs = None
        if cfg.consistency == "mse":
            probs = torch.where(mm[:, None], labels_to_probs(pa, ya), labels_to_probs(pb, yb))
    return unsupervised_loss(student_logits, target, conf, tau=cfg.tau, valid=valid,
                             kind=cfg.consistency, target_probs=probs)


def _mixed_input(m: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor, mode: str, cfg: TrainConfig,
                 gen: torch.Generator) -> torch.Tensor:
    other = augment.FILL.to(xa.device) if mode == "cowout" else xb
    x = m * xa + (1 - m) * other
    x = augment.strong_augment(x, jitter=cfg.color_jitter, blur_prob=cfg.blur_prob, generator=gen)
    if cfg.cutout:
        x, _ = augment.cutout(x, generator=gen)
    return x


def train(config: TrainConfig, data: TrainData, progress: Callable[[str, int, int, dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, init_state: dict | None = None) -> TrainResult:
    """Train a student and its EMA teacher on `data` (see module doc). Deterministic for a seed on CPU.

    `init_state`: a checkpoint dict whose `student` weights start the model when `config.init` is
    `previous` (ignored for `pretrained`, and when None the model starts fresh as well).
    """
    config.validate()
    device = resolve_device(config.device)
    use_amp = config.amp and device.type == "cuda"
    k = data.num_classes
    images = [augment.image_tensor(im) for im in data.images]
    labels = [augment.label_tensor(lab) for lab in data.labels]
    labeled = [i for i, lab in enumerate(labels) if bool((lab != 255).any())]
    if not labeled:
        raise ValueError("no labeled pixel in the training data")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        pretrained = (config.weights or True) if config.model == "deeplabv3plus_mobilenetv2" else None
        student = build_model(config.model, k, pretrained=pretrained)
        if config.init == "previous" and init_state is not None:
            student.load_state_dict(init_state["student"])
        student = student.to(device).train()
        teacher = EMATeacher(student, config.ema_momentum)
        # PseudoSeg: built after the teacher, so that its feature hooks are not copied into it.
        ps = None
        if config.pseudo_label == "pseudoseg":
            ps = pseudoseg_train.PseudoSegHook(config, data, student, device)
        weights = class_weights(data.labels, k).to(device) if config.mix == "balanced_classmix" else None
        replay = ReplayBuffer(config.replay_size, k) if config.mix == "balanced_classmix" else None
        params = list(student.parameters()) + (ps.parameters() if ps is not None else [])
        optimizer = torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                                    nesterov=config.nesterov, weight_decay=config.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        warmup = int(config.warmup_fraction * config.iterations)
        weak = dict(crop=config.crop_size, scale=config.scales, flip=config.flip, generator=gen)
        history: list[dict[str, float]] = []

        def view(x: torch.Tensor, y: torch.Tensor, inside: torch.Tensor, pool: list[int] | None) -> tuple:
            """The teacher's view of crops: (probs, human labels, inside)."""
            if ps is not None:  # PseudoSeg: fused targets + the teacher's own confidence
                return ps.teacher_view(teacher.module, x, y, inside, pool, use_amp)
            with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=use_amp):
                return teacher.module(x).float().softmax(1), y, inside

        def mix(view_a: tuple, view_b: tuple, xa: torch.Tensor, xb: torch.Tensor) -> None:
            """Mask pairs (A, B), queue the student's input and what its loss needs."""
            m = _mask(config.mix, teacher_targets(view_a[0], view_a[1])[0], config, weights, gen).to(device)
            x = _mixed_input(m, xa, xb, config.mix, config, gen)
            if ps is not None:  # PseudoSeg's CutOut, its square left out of the loss
                x, view_a, view_b = ps.cutout(x, view_a, view_b, gen)
            inputs.append(x)
            mixes.append((view_a, view_b, m))

        for step in range(config.iterations):
            if should_stop is not None and should_stop():
                raise Cancelled(f"cancelled at step {step}/{config.iterations}")
            lr = config.learning_rate * (1.0 - step / config.iterations) ** config.poly_power
            for group in optimizer.param_groups:
                group["lr"] = lr
            pick = [labeled[int(i)] for i in torch.randint(len(labeled), (config.batch_size,), generator=gen)]
            x_l, y_l, _ = (t.to(device) for t in augment.weak_batch(images, labels, pick, **weak))
            inputs, mixes = [x_l], []
            if config.mix != "none" and step >= warmup:
                pool = torch.randint(len(images), (config.unlabeled_batch_size,), generator=gen).tolist()
                xa, ya, ia = (t.to(device) for t in augment.weak_batch(images, labels, pool, **weak))
                view_a = view(xa, ya, ia, pool)
                # In-batch pairs: image i with image i-1.
                mix(view_a, tuple(t.roll(1, 0) for t in view_a), xa, xa.roll(1, 0))
                if replay is not None:  # balanced ClassMix: pairs from the replay buffer, tail-biased
                    replay.push(xa, ya, ia, teacher_targets(view_a[0], ya)[0])
                    crops_a, crops_b = replay.sample(config.replay_batch_size, weights, gen)
                    (ra, rya, ria), (rb, ryb, rib) = ((t.to(device) for t in c) for c in (crops_a, crops_b))
                    # A replayed crop's image (and so its tags) is unknown: pool None.
                    mix(view(ra, rya, ria, None), view(rb, ryb, rib, None), ra, rb)
            with torch.autocast(device.type, torch.float16, enabled=use_amp):
                logits = student(torch.cat(inputs)).float()  # one pass: labeled + mixed (+ replay)
            parts = logits.split([len(x) for x in inputs])
            loss_sup = supervised_ce(parts[0], y_l)
            loss, record = loss_sup, {"sup": loss_sup.item()}
            if ps is not None:  # PseudoSeg: classifier BCE and SGC cross-entropy on the labeled crops
                for name, term in ps.student_losses(len(x_l), y_l, pick).items():
                    loss = loss + term
                    record[name] = term.item()
            for name, part, (va, vb, m) in zip(("unsup", "replay"), parts[1:], mixes, strict=False):
                term, eta = _mix_loss(part, va, vb, m, config.mix, config)
                loss = loss + term
                record[name], record[f"eta_{name}"] = term.item(), eta.mean().item()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            teacher.update(step)
            if ps is not None:
                ps.update(step)
            record["loss"], record["lr"] = loss.item(), lr
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"loss is {record['loss']} at step {step}")
            history.append(record)
            if progress is not None:
                progress("train", step + 1, config.iterations, record)
    tail = history[-max(1, len(history) // 10):]
    keys = sorted({key for r in tail for key in r})
    means = {key: float(np.mean([r[key] for r in tail if key in r])) for key in keys}
    return TrainResult(student.eval(), teacher.module.eval(), config.iterations,
                       time.perf_counter() - start, means, str(device),
                       pseudoseg=ps.close() if ps is not None else None)
