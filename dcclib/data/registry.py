"""Dataset names -> loaders, and ``load_dataset``, the one entry point.

Every loader has one signature, ``Loader``: ``(root, device, download) -> ImageDataset``. Names
are matched case-insensitively and without ``-``, ``_`` or spaces (``CIFAR-10`` is ``cifar10``).
A name that is not registered may still be an ImageNet group file (``imagenet32.match_group``)
or an image folder (``folder.load_folder``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from dcclib.data.cifar import load_cifar10, load_cifar100
from dcclib.data.dataset import ImageDataset, Loader
from dcclib.data.embedded import load_embedded
from dcclib.data.folder import load_folder
from dcclib.data.idx import load_fashion_mnist, load_mnist
from dcclib.data.imagenet32 import IMAGENET_GROUPS, group_loader, load_group, match_group
from dcclib.data.svhn import load_svhn
from dcclib.data.variants import DCC_CIFAR100, load_cifar100_dcc_norm
from dcclib.errors import UserError

_LOADERS: dict[str, tuple[str, Loader]] = {}  # normalised name -> (name, loader), in order


def _normalise(name: str) -> str:
    return re.sub(r"[-_\s]", "", name.lower())


def register(name: str) -> Callable[[Loader], Loader]:
    """A decorator that registers a ``(root, device, download)`` loader under ``name``.

    ``@register("my-set")`` on a loader makes ``load_dataset("my-set")`` (or ``"MySet"``) call
    it. A name that is already registered (after normalisation) raises ValueError.
    """
    key = _normalise(name)

    def add(loader: Loader) -> Loader:
        if not key:
            raise ValueError(f"dataset name {name!r} is empty after normalisation")
        if key in _LOADERS:
            raise ValueError(f"dataset {name!r} is already registered as {_LOADERS[key][0]!r}")
        _LOADERS[key] = (name, loader)
        return loader

    return add


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, in registration order (the built-ins first)."""
    return tuple(name for name, _ in _LOADERS.values())


def get_loader(name: str) -> Loader | None:
    """The loader registered under ``name`` (matched as ``load_dataset`` does), or None."""
    entry = _LOADERS.get(_normalise(name))
    return entry[1] if entry else None


_BUILTINS: tuple[tuple[str, Loader], ...] = (
    ("embedded-mnist", load_embedded),
    ("mnist", load_mnist),
    ("fashionmnist", load_fashion_mnist),
    ("svhn", load_svhn),
    ("cifar10", load_cifar10),
    ("cifar100", load_cifar100),
    (DCC_CIFAR100, load_cifar100_dcc_norm),
    *((f"imagenet32-{g}", group_loader(f"imagenet32-{g}")) for g in IMAGENET_GROUPS),
)
for _name, _loader in _BUILTINS:
    register(_name)(_loader)

DATASET_NAMES: tuple[str, ...] = dataset_names()  # the built-in names


def default_data_root() -> Path:
    """``$DCC_DATA_ROOT`` if set, else ``./data``: where named datasets are looked up."""
    return Path(os.environ.get("DCC_DATA_ROOT") or "data").expanduser()


def load_dataset(
    name: str | os.PathLike[str] | None = None,
    data_root: str | Path | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> ImageDataset:
    """Load a named dataset (case-insensitive) or an image folder; None is the embedded MNIST.

    A known name wins over a same-named folder (pass ``./mnist`` for the folder). A folder is
    looked up as given, then under ``data_root``.
    """
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    dev = torch.device(device)
    if name is None:
        return load_embedded(root, dev, download)
    raw = os.fspath(name)
    key = _normalise(raw)
    if key in _LOADERS:
        return _LOADERS[key][1](root, dev, download)
    group = match_group(key, root)
    if group is not None:
        return load_group(group, root, dev)
    for cand in (Path(raw).expanduser(), root / raw):
        if raw and cand.is_dir():
            return load_folder(cand, dev)
    raise UserError(
        f"unknown dataset '{raw}'; choose one of {', '.join(dataset_names())}, "
        "or give a folder with train/<class>/ and test/<class>/"
    )
