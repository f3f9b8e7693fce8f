"""Find and read the official downsampled-ImageNet files (ImageNet32, ImageNet64, ...).

Two released forms hold the same arrays:

* pickled batches ``train_data_batch_1`` .. ``train_data_batch_10`` and ``val_data``;
* ``.npz`` files ``Imagenet32_train_npz/train_data_batch_*.npz`` and
  ``Imagenet32_val_npz/val_data.npz``.

Each holds ``data`` (N x 3*S*S uint8: the R, G and B planes, each S x S row-major) and
``labels`` (1..1000, in the order of ``imagenet32_label_order_wnids.txt``). Pickles are read by
``dcclib.safe_pickle.load_array_pickle`` (no code is executed) and npz files by
``dcclib.safe_pickle.load_npz`` (``allow_pickle=False``); both check declared sizes before
allocating, so a crafted file is a one-line error, not a large allocation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcclib.errors import UserError
from dcclib.safe_pickle import int_labels, load_array_pickle, load_npz

NUM_TRAIN_FILES = 10
TRAIN_STEMS: tuple[str, ...] = tuple(f"train_data_batch_{k}" for k in range(1, NUM_TRAIN_FILES + 1))
VAL_STEM = "val_data"
NUM_CLASSES = 1000


@dataclass(frozen=True)
class SourceFiles:
    """The eleven input files: ten training batches in order, then the validation file."""

    src: Path
    train: tuple[Path, ...]
    val: Path

    @property
    def all(self) -> tuple[Path, ...]:
        """Every input file in reading order (train 1..10, then val)."""
        return (*self.train, self.val)


def find_sources(src: str | Path) -> SourceFiles:
    """Walk ``src`` for the official file names, in either form.

    Where a file exists in both forms the ``.npz`` one is used; two copies of the same form
    (for example ImageNet32 and ImageNet64 downloads side by side) are an error, as is any
    missing file.
    """
    root = Path(src)
    if not root.is_dir():
        raise UserError(f"--src {root} is not a directory")
    wanted = {stem: stem for stem in (*TRAIN_STEMS, VAL_STEM)}
    wanted.update({f"{stem}.npz": stem for stem in (*TRAIN_STEMS, VAL_STEM)})
    found: dict[str, list[Path]] = {}
    seen: set[tuple[int, int]] = set()  # folders already walked: links may form cycles
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for filename in sorted(filenames):
            if filename in wanted:
                found.setdefault(filename, []).append(Path(dirpath) / filename)

    def pick(stem: str) -> Path:
        for name in (f"{stem}.npz", stem):
            paths = found.get(name, [])
            if len(paths) > 1:
                listed = ", ".join(str(p) for p in paths)
                raise UserError(
                    f"{name} found more than once under {root} ({listed}): point --src at one download"
                )
            if paths:
                return paths[0]
        raise UserError(f"missing input file {stem} (or {stem}.npz) under {root}")

    return SourceFiles(src=root, train=tuple(pick(s) for s in TRAIN_STEMS), val=pick(VAL_STEM))


def image_size_of(width: int) -> int:
    """S for rows of 3*S*S values; UserError if ``width`` is not of that form."""
    size = math.isqrt(width // 3) if width > 0 else 0
    if size == 0 or 3 * size * size != width:
        raise UserError(f"rows of {width} values are not 3*S*S pixels (3072 for 32x32 images)")
    return size


def _read_npz(path: Path) -> tuple[object, object]:
    arrays = load_npz(path, ("data", "labels"))  # sizes checked before anything is read
    if "data" not in arrays or "labels" not in arrays:
        raise UserError(f"{path} holds no 'data' and 'labels' arrays")
    return arrays["data"], arrays["labels"]


def _read_pickle(path: Path) -> tuple[object, object]:
    batch = load_array_pickle(path)
    if isinstance(batch, dict):
        batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise UserError(f"{path} is not a batch dict with 'data' and 'labels'")
    return batch["data"], batch["labels"]


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} {value.dtype}"
    return f"a {type(value).__name__}"


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one input file: ``data`` (N x 3*S*S uint8) and ``labels`` (int64 in 1..1000).

    Every problem (missing, truncated, wrong keys, wrong shape or dtype, labels out of range)
    raises UserError with a one-line message naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    data, labels = _read_npz(path) if path.suffix == ".npz" else _read_pickle(path)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.dtype != np.uint8:
        shape = getattr(data, "shape", type(data).__name__)
        dtype = getattr(data, "dtype", "?")
        raise UserError(f"{path}: 'data' must be an N x 3*S*S uint8 array, got {shape} {dtype}")
    try:
        image_size_of(data.shape[1])
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    array = int_labels(labels)  # checked before numpy converts anything: no nested or shared lists
    if array is None:
        raise UserError(f"{path}: 'labels' must be a flat list of integers, got {_kind(labels)}")
    labels = array
    if labels.shape[0] != data.shape[0]:
        raise UserError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 1 or labels.max() > NUM_CLASSES):
        raise UserError(f"{path}: labels must lie in 1..{NUM_CLASSES}, found {labels.min()}..{labels.max()}")
    return data, labels
