"""`s4al simulate`'s `full` reference: every train pixel labeled, supervised, at N and 2N iterations (is
the reference converged?), cached on disk so that repeated simulations do not retrain it.

A run is keyed by the dataset's pixels (train and val images and ground truth, hashed), the training
configuration (model, settings, seed, device) and N, the iterations. One small JSON file per key under
`S4AL_CACHE_DIR` (default `~/.cache/s4al`)/full. `cfg` below is simulate's SimulateConfig (not imported
here: simulate imports this module).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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


def full_config(cfg, iterations: int):
    return cfg.train_config("none", iterations=iterations, init="pretrained")


def cached_full(cfg, data, truth) -> dict | None:
    """The full reference from the cache when every one of its runs is there, else None."""
    root, fingerprint = cache_root(cfg.cache_dir), _fingerprint(data, truth)
    runs = [load(root, run_key(fingerprint, full_config(cfg, n).to_dict()))
            for n in _iterations(cfg)]
    return None if any(r is None for r in runs) else _summary(cfg, runs, cached=True)


def _fingerprint(data, truth) -> str:
    return dataset_fingerprint(data.images, truth, data.val_images, data.val_labels)


def _iterations(cfg) -> list[int]:
    n = cfg.full_iterations or cfg.iterations
    return [n, 2 * n] if cfg.full_check else [n]


def run_full(cfg, data, truth, report, bar) -> dict:
    """Train (or read from the cache) the full reference at N and 2N iterations."""
    from worker.engine.cycle import AcquisitionConfig, CycleData, run_cycle

    full_data = CycleData(data.images, [t.copy() for t in truth], data.val_images, data.val_labels,
                          data.num_classes, data.class_names)
    root, fingerprint = cache_root(cfg.cache_dir), _fingerprint(data, truth)
    runs = []
    for n in _iterations(cfg):
        train_cfg = full_config(cfg, n)
        key = run_key(fingerprint, train_cfg.to_dict())
        run = load(root, key)
        if run is None:
            start = time.perf_counter()
            progress = bar(f"full {n} it", n) if bar else None
            res = run_cycle(train_cfg, full_data, AcquisitionConfig(
                metric="random", region_size=cfg.region_size, budget_regions=1), progress=progress)
            run = {"iterations": n, "miou": res.metrics["miou"],
                   "per_class_iou": res.metrics["per_class_iou"],
                   "seconds": round(time.perf_counter() - start, 2)}
            store(root, key, run)
        runs.append(run)
        report(f"full        {n} iterations  mIoU {100 * run['miou']:6.2f}  {run['seconds']:7.1f}s")
    return _summary(cfg, runs, cached=False)


def _summary(cfg, runs: list[dict], cached: bool) -> dict:
    best = runs[-1]  # the longest run is the reference
    return {"miou": best["miou"], "per_class_iou": best["per_class_iou"], "iterations": best["iterations"],
            "labeled_fraction": 1.0, "runs": runs, "seed": cfg.seed, "cached": cached,
            "converged_within_1_point": abs(runs[0]["miou"] - runs[-1]["miou"]) <= 0.01
            if cfg.full_check else None}
