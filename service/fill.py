"""A finished dataset: human labels as they are, every other pixel from a cycle's prediction where its
confidence reaches a threshold, 255 below it. Torch-free: the predictions are files a worker wrote
(worker/model_io.py, keys in service/storage.py).

Per image the export adds `sources/<stem>.png`, a palette PNG whose values say where each pixel of the
mask came from (0 unlabeled, 1 human, 2 model), and at the end `report.json` with the share of each.
"""

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from service.masks import IGNORE
from service.models import Cycle, Image
from service.storage import Storage, prediction_keys

UNLABELED, HUMAN, MODEL = 0, 1, 2
SOURCE_NAMES = {UNLABELED: "unlabeled", HUMAN: "human", MODEL: "model"}
_PALETTE = [0, 0, 0, 46, 160, 67, 66, 133, 244]  # unlabeled black, human green, model blue
CONF_SCALE = 65535  # the worker writes confidence as p × 65535 in a 16-bit PNG


class BadThreshold(ValueError):
    """A confidence threshold outside (0, 1]."""


def check_threshold(min_confidence: float) -> float:
    if not 0.0 < min_confidence <= 1.0:
        raise BadThreshold(f"min_confidence must be in (0, 1], got {min_confidence}")
    return float(min_confidence)


def fill_labels(human: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(filled mask, sources): human pixels kept, unlabeled ones take `predicted` where `confidence`
    (in [0, 1]) >= `min_confidence`. All arrays H×W."""
    if not human.shape == predicted.shape == confidence.shape:
        raise ValueError(f"shapes differ: labels {human.shape}, prediction {predicted.shape}, "
                         f"confidence {confidence.shape}")
    is_human = human != IGNORE
    take = ~is_human & (confidence >= min_confidence)
    filled = np.where(take, predicted, human).astype(np.uint8)
    sources = np.full(human.shape, UNLABELED, np.uint8)
    sources[is_human] = HUMAN
    sources[take] = MODEL
    return filled, sources


def encode_sources_png(sources: np.ndarray) -> bytes:
    img = PILImage.fromarray(sources, mode="P")
    img.putpalette(_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def read_prediction(storage: Storage, cycle: Cycle, image: Image) -> tuple[np.ndarray, np.ndarray]:
    """(class ids uint8, confidence float32 in [0, 1]) of `image` by `cycle`; FileNotFoundError if absent."""
    cls_key, conf_key = prediction_keys(cycle.project_id, cycle.id, image.id)
    with PILImage.open(storage.path(cls_key)) as img:
        cls = np.array(img, dtype=np.uint8)
    with PILImage.open(storage.path(conf_key)) as img:
        conf = np.array(img, dtype=np.float32) / CONF_SCALE
    return cls, conf


@dataclass
class Fill:
    """What the export fills with (`cycle`'s predictions above `min_confidence`) and what it counted."""

    cycle: Cycle
    min_confidence: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> source name -> pixels

    def apply(self, storage: Storage, image: Image, human: np.ndarray) -> tuple[np.ndarray, bytes]:
        """(filled mask, sources PNG) of one image; its pixels are added to the counts."""
        predicted, confidence = read_prediction(storage, self.cycle, image)
        filled, sources = fill_labels(human, predicted, confidence, self.min_confidence)
        tally = self.counts.setdefault(image.split, dict.fromkeys(SOURCE_NAMES.values(), 0))
        for value, n in zip(*np.unique(sources, return_counts=True), strict=True):
            tally[SOURCE_NAMES[int(value)]] += int(n)
        return filled, encode_sources_png(sources)

    def report(self) -> dict:
        total = dict.fromkeys(SOURCE_NAMES.values(), 0)
        for tally in self.counts.values():
            for k, v in tally.items():
                total[k] += v
        pixels = sum(total.values())

        def shares(t: dict[str, int]) -> dict[str, float]:
            n = sum(t.values())
            return {k: round(v / n, 6) if n else 0.0 for k, v in t.items()}

        m = self.cycle.metrics or {}
        return {"fill": "model", "min_confidence": self.min_confidence,
                "cycle": {"id": self.cycle.id, "number": self.cycle.number, "val_miou": m.get("miou")},
                "sources_png": {str(k): v for k, v in SOURCE_NAMES.items()},
                "pixels": {**total, "total": pixels}, "shares": shares(total),
                "splits": {s: {"pixels": t, "shares": shares(t)} for s, t in sorted(self.counts.items())}}
