"""A cycle's teacher as a file that runs without s4al: TorchScript or ONNX, with a JSON sidecar.

The exported network takes what the engine's models take, a float32 RGB batch in [0, 1] of shape
`[N, 3, H, W]` (any N, H, W; normalisation happens inside), and returns logits `[N, K, H, W]`.

The models pad their input to a multiple of their stride with a Python `if`, which a trace would freeze
at the example's size. `Exportable` pads first, always (a no-op pad of 0 when the size is already a
multiple), with the ImageNet mean colour: after the model's normalisation that is 0, exactly what the
model's own padding adds, so the exported network gives the same logits as the model at any size.

The sidecar (`<file>.json`) is what makes a file one of ours: `s4al predict` refuses a model without it.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.storage import MODEL_EXTENSIONS
from worker.engine import checkpoint
from worker.engine.models import _MEAN, _STD

FORMATS = tuple(MODEL_EXTENSIONS)
SIDECAR_KIND = "s4al-segmentation-model"
SIDECAR_VERSION = 1
ONNX_OPSET = 17


class Exportable(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.stride = int(model.stride)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph = (self.stride - h % self.stride) % self.stride
        pw = (self.stride - w % self.stride) % self.stride
        x = F.pad(x - self.mean, [0, pw, 0, ph]) + self.mean
        return self.model(x)[:, :, :h, :w]


def sidecar_path(model_file: str | Path) -> Path:
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def make_sidecar(ckpt: dict[str, Any], fmt: str, classes: list[dict] | None = None,
                 metrics: dict | None = None, cycle: dict | None = None) -> dict[str, Any]:
    """Everything a user needs to run the file: classes (id, name, colour), input, output, resolution.

    `classes` are the project's (with colours); without them the checkpoint's names are used."""
    names = list(ckpt["class_names"])
    if classes is None:
        classes = [{"id": i, "name": n, "color": None} for i, n in enumerate(names)]
    classes = sorted(({"id": int(c["id"]), "name": c["name"], "color": c.get("color")} for c in classes),
                     key=lambda c: c["id"])
    if [c["name"] for c in classes] != names:
        raise ValueError(f"the project's classes {[c['name'] for c in classes]} are not the checkpoint's "
                         f"{names}")
    config = ckpt["config"]
    return {
        "kind": SIDECAR_KIND, "version": SIDECAR_VERSION, "format": fmt, "architecture": config["model"],
        "num_classes": len(names), "classes": classes, "ignore_index": 255,
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                  "range": [0.0, 1.0], "size": "any height and width",
                  "normalisation": {"mean": list(_MEAN), "std": list(_STD),
                                    "applied": "inside the model: feed RGB / 255"}},
        "output": {"name": "logits", "layout": "NCHW", "dtype": "float32",
                   "meaning": "class logits at the input size; argmax = class id, softmax max = confidence"},
        "resolution": {"trained_crop_size": config.get("crop_size"), "base_size": config.get("base_size"),
                       "scale_range": config.get("scale_range"),
                       "inference": "whole images at their own resolution, as the service scores them"},
        "metrics": metrics or {},
        "cycle": cycle or {},
    }


def _atomic_write(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _example(size: int = 64) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


@contextmanager
def _quiet_trace():
    """Silence what tracing says about the models' own `if ph or pw` (after `Exportable`'s pad it is
    always false, the branch the trace keeps) and torch's notices that TorchScript and its ONNX exporter
    are deprecated in favour of torch.export (still the formats users ask for; both work in 2.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def export_torchscript(model: nn.Module, path: Path) -> Path:
    wrapped = Exportable(model).eval()
    with torch.no_grad(), _quiet_trace():
        traced = torch.jit.trace(wrapped, _example(), check_trace=False)

        def write(tmp: str) -> None:
            torch.jit.save(traced, tmp)

        return _atomic_write(path, write)


def export_onnx(model: nn.Module, path: Path) -> Path:
    wrapped = Exportable(model).eval()
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}

    def write(tmp: str) -> None:
        with torch.no_grad(), _quiet_trace():
            torch.onnx.export(wrapped, (_example(),), tmp, input_names=["image"], output_names=["logits"],
                              dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)

    return _atomic_write(path, write)


def export_checkpoint(ckpt: dict[str, Any], fmt: str, out: str | Path, **sidecar_fields: Any) -> Path:
    """Write the checkpoint's teacher as `fmt` to `out`, and its sidecar to `<out>.json`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    out = Path(out)
    sidecar = make_sidecar(ckpt, fmt, **sidecar_fields)
    model = checkpoint.load_model(ckpt, "teacher")
    (export_torchscript if fmt == "torchscript" else export_onnx)(model, out)
    text = json.dumps(sidecar, indent=2) + "\n"
    _atomic_write(sidecar_path(out), lambda tmp: Path(tmp).write_text(text))
    return out
