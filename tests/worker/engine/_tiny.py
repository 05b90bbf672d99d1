"""Tiny in-memory data for the engine tests: 32x32 images with a square (1) and a disc (2)."""

import numpy as np

from worker.engine.cycle import CycleData

NAMES = ["background", "square", "disc"]


def scenes(n: int, size: int = 32, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, truth = [], []
    for _ in range(n):
        lab = np.zeros((size, size), np.uint8)
        x, y = rng.integers(0, size // 2, 2)
        lab[y:y + size // 3, x:x + size // 3] = 1
        cx, cy = rng.integers(size // 4, 3 * size // 4, 2)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2] = 2
        img = np.stack([lab == 1, lab == 2, lab == 0], -1).astype(np.uint8) * 170
        images.append((img + rng.integers(0, 60, img.shape)).astype(np.uint8))
        truth.append(lab)
    return images, truth


def partial(truth: list[np.ndarray], fraction: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.where(rng.random(t.shape) < fraction, t, 255).astype(np.uint8) for t in truth]


def cycle_data(n: int = 6, fraction: float = 0.3, n_val: int = 2) -> CycleData:
    images, truth = scenes(n + n_val)
    return CycleData(images[:n], partial(truth[:n], fraction), images[n:], truth[n:], 3, list(NAMES))
