"""Semi-supervised training of one S4AL cycle: `train(config, data)`.

Each step: a weakly augmented batch of labeled crops (supervised CE, 255 ignored) and, after the
supervised-only warm-up, a batch of crops from the whole pool whose teacher predictions (human labels
override, confidence 1) are mixed in pairs (ClassMix by default); the student sees the mixed images
with colour jitter and blur and is trained toward the mixed teacher targets, weighted per pixel by
the teacher's confidence and per image by eta (see losses.py). `balanced_classmix` adds a second
term on pairs from the replay buffer with tail classes pasted more often. The teacher is an EMA of
the student and is the model returned for scoring.

Crops come from worker/engine/loader.py (lazily decoded, in loader processes). Nothing in a step waits
for the host: masks and the replay buffer live on the device and losses are read back every
`log_every` steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from worker.engine.config import DEVICES, INITS, MIX_MODES, MODEL_DEFAULTS, TrainConfig
from worker.engine.errors import Cancelled
from worker.engine.loader import StepDraws, crop_loader, default_loader_workers, to_device
from worker.engine.losses import supervised_ce, teacher_targets
from worker.engine.masks import classmix_mask, cow_mask, cutmix_mask
from worker.engine.models import PRETRAINED_MODELS, build_model
from worker.engine.replay import ReplayBuffer, weights_from_counts
from worker.engine.targets import make_targets, mixed_input
from worker.engine.teacher import EMATeacher
from worker.engine.unsup_gate import HeldOutPool, UnsupGate, gate_sample

__all__ = ["DEVICES", "INITS", "MIX_MODES", "MODEL_DEFAULTS", "Cancelled", "TrainConfig", "TrainResult",
           "resolve_device", "train", "unsup_weight"]


@dataclass
class TrainResult:
    student: nn.Module
    teacher: nn.Module  # the EMA model: use it for scoring and prediction
    iterations: int
    seconds: float
    losses: dict[str, float]  # means over the last 10% of steps
    device: str
    pseudoseg: nn.Module | None = None  # PseudoSeg's EMA classifier + SGC (pseudo_label "pseudoseg")
    data_wait_seconds: float = 0.0  # time the step spent waiting for the loader


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


def autocast_args(config: TrainConfig, device: torch.device) -> dict:
    """bf16 where the GPU has it (no grad scaler needed), fp16 otherwise; off on CPU."""
    if not (config.amp and device.type == "cuda"):
        return {"dtype": torch.bfloat16, "enabled": False}
    return {"dtype": torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16, "enabled": True}


def unsup_weight(step: int, config: TrainConfig) -> float:
    """The weight of the unsupervised terms at `step`. S4AL needs no ramp-up: eta, inside each term,
    already scales it by the teacher's confidence (DESIGN §1)."""
    return 1.0


GATE_IMAGES = 128  # images the gate measures the teacher on, at most
GATE_PIXELS = 1 << 21  # and pixels in all: held pixels enough for K classes x 9 bins, bounded cost
GATE_WINDOW = 2  # the gate measures on tiles of this many crop sides around held pixels (context as trained)
GATE_BATCH_PIXELS = 1 << 18  # pixels of tiles per forward pass of a measurement


def unsup_gate(config: TrainConfig, data, labeled: list[int]) -> tuple[object, UnsupGate | None, list[int]]:
    """(the pool training reads, the gate or None, the images whose labels training still sees): with the
    gate on, a share of the labeled blocks is held back from training and measured on instead
    (unsup_gate.py). The gate measures on images drawn at random among those with held pixels, so that
    its precision table stands for the whole pool, not for the first images of it."""
    if config.mix == "none" or config.unsup_gate != "measured" or config.pseudo_label != "argmax":
        return data.train, None, labeled
    pool = HeldOutPool(data.train, config.gate_holdout, block=16, seed=config.seed)
    split = [pool.split(i) for i in labeled]
    kept = [i for i, (keeps, _) in zip(labeled, split, strict=True) if keeps]
    measured = [i for i, (_, held) in zip(labeled, split, strict=True) if held]
    start = int(config.warmup_fraction * config.iterations)
    if not kept:  # every labeled block went to the gate: train on them all, with nothing measured (closed)
        return data.train, UnsupGate([], [], data.num_classes, start=start, every=1), labeled
    order = np.random.default_rng([config.seed, len(labeled)]).permutation(measured).tolist()
    images, held = gate_sample(pool, order, GATE_IMAGES, config.base, GATE_WINDOW * config.crop,
                               max_pixels=GATE_PIXELS)
    gate = UnsupGate(images, held, data.num_classes, start=start,
                     every=max(1, config.iterations // 20), max_images=GATE_IMAGES,
                     batch_size=max(1, min(32, GATE_BATCH_PIXELS // (GATE_WINDOW * config.crop) ** 2)),
                     tau=config.tau)
    return pool, gate, kept


def mix_mask(mode: str, target_a: torch.Tensor, cfg: TrainConfig, weights: torch.Tensor | None,
             gen: torch.Generator) -> torch.Tensor:
    b, h, w = target_a.shape
    if mode in ("classmix", "balanced_classmix"):
        return classmix_mask(target_a, class_weights=weights, generator=gen)
    if mode == "cutmix":
        return cutmix_mask(b, h, w, proportion=0.5, generator=gen).to(target_a.device)
    # CowOut keeps a share p ~ U[0.25, 1] of each image (French et al.); CowMix mixes half and half.
    p = 0.5 if mode == "cowmix" else 0.25 + 0.75 * torch.rand(b, generator=gen, device=gen.device).cpu()
    return cow_mask(b, h, w, proportion=p, sigma=cfg.cow_sigma, generator=gen).to(target_a.device)


@dataclass
class Mix:
    x: torch.Tensor  # the student's input
    view_a: tuple
    view_b: tuple
    mask: torch.Tensor


class Step:
    """The models and the state one training step touches."""

    def __init__(self, config: TrainConfig, data, device: torch.device, init_state: dict | None,
                 class_counts: np.ndarray) -> None:
        self.cfg, self.device = config, device
        self.autocast = autocast_args(config, device)
        imagenet = config.model in PRETRAINED_MODELS and config.init != "random"
        pretrained = (config.weights or True) if imagenet else None
        student = build_model(config.model, data.num_classes, pretrained=pretrained)
        if config.init == "previous" and init_state is not None:
            student.load_state_dict(init_state["student"])
        student = student.to(device).train()
        if device.type == "cuda":
            student = student.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.student = student
        self.forward = torch.compile(student) if config.compile else student
        self.teacher = EMATeacher(student, config.ema_momentum)
        self.targets = make_targets(config, data, student, device)
        balanced = config.mix == "balanced_classmix"
        self.weights = weights_from_counts(class_counts).to(device) if balanced else None
        self.replay = ReplayBuffer(config.replay_size, data.num_classes) if balanced else None
        params = list(student.parameters()) + self.targets.parameters()
        self.optimizer = torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                                         nesterov=config.nesterov, weight_decay=config.weight_decay)
        fp16 = self.autocast["enabled"] and self.autocast["dtype"] == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def set_lr(self, step: int) -> float:
        lr = self.cfg.learning_rate * (1.0 - step / self.cfg.iterations) ** self.cfg.poly_power
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def view(self, x, y, inside, indices) -> tuple:
        return self.targets.view(self.teacher.module, x, y, inside, indices, self.autocast)

    def mix(self, view_a: tuple, view_b: tuple, xa, xb, gen) -> Mix:
        """Mask the pair (A, B) and make the student's input."""
        m = mix_mask(self.cfg.mix, teacher_targets(view_a[0], view_a[1])[0], self.cfg, self.weights, gen)
        x = mixed_input(m, xa, xb, self.cfg.mix, self.cfg, gen)
        x, view_a, view_b = self.targets.cutout(x, view_a, view_b, gen)
        return Mix(x, view_a, view_b, m)

    def unsupervised_mix(self, xa, ya, ia, indices, gen) -> Mix:
        """In-batch pairs of pool crops: image i with image i-1."""
        view_a = self.view(xa, ya, ia, indices)
        if self.replay is not None:
            self.replay.push(xa, ya, ia, teacher_targets(view_a[0], ya)[0])
        return self.mix(view_a, tuple(t.roll(1, 0) for t in view_a), xa, xa.roll(1, 0), gen)

    def replay_mix(self, gen) -> Mix:
        """Balanced ClassMix: pairs from the replay buffer, tail classes first. A replayed crop's image
        (and so its tags) is unknown: indices None."""
        (ra, rya, ria), (rb, ryb, rib) = self.replay.sample(self.cfg.replay_batch_size, self.weights, gen)
        return self.mix(self.view(ra, rya, ria, None), self.view(rb, ryb, rib, None), ra, rb, gen)

    def losses(self, step: int, x, y, inside, indices, gen) -> dict[str, torch.Tensor]:
        """Every term of this step's loss (device scalars); "loss" is their weighted sum."""
        n = self.cfg.batch_size
        mixes = []
        if x.shape[0] > n:  # the sampler adds pool crops once mixing has started
            mixes.append(self.unsupervised_mix(x[n:], y[n:], inside[n:], indices[n:], gen))
            if self.replay is not None:
                mixes.append(self.replay_mix(gen))
        inputs = [x[:n]] + [m.x for m in mixes]
        with torch.autocast(self.device.type, **self.autocast):
            logits = self.forward(torch.cat(inputs)).float()  # one pass: labeled + mixed (+ replay)
        parts = logits.split([len(t) for t in inputs])
        terms = {"sup": supervised_ce(parts[0], y[:n])}
        terms.update(self.targets.student_losses(n, y[:n], indices[:n]))
        loss = sum(terms.values())
        weight = unsup_weight(step, self.cfg)
        for name, part, mix in zip(("unsup", "replay"), parts[1:], mixes, strict=False):
            term, eta = self.targets.mix_loss(part, mix.view_a, mix.view_b, mix.mask, self.cfg.mix)
            loss = loss + weight * term
            terms[name], terms[f"eta_{name}"] = term.detach(), eta.mean()
        terms["loss"] = loss
        return terms

    def optimize(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def update_teacher(self, step: int) -> None:
        self.teacher.update(step)
        self.targets.update(step)


class LossLog:
    """Losses stay on the device; they are read back every `log_every` steps (one sync) and averaged on the
    device over the last 10% of steps."""

    def __init__(self, config: TrainConfig) -> None:
        self.every, self.iterations = config.log_every, config.iterations
        self.tail_start = config.iterations - max(1, config.iterations // 10)
        self.last: dict[str, float] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, step: int, terms: dict[str, torch.Tensor], lr: float) -> None:
        if step >= self.tail_start:
            for k, v in terms.items():
                v = v.detach().float()
                self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
                self.counts[k] = self.counts.get(k, 0) + 1
        if (step + 1) % self.every == 0 or step + 1 == self.iterations:
            keys = list(terms)
            values = torch.stack([terms[k].detach().float() for k in keys]).tolist()
            self.last = {**dict(zip(keys, values, strict=True)), "lr": lr}
            if not math.isfinite(self.last["loss"]):
                raise FloatingPointError(f"loss is {self.last['loss']} at step {step}")

    def means(self) -> dict[str, float]:
        keys = sorted(self.sums)
        if not keys:
            return {}
        values = torch.stack([self.sums[k] / self.counts[k] for k in keys]).tolist()
        return dict(zip(keys, values, strict=True))


def train(config: TrainConfig, data, progress: Callable[[str, int, int, dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, init_state: dict | None = None) -> TrainResult:
    """Train a student and its EMA teacher on `data` (a CycleData; see module doc). Deterministic for a
    seed on CPU, whatever the number of loader workers.

    `init_state`: a checkpoint dict whose `student` weights start the model when `config.init` is
    `previous` (ignored for `pretrained`, and when None the model starts fresh as well).
    """
    config.validate()
    device = resolve_device(config.device)
    stats = data.stats()
    labeled = np.flatnonzero(stats.labeled > 0).tolist()
    if not labeled:
        raise ValueError("no labeled pixel in the training data")
    start = time.perf_counter()
    wait = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = torch.Generator(device).manual_seed(config.seed)
        run = Step(config, data, device, init_state, stats.class_counts)
        train_pool, gate, labeled = unsup_gate(config, data, labeled)
        run.targets.gate = gate
        draws = StepDraws(labeled, len(data.train), batch_size=config.batch_size,
                          unlabeled_batch_size=config.unlabeled_batch_size, iterations=config.iterations,
                          warmup=int(config.warmup_fraction * config.iterations), mixing=config.mix != "none",
                          seed=config.seed)
        workers = default_loader_workers() if config.loader_workers is None else config.loader_workers
        loader = crop_loader(train_pool, draws, crop=config.crop, scale=config.scales, flip=config.flip,
                             base_size=config.base, workers=workers, device=device)
        log = LossLog(config)
        batches = iter(loader)
        for step in range(config.iterations):
            if should_stop is not None and should_stop():
                raise Cancelled(f"cancelled at step {step}/{config.iterations}")
            lr = run.set_lr(step)
            t = time.perf_counter()
            x, y, inside, indices = to_device(next(batches), device)
            wait += time.perf_counter() - t
            if gate is not None and gate.due(step):
                gate.measure(run.teacher.module, device)
            terms = run.losses(step, x, y, inside, indices, gen)
            if gate is not None:
                device_of = terms["loss"].device
                terms.update({k: torch.tensor(v, device=device_of) for k, v in gate.summary().items()})
            run.optimize(terms["loss"])
            run.update_teacher(step)
            log.add(step, terms, lr)
            if progress is not None:
                progress("train", step + 1, config.iterations, log.last)
        del batches
    return TrainResult(run.student.eval(), run.teacher.module.eval(), config.iterations,
                       time.perf_counter() - start, log.means(), str(device),
                       pseudoseg=run.targets.close(), data_wait_seconds=wait)
