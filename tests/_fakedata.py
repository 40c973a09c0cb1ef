"""Writers of tiny datasets in torchvision's on-disk formats (the real loaders read them)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _batch(rng: np.random.Generator, n: int, num_classes: int, label_key: str) -> dict:
    return {
        "data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
        label_key: [int(v) for v in rng.integers(0, num_classes, size=n)],
    }


def write_cifar10(root: Path, n_per_batch: int = 6, n_test: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(_batch(rng, n_per_batch, 10, "labels")))
    (folder / "test_batch").write_bytes(pickle.dumps(_batch(rng, n_test, 10, "labels")))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return root


def write_cifar100(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train").write_bytes(pickle.dumps(_batch(rng, n_train, 100, "fine_labels")))
    (folder / "test").write_bytes(pickle.dumps(_batch(rng, n_test, 100, "fine_labels")))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    return root


def write_svhn(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> Path:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)  # SVHN stores the digit 0 as 10
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
    return root
