"""SVHN from its two MATLAB v5 files (read with scipy, not pickle), downloaded by torchvision
when missing and allowed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dcclib.data.dataset import STATS, ImageDataset, _fetch, _first_with, _make, _one_line
from dcclib.errors import UserError


def _tv_svhn(folder: Path) -> None:
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    for split in ("train", "test"):
        url, fname, md5 = SVHN.split_list[split]
        download_url(url, str(folder), fname, md5)


def load_svhn(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """SVHN .mat files from ``<root>/svhn``, ``<root>/SVHN`` or ``<root>`` (MATLAB v5, read with
    scipy, not pickle); label 10 means digit 0."""
    fnames = ["train_32x32.mat", "test_32x32.mat"]
    dirs = [root / "svhn", root / "SVHN", root]
    if _first_with(dirs, fnames) is None:
        _fetch(download, lambda: _tv_svhn(dirs[0]))
    folder = _first_with(dirs, fnames)
    if folder is None:
        raise UserError(
            f"SVHN not found under {root}: put train_32x32.mat and test_32x32.mat "
            f"in {dirs[0]} or run once with network access so they can be downloaded"
        )
    try:
        import scipy.io
    except ImportError:
        raise UserError("reading SVHN needs scipy: pip install scipy") from None
    out = []
    for fname in fnames:
        try:
            mat = scipy.io.loadmat(str(folder / fname), variable_names=["X", "y"])
            x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        except (OSError, ValueError, KeyError, NotImplementedError) as exc:
            raise UserError(f"cannot read SVHN file {folder / fname}: {_one_line(exc)}") from None
        if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y) or x.dtype != np.uint8:
            raise UserError(f"{folder / fname} does not hold SVHN images X [32,32,3,N] and labels y")
        y[y == 10] = 0
        out.append((x.transpose(3, 2, 0, 1), y))
    return _make(
        "svhn", out[0], out[1], [str(i) for i in range(10)], *STATS["svhn"], str(folder.resolve()), device
    )
