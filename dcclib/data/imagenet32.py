"""ImageNet subsets as group files written by ``data_prep``: ``<root>/imagenet{S}-{group}.npz``.

The paper's six groups at 32x32 are registered names (``group_loader``); ``match_group`` finds
the others: a known group at any resolution (``imagenet64-fish``), or any group whose file exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from dcclib.data.dataset import ImageDataset, Loader, _make
from dcclib.data.memory import AS_FLOAT32, check_fits, npz_declared_bytes
from dcclib.errors import UserError
from dcclib.safe_pickle import load_npz

IMAGENET_GROUPS = ("automobile", "terrier", "fish", "lizard", "truck", "insect")
_NPZ_KEYS = (
    "train_images",
    "train_labels",
    "test_images",
    "test_labels",
    "wnids",
    "class_names",
    "mean",
    "std",
    "group",
    "format_version",
)


def _group_problem(a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays of a group file, or None; each check assumes those before it."""
    version, names, mean, std = a["format_version"], a["class_names"], a["mean"], a["std"]
    xtr, ytr, xte, yte = a["train_images"], a["train_labels"], a["test_images"], a["test_labels"]
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != 1:
        return "format_version != 1"
    if xtr.dtype != np.uint8 or xtr.ndim != 4 or xtr.shape[3] != 3:
        return "train_images not [N,H,W,3]"
    if xte.dtype != np.uint8 or xte.shape[1:] != xtr.shape[1:]:
        return "test_images shape differs"
    c = len(names) if names.ndim == 1 else 0
    if c == 0 or names.dtype.kind != "U" or a["wnids"].shape != (c,):
        return "class names"
    if ytr.shape != (len(xtr),) or yte.shape != (len(xte),):
        return "label counts"
    if ytr.dtype.kind not in "iu" or yte.dtype.kind not in "iu":
        return "labels not integers"
    if any(y.size and (y.min() < 0 or y.max() >= c) for y in (ytr, yte)):
        return f"labels outside 0..{c - 1}"
    if mean.shape != (3,) or std.shape != (3,) or mean.dtype.kind != "f" or std.dtype.kind != "f":
        return "stats"
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        return "stats"
    return None


def load_group(name: str, root: Path, device: torch.device) -> ImageDataset:
    """A group file written by ``data_prep`` (uint8 NHWC images, labels, names, statistics)."""
    path = root / f"{name}.npz"
    if not path.is_file():
        raise UserError(
            f"{name} not found at {path}: build it with `python -m data_prep "
            f"--src <ImageNet32 download> --out {root}`"
        )

    def bad(why: str) -> UserError:
        return UserError(f"{path} is not a valid {name} file ({why}); rebuild it with data_prep")

    # no more than memory allows (images become float32 where they are converted: the device)
    on_cpu = torch.device(device).type == "cpu"
    check_fits(path, npz_declared_bytes(path, _NPZ_KEYS), AS_FLOAT32 if on_cpu else 1)
    try:
        a = load_npz(path, _NPZ_KEYS)
    except UserError as exc:
        raise UserError(f"{exc}; rebuild it with data_prep") from None
    missing = [k for k in _NPZ_KEYS if k not in a]
    if missing:
        raise bad("missing " + ", ".join(missing))
    problem = _group_problem(a)
    if problem:
        raise bad(problem)
    xtr, ytr, xte, yte = a["train_images"], a["train_labels"], a["test_images"], a["test_labels"]
    return _make(
        name,
        (xtr, ytr),
        (xte, yte),
        [str(s) for s in a["class_names"]],
        tuple(a["mean"]),
        tuple(a["std"]),
        str(path.resolve()),
        device,
        channels_last=True,
    )


def match_group(key: str, root: Path) -> str | None:
    """The group file's name (``imagenet{S}-{group}``) that a normalised dataset key such as
    ``imagenet64fish`` names: a known group, or any group whose file exists under ``root``."""
    m = re.fullmatch(r"imagenet(\d+)([a-z]+)", key)
    if m:
        full = f"imagenet{m[1]}-{m[2]}"
        if m[2] in IMAGENET_GROUPS or (root / f"{full}.npz").is_file():
            return full
    return None


def group_loader(name: str) -> Loader:
    """A loader ``(root, device, download)`` of the group file ``<root>/<name>.npz`` (it is
    built by ``data_prep``, never downloaded)."""

    def load(root: Path, device: torch.device, download: bool) -> ImageDataset:
        return load_group(name, root, device)

    load.__name__ = load.__qualname__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"The group file <root>/{name}.npz written by data_prep."
    return load
