"""`TrainConfig`: every training default in one place, and the per-model defaults it falls back to.

The project's training settings (service/schemas/project.py), `s4al simulate` and the CLI take their
defaults from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.engine import pseudoseg_train
from worker.engine.losses import CONSISTENCY
from worker.engine.models import check_model_name
from worker.engine.unsup_gate import GATES

MIX_MODES = ("classmix", "balanced_classmix", "cutmix", "cowmix", "cowout", "none")
INITS = ("pretrained", "random", "previous")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelDefaults:
    lr: float
    scale: tuple[float, float]  # random rescaling of training crops
    crop_size: int
    base_size: int | None  # long side above which images are resized; None = native resolution


# unet_small starts from random weights on small images; measured with full labels on fashion-scenes
# 64x64 (val mIoU, teacher): lr 1e-1 beat 5e-2 and 1e-2 at 1000-1500 steps (0.251 / 0.242 / 0.09), and
# random rescaling (0.75-1.25) left training unconverged where the data already varies object scale.
# Without it, full labels, seed 0 (deterministic on CPU): 1500 / 3000 / 6000 / 12000 steps -> 0.294 /
# 0.328 / 0.363 / 0.364 val mIoU. Crop 64 is the size of those images; it is never resized.
# deeplabv3plus_mobilenetv2: the published S4AL values (lr 1e-2) for an ImageNet-pretrained DeepLabv3+,
# with the Cityscapes recipe of DeepLabv3+ (Chen et al. 2018: random scale 0.5-2.0, crop 513x513 of
# 1024x2048 frames) as adapted by UniMatch's configs/cityscapes.yaml (crop 801 at full resolution) and
# S4AL (688x688 of half-resolution frames): here crop 512 of frames whose long side is resized to 1024,
# scale 0.5-1.5, which fits a batch of 8 + 8 crops in a single GPU's memory with MobileNetV2.
MODEL_DEFAULTS = {
    "unet_small": ModelDefaults(lr=1e-1, scale=(1.0, 1.0), crop_size=64, base_size=None),
    "deeplabv3plus_mobilenetv2": ModelDefaults(lr=1e-2, scale=(0.5, 1.5), crop_size=512, base_size=1024),
    # An ImageNet encoder on images as small as unet_small's: the fine-tuning lr, unet_small's crop and
    # fixed scale (not tuned; bench/model_convergence.py measures it).
    "lraspp_mobilenetv2": ModelDefaults(lr=1e-2, scale=(1.0, 1.0), crop_size=64, base_size=None),
}


def model_defaults(model: str) -> ModelDefaults:
    check_model_name(model)
    return MODEL_DEFAULTS[model]


@dataclass
class TrainConfig:
    # The ImageNet encoder: with few labels (what a labeling project starts with) it learns faster than
    # unet_small from random weights, at 1.2x its CPU step (bench/model_convergence.py). Unit tests pass
    # model="unet_small" explicitly, for speed.
    model: str = "lraspp_mobilenetv2"
    weights: str | None = None  # ImageNet MobileNetV2 file for deeplab; None = the packaged file
    # pretrained: a fresh model each cycle, deeplab's encoder from ImageNet (S4AL) | random: a fresh model
    # without ImageNet weights | previous: warm start from the last cycle's student
    init: str = "pretrained"
    iterations: int = 2000
    batch_size: int = 8  # labeled crops per step
    unlabeled_batch_size: int = 8  # pool crops per step, mixed in pairs (i, i-1)
    replay_batch_size: int = 4  # mixed pairs per step from the replay buffer (balanced_classmix)
    replay_size: int = 256  # crops kept in the replay buffer
    crop_size: int | None = None  # None = the model's default
    base_size: int | None = None  # None = the model's default
    scale_range: tuple[float, float] | None = None  # random rescaling; None = the model's default
    flip: bool = True
    lr: float | None = None  # None = the model's default
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    warmup_fraction: float = 0.1  # supervised-only share of the iterations
    ema_momentum: float = 0.99
    tau: float = 0.97
    # The teacher's confidence measured on held-back labeled pixels (unsup_gate.py): measured | off.
    unsup_gate: str = "measured"
    gate_holdout: float = 0.1  # share of the labeled blocks held back from training to measure it
    mix: str = "classmix"
    consistency: str = "ce"  # ce (S4AL, ClassMix) | mse (French et al.)
    cutout: bool = False  # CutOut on the student's view as well
    color_jitter: float = 0.4
    blur_prob: float = 0.5
    cow_sigma: tuple[float, float] = (4.0, 16.0)
    pseudo_label: str = "argmax"  # argmax: teacher argmax (S4AL, ClassMix) | pseudoseg: fused soft targets
    pseudoseg_gamma: float = 0.5  # weight of the decoder's softmax in the fusion (1 - gamma: the SGC map)
    pseudoseg_temperature: float = 0.5  # sharpening temperature T
    pseudoseg_cutout: float = 0.04  # CutOut area on the student's view (PseudoSeg: 100x100 px of 513x513)
    pseudoseg_background: int | None = None  # None: the class named "background", if there is one
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only: bf16 where supported, else fp16 with a grad scaler
    compile: bool = False  # torch.compile the student (CUDA: pays off on long runs)
    loader_workers: int | None = None  # crop-loading processes; None = cores - 1, at most 8
    log_every: int = 10  # steps between reading losses back from the device
    eval_batch_size: int = 32  # images per scoring/evaluation batch, at most ...
    eval_pixels: int = 1 << 23  # ... and at most this many pixels per batch (8 MP: 4 images of 2048x1024)
    extra: dict = field(default_factory=dict)  # free-form notes carried into checkpoints

    def __post_init__(self) -> None:
        if self.scale_range is not None:
            self.scale_range = tuple(self.scale_range)  # type: ignore[assignment]
        self.cow_sigma = tuple(self.cow_sigma)  # type: ignore[assignment]

    def _defaults(self) -> ModelDefaults | None:
        return MODEL_DEFAULTS.get(self.model)

    @property
    def learning_rate(self) -> float:
        d = self._defaults()
        return self.lr if self.lr is not None else (d.lr if d else 1e-2)

    @property
    def scales(self) -> tuple[float, float]:
        d = self._defaults()
        return self.scale_range if self.scale_range is not None else (d.scale if d else (1.0, 1.0))

    @property
    def crop(self) -> int:
        d = self._defaults()
        return self.crop_size if self.crop_size is not None else (d.crop_size if d else 64)

    @property
    def base(self) -> int | None:
        """The long side images are resized to for training, scoring and evaluation; None = never."""
        if self.base_size is not None:
            return self.base_size
        d = self._defaults()
        return d.base_size if d else None

    def validate(self) -> None:
        check_model_name(self.model)
        choices = {"mix": (self.mix, MIX_MODES), "init": (self.init, INITS), "device": (self.device, DEVICES),
                   "consistency": (self.consistency, CONSISTENCY), "unsup_gate": (self.unsup_gate, GATES)}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")
        positive = {"iterations": self.iterations, "batch_size": self.batch_size, "crop_size": self.crop,
                    "eval_batch_size": self.eval_batch_size, "replay_batch_size": self.replay_batch_size,
                    "log_every": self.log_every, "eval_pixels": self.eval_pixels}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_resolution(self.crop, self.base)
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ValueError(f"loader_workers must be >= 0, got {self.loader_workers}")
        if self.unlabeled_batch_size < 2 and self.mix != "none":
            raise ValueError("unlabeled_batch_size must be >= 2 to mix pairs")
        if self.replay_size < 2:
            raise ValueError(f"replay_size must be >= 2, got {self.replay_size}")
        if not 0.0 < self.tau < 1.0 or not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError("tau must be in (0, 1) and ema_momentum in [0, 1)")
        if not 0.0 < self.gate_holdout < 1.0:
            raise ValueError(f"gate_holdout must be in (0, 1), got {self.gate_holdout}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if len(self.scales) != 2 or not 0.0 < self.scales[0] <= self.scales[1]:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {self.scale_range}")
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.learning_rate <= 0:
            raise ValueError(f"lr must be > 0, got {self.learning_rate}")
        pseudoseg_train.check_config(self)

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


def check_resolution(crop_size: int | None, base_size: int | None) -> None:
    """ValueError unless the crop is positive and no larger than a positive base size."""
    if crop_size is not None and (not isinstance(crop_size, int) or crop_size < 1):
        raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
    if base_size is not None and (not isinstance(base_size, int) or base_size < 1):
        raise ValueError(f"base_size must be a positive integer, got {base_size!r}")
    if crop_size is not None and base_size is not None and crop_size > base_size:
        raise ValueError(f"crop_size {crop_size} is larger than base_size {base_size}")
