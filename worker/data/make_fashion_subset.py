"""Regenerate worker/data/fashion_mnist_subset.npz from the Debian package `dataset-fashion-mnist`.

    python -m worker.data.make_fashion_subset [--src /usr/share/datasets/fashion-mnist] [--per-class 100]

Takes the first `per_class` items of each class, in file order, from the train set (for training
scenes) and the first `val_per_class` of each class from the test set (for validation scenes), so the
scenes' train and val splits never share a garment. No randomness: the same files give the same subset.
Fashion-MNIST is © 2017 Zalando SE, MIT licence (see worker/data/LICENSE-fashion-mnist).
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).with_name("fashion_mnist_subset.npz")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd): magic 0x00 0x00 <dtype 0x08 = uint8> <ndim>, big-endian int32 dims, data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def first_per_class(images: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    keep.sort()
    return images[keep], labels[keep]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEBIAN_DIR)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    train_x, train_y = first_per_class(read_idx(args.src / "train-images-idx3-ubyte.gz"),
                                       read_idx(args.src / "train-labels-idx1-ubyte.gz"), args.per_class)
    val_x, val_y = first_per_class(read_idx(args.src / "t10k-images-idx3-ubyte.gz"),
                                   read_idx(args.src / "t10k-labels-idx1-ubyte.gz"), args.val_per_class)
    np.savez_compressed(args.out, train_items=train_x, train_labels=train_y, val_items=val_x,
                        val_labels=val_y)
    print(f"{args.out}: {len(train_x)} train + {len(val_x)} val items, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
