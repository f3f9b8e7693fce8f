"""CIFAR-10 and CIFAR-100 from the official python batches, read with the safe unpickler (no
pickled code runs), downloaded by torchvision when missing and allowed. Without the batches,
``cifar10`` falls back to a JPEG copy in ``<root>/cifar10-jpeg`` (an image folder, see
``dcclib.data.folder``) normalised with CIFAR-10's statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcclib.data.dataset import STATS, ImageDataset, _fetch, _first_with, _make
from dcclib.data.folder import load_folder
from dcclib.errors import UserError
from dcclib.safe_pickle import int_labels, load_array_pickle

_CIFAR = {  # folder, url, md5, train files, test files, meta file, label key, names key
    "cifar10": (
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": (
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        ["train"],
        ["test"],
        "meta",
        "fine_labels",
        "fine_label_names",
    ),
}


def _pickled_dict(path: Path) -> dict[str, Any]:
    obj = load_array_pickle(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a CIFAR python batch (expected a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _load_cifar(key: str, root: Path, device: torch.device, download: bool) -> ImageDataset:
    folder_name, url, md5, train_files, test_files, meta_file, label_key, names_key = _CIFAR[key]
    needed = [*train_files, *test_files, meta_file]
    dirs = [root / folder_name, root]
    jpeg = root / "cifar10-jpeg"
    if key == "cifar10" and _first_with(dirs, needed) is None and jpeg.is_dir():
        # the JPEG copy of CIFAR-10 (train/<class>/ or train.tar.gz), with CIFAR-10's statistics
        return load_folder(jpeg, device, name="cifar10", stats=STATS["cifar10"])
    if _first_with(dirs, needed) is None:
        from torchvision.datasets import utils as tv_utils

        _fetch(download, lambda: tv_utils.download_and_extract_archive(url, str(root), md5=md5))
    folder = _first_with(dirs, needed)
    if folder is None:
        raise UserError(
            f"{key} not found at {dirs[0]}: put the official python-version archive "
            f"({url.rsplit('/', 1)[1]}) there unpacked, or pass a JPEG copy folder "
            "(train/<class>/, test/<class>/) as the dataset"
        )

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            d = _pickled_dict(folder / f)
            x, y = d.get("data"), int_labels(d.get(label_key))
            if (
                not isinstance(x, np.ndarray)
                or x.dtype != np.uint8
                or x.ndim != 2
                or x.shape[1] != 3072
                or y is None
                or len(y) != len(x)
            ):
                raise UserError(
                    f"{folder / f} is not a CIFAR python batch ('data' N x 3072 uint8 and "
                    f"'{label_key}' a flat list of N integers)"
                )
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    train, test = read(train_files), read(test_files)
    raw_names = _pickled_dict(folder / meta_file).get(names_key)
    if not isinstance(raw_names, list | tuple) or not all(isinstance(n, bytes | str) for n in raw_names):
        raise UserError(f"{folder / meta_file}: '{names_key}' is not a list of class names")
    names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in raw_names]
    labels = np.concatenate([train[1], test[1]])
    if not names or (labels.size and (labels.min() < 0 or labels.max() >= len(names))):
        raise UserError(f"{folder / meta_file}: '{names_key}' does not cover the labels")
    return _make(key, train, test, names, *STATS[key], str(folder.resolve()), device)


def load_cifar10(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (or ``<root>``), else ``<root>/cifar10-jpeg``."""
    return _load_cifar("cifar10", root, device, download)


def load_cifar100(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python`` (or ``<root>``)."""
    return _load_cifar("cifar100", root, device, download)
