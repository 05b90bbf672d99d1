"""Run an exported model (TorchScript or ONNX, worker/export_model.py) on a folder of images.

Streaming: images are decoded one at a time and grouped into batches of equal size (at most
`batch_size` images and `max_pixels` pixels); each batch is predicted, written and dropped, so memory
is one batch whatever the folder holds. Files that cannot be decoded are listed and skipped.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image as PILImage

from worker.export_model import FORMATS, SIDECAR_KIND, sidecar_path

T = TypeVar("T")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class NotOurModel(ValueError):
    """The file is not an s4al export (no or wrong sidecar, or outputs that disagree with it)."""


def read_sidecar(model_file: Path) -> dict[str, Any]:
    side = sidecar_path(model_file)
    if not Path(model_file).is_file():
        raise NotOurModel(f"{model_file}: no such file")
    if not side.is_file():
        raise NotOurModel(f"{model_file}: its sidecar {side.name} is missing "
                          "(export with `s4al model export`)")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise NotOurModel(f"{side}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("kind") != SIDECAR_KIND:
        raise NotOurModel(f"{side}: not an s4al model sidecar (kind must be {SIDECAR_KIND!r})")
    classes = meta.get("classes")
    if meta.get("format") not in FORMATS or not isinstance(classes, list) or \
            meta.get("num_classes") != len(classes) or len(classes) < 2:
        raise NotOurModel(f"{side}: format must be one of {list(FORMATS)} and num_classes must equal the "
                          "number of classes listed (at least 2)")
    return meta


class ExportedModel:
    """A loaded export: `logits(batch)` maps a float `[N,3,H,W]` tensor in [0,1] to `[N,K,H,W]`."""

    def __init__(self, model_file: str | Path, device: str = "cpu") -> None:
        self.path = Path(model_file)
        self.meta = read_sidecar(self.path)
        self.num_classes = int(self.meta["num_classes"])
        self.device = torch.device(device)
        if self.meta["format"] == "torchscript":
            try:
                with warnings.catch_warnings():  # torch.jit's deprecation notice, once per load
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self._net = torch.jit.load(str(self.path), map_location=self.device).eval()
            except Exception as exc:
                raise NotOurModel(f"{self.path}: not a TorchScript file ({exc})") from exc
            self._run = self._run_torchscript
        else:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise NotOurModel("ONNX models need onnxruntime (pip install onnxruntime)") from exc
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device.type == "cuda" \
                else ["CPUExecutionProvider"]
            try:
                self._sess = ort.InferenceSession(str(self.path), providers=providers)
            except Exception as exc:
                raise NotOurModel(f"{self.path}: not an ONNX model ({exc})") from exc
            self._run = self._run_onnx
        probe = self.logits(torch.zeros(1, 3, 32, 32))
        if probe.shape[1] != self.num_classes:
            raise NotOurModel(f"{self.path}: the model outputs {probe.shape[1]} classes, its sidecar lists "
                              f"{self.num_classes}")

    def _run_torchscript(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._net(x.to(self.device))

    def _run_onnx(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self._sess.run(["logits"], {"image": x.cpu().numpy()})
        return torch.from_numpy(out)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x.float())

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 `[N,H,W,3]` → (class ids uint8 `[N,H,W]`, max softmax float32 `[N,H,W]`)."""
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
        probs = torch.softmax(self.logits(x).float(), dim=1)
        conf, cls = probs.max(dim=1)
        return cls.to(torch.uint8).cpu().numpy(), conf.cpu().numpy()


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def decode(path: Path) -> np.ndarray:
    with PILImage.open(path) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)


@dataclass
class PredictReport:
    predicted: int = 0
    pixels: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def batches(items: Iterable[T], load: Callable[[T], np.ndarray], failed: list[tuple[str, str]],
            batch_size: int, max_pixels: int) -> Iterator[tuple[list[T], np.ndarray]]:
    """Consecutive decodable images of one size, stacked; a batch ends at a size change or a limit.
    Items whose `load` raises are appended to `failed` as (item, error) and skipped."""
    group: list[T] = []
    arrays: list[np.ndarray] = []
    for item in items:
        try:
            arr = load(item)
        except Exception as exc:  # PIL raises several kinds for a broken file; each is "cannot decode"
            name = getattr(item, "name", None) or getattr(item, "stem", item)
            failed.append((str(name), f"{type(exc).__name__}: {exc}"))
            continue
        full = arrays and (arr.shape != arrays[0].shape or len(arrays) >= batch_size or
                           (len(arrays) + 1) * arr.shape[0] * arr.shape[1] > max_pixels)
        if full:
            yield group, np.stack(arrays)
            group, arrays = [], []
        group.append(item)
        arrays.append(arr)
    if arrays:
        yield group, np.stack(arrays)


def predict_folder(model: ExportedModel, images_dir: Path, out_dir: Path, *, confidence: bool = False,
                   batch_size: int = 8, max_pixels: int = 8 * 1024 * 1024,
                   progress: Callable[[int], None] | None = None) -> PredictReport:
    """Write `out_dir/masks/<stem>.png` (class ids) and, with `confidence`, `out_dir/confidence/<stem>.png`
    (max softmax × 255) for every image of `images_dir`. `progress(n)` is called with images done."""
    paths = list_images(images_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    if confidence:
        (out_dir / "confidence").mkdir(parents=True, exist_ok=True)
    report = PredictReport()
    done = 0

    def counted(ps: list[Path]) -> Iterator[Path]:
        nonlocal done
        for p in ps:
            yield p
            done += 1

    for group, stack in batches(counted(paths), decode, report.failed, batch_size, max_pixels):
        classes, conf = model.predict(stack)
        for i, path in enumerate(group):
            PILImage.fromarray(classes[i]).save(out_dir / "masks" / f"{path.stem}.png")
            if confidence:
                c8 = np.rint(conf[i] * 255).astype(np.uint8)
                PILImage.fromarray(c8).save(out_dir / "confidence" / f"{path.stem}.png")
        report.predicted += len(group)
        report.pixels += int(stack.shape[0] * stack.shape[1] * stack.shape[2])
        if progress is not None:
            progress(done)
    if progress is not None:
        progress(len(paths))
    return report
