"""ImageNet subsets as group files written by ``data_prep``: ``<root>/imagenet{S}-{group}.npz``.

The paper's six groups at 32x32 are registered names (``group_loader``); ``match_group`` finds
the others: a known group at any resolution (``imagenet64-fish``), or any group whose file exists.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from dcclib.data.dataset import ImageDataset, Loader, _make, _one_line
from dcclib.errors import UserError

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

    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise bad("not an .npz archive")
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise bad("missing " + ", ".join(missing))
            a = {k: z[k] for k in _NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise bad(_one_line(exc)) from None
    xtr, ytr, xte, yte = a["train_images"], a["train_labels"], a["test_images"], a["test_labels"]
    c = len(a["class_names"]) if a["class_names"].ndim == 1 else 0
    checks = [
        (a["format_version"].shape == () and int(a["format_version"]) == 1, "format_version != 1"),
        (xtr.dtype == np.uint8 and xtr.ndim == 4 and xtr.shape[3] == 3, "train_images not [N,H,W,3]"),
        (xte.dtype == np.uint8 and xte.shape[1:] == xtr.shape[1:], "test_images shape differs"),
        (c > 0 and a["class_names"].dtype.kind == "U" and a["wnids"].shape == (c,), "class names"),
        (ytr.shape == (len(xtr),) and yte.shape == (len(xte),), "label counts"),
        (ytr.dtype.kind in "iu" and yte.dtype.kind in "iu", "labels not integers"),
        (a["mean"].shape == (3,) and a["std"].shape == (3,) and bool((a["std"] > 0).all()), "stats"),
    ]
    for ok, why in checks:
        if not ok:
            raise bad(why)
    if len(ytr) and (ytr.min() < 0 or ytr.max() >= c) or len(yte) and (yte.min() < 0 or yte.max() >= c):
        raise bad(f"labels outside 0..{c - 1}")
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
