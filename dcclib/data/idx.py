"""MNIST and Fashion-MNIST from their four idx files (gzipped or not), downloaded by torchvision
when missing and allowed.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from dcclib.data.dataset import STATS, ImageDataset, _fetch, _make, _one_line
from dcclib.data.memory import check_fits
from dcclib.errors import UserError

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


_GZIP_MAX_RATIO = 1032  # deflate never expands data by more than this factor
_MAX_DIMS = 3  # MNIST's idx files: images [N, H, W], labels [N]
_CHUNK = 1 << 20


def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (gzipped or not) as a numpy array of its stated shape.

    The stated shape is checked before its bytes are read: a plain file must hold exactly that
    many, a gzipped one cannot hold more than deflate's limit allows, and the bytes are read in
    chunks, so no header makes this allocate more than the file really holds.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1] or head[2] != 0x08 or head[3] == 0:
                raise UserError(f"{path} is not an idx file of unsigned bytes")
            if head[3] > _MAX_DIMS:
                raise UserError(
                    f"{path} declares {head[3]} dimensions; MNIST idx files have 1 to {_MAX_DIMS}"
                )
            raw_dims = f.read(4 * head[3])
            if len(raw_dims) < 4 * head[3]:
                raise UserError(f"{path} is truncated: its header ends early")
            dims = struct.unpack(f">{head[3]}I", raw_dims)
            declared = math.prod(dims)
            room = size * _GZIP_MAX_RATIO if gz else size - 4 - len(raw_dims)
            if declared > room:
                holds = "can hold at most" if gz else "holds"
                raise UserError(
                    f"{path} is truncated or corrupt: shape {dims} needs {declared} bytes, "
                    f"the file {holds} {room}"
                )
            check_fits(path, declared)  # what a gzipped file may declare must also fit in memory
            body = bytearray()
            while len(body) < declared and (chunk := f.read(min(_CHUNK, declared - len(body)))):
                body += chunk
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read idx file {path}: {_one_line(exc)}") from None
    if len(body) != declared or extra:
        what = "truncated" if len(body) < declared else "longer than its shape"
        raise UserError(f"{path} is {what}: shape {dims} needs {declared} bytes")
    return np.frombuffer(body, np.uint8).reshape(dims)


_IDX_STEMS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _find_idx_files(dirs: list[Path]) -> dict[str, Path] | None:
    for d in dirs:
        found = {
            k: next((d / f for f in (n, n + ".gz") if (d / f).is_file()), None) for k, n in _IDX_STEMS.items()
        }
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def _tv_mnist(tv_name: str, root: Path) -> None:
    import torchvision.datasets as tvd  # writes the four idx files under <root>/<tv_name>/raw

    getattr(tvd, tv_name)(str(root), train=True, download=True)


def _load_idx_dataset(key: str, root: Path, device: torch.device, download: bool) -> ImageDataset:
    tv_name, alias = ("MNIST", "mnist") if key == "mnist" else ("FashionMNIST", "fashion-mnist")
    dirs = [root / tv_name / "raw", root / alias, root / key, root / tv_name, root]
    files = _find_idx_files(dirs)
    if files is None:
        _fetch(download, lambda: _tv_mnist(tv_name, root))
        files = _find_idx_files(dirs[:1])
    if files is None:
        raise UserError(
            f"{tv_name} not found under {root}: put the four idx files "
            f"(train-images-idx3-ubyte[.gz], ...) in {root / alias} "
            "or run once with network access so they can be downloaded"
        )
    a = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = a[f"{split}_x"], a[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or (y.size and y.max() > 9):
            raise UserError(f"{files[split + '_x'].parent}: {split} idx files do not match")
    names = [str(i) for i in range(10)] if key == "mnist" else FASHION_CLASSES
    return _make(
        key,
        (a["train_x"][:, None], a["train_y"]),
        (a["test_x"][:, None], a["test_y"]),
        names,
        *STATS[key],
        str(files["train_x"].parent.resolve()),
        device,
    )


def load_mnist(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """MNIST's idx files from ``<root>/MNIST/raw`` (torchvision's layout), ``<root>/mnist`` or
    ``<root>``; downloaded by torchvision when missing and ``download`` is set."""
    return _load_idx_dataset("mnist", root, device, download)


def load_fashion_mnist(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """Fashion-MNIST's idx files from ``<root>/FashionMNIST/raw``, ``<root>/fashion-mnist`` or
    ``<root>``; downloaded by torchvision when missing and ``download`` is set."""
    return _load_idx_dataset("fashionmnist", root, device, download)
