"""On-disk cache of `s4al simulate`'s `full` reference runs, so repeated simulations do not retrain it.

A run is keyed by the dataset's pixels (train and val images and ground truth, hashed), the training
configuration (model, settings, seed, device) and N, the iterations. One small JSON file per key under
`S4AL_CACHE_DIR` (default `~/.cache/s4al`)/full.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def cache_root(cache_dir: str | None) -> Path:
    root = cache_dir or os.environ.get("S4AL_CACHE_DIR") or Path.home() / ".cache" / "s4al"
    return Path(root) / "full"


def dataset_fingerprint(*arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 over every array's shape and bytes, in order (images, truth, val images, val truth)."""
    digest = hashlib.sha256()
    for group in arrays:
        digest.update(str(len(group)).encode())
        for a in group:
            digest.update(str(a.shape).encode())
            digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def run_key(fingerprint: str, train_config: dict) -> str:
    text = json.dumps({"dataset": fingerprint, "train": train_config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(root: Path, key: str) -> dict | None:
    try:
        return json.loads((root / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def store(root: Path, key: str, run: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{key}.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(run))
    tmp.replace(root / f"{key}.json")
