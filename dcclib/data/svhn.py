"""SVHN from its two MATLAB v5 files (read with scipy, not pickle), downloaded by torchvision
when missing and allowed.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from dcclib.data.dataset import STATS, ImageDataset, _fetch, _first_with, _make, _one_line
from dcclib.errors import UserError

# what scipy raises on a corrupt file (besides MatReadError), or check_mat5 on a refused one
_MAT_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    NotImplementedError,
    EOFError,
    OverflowError,
    struct.error,
    zlib.error,
)


def _tv_svhn(folder: Path) -> None:
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    for split in ("train", "test"):
        url, fname, md5 = SVHN.split_list[split]
        download_url(url, str(folder), fname, md5)


_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MI_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # numeric data types
_NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS
_OPAQUE_CLASS = 17  # has no dimensions or name
_ZLIB_MAX_RATIO = 1032  # deflate never expands data by more than this factor
_HEAD = 512  # the start of a variable that holds its flags, dimensions, name and data tag


def _mat_element(body: bytes, offset: int, size: int, order: str) -> tuple[int, int, int, int]:
    """(type, byte count, data offset, next offset) of the element at `offset` of a variable of
    `size` bytes whose first bytes are `body`, in the long or the small (<= 4 bytes) format."""
    if offset + 8 > min(len(body), size):
        raise ValueError("a variable's header is truncated or too long")
    first, second = struct.unpack(order + "II", body[offset : offset + 8])
    if first >> 16:  # small data element: the count in the upper half, the data in `second`
        if first >> 16 > 4:
            raise ValueError("a small data element of more than 4 bytes")
        return first & 0xFFFF, first >> 16, offset + 4, offset + 8
    if offset + 8 + second > size:
        raise ValueError(f"an element declares {second} bytes, more than its variable holds")
    return first, second, offset + 8, offset + 8 + (second + 7) // 8 * 8


def _check_mat_variable(body: bytes, size: int, order: str, wanted: tuple[str, ...]) -> None:
    """Check a variable's flags, dimensions and name (what scipy reads of every variable) and,
    for the `wanted` ones, that they are real numeric arrays whose data element holds exactly
    the bytes their dimensions declare."""
    kind, count, at, offset = _mat_element(body, 0, size, order)
    if (kind, count) != (_MI_UINT32, 8):
        raise ValueError("a variable without array flags")
    flags = struct.unpack(order + "I", body[at : at + 4])[0]
    if flags & 0xFF == _OPAQUE_CLASS:
        return
    kind, count, at, offset = _mat_element(body, offset, size, order)
    if kind != _MI_INT32 or count % 4 or not 4 <= count <= 128:
        raise ValueError("a variable without valid dimensions")
    dims = struct.unpack(f"{order}{count // 4}i", body[at : at + count])
    kind, count, at, offset = _mat_element(body, offset, size, order)
    if kind != _MI_INT8 or count > 255 or at + count > len(body):
        raise ValueError("a variable without a valid name")
    if body[at : at + count].decode("latin1") not in wanted:
        return
    if flags & 0xFF not in _NUMERIC_CLASSES or flags & 0x800 or min(dims) < 0:
        raise ValueError("X or y is not a real numeric array")
    kind, count, at, offset = _mat_element(body, offset, size, order)
    if kind not in _MI_ITEMSIZE or count != math.prod(dims) * _MI_ITEMSIZE[kind]:
        raise ValueError(f"X or y of dimensions {list(dims)} holds {count} bytes of data type {kind}")


def check_mat5(path: Path, wanted: tuple[str, ...]) -> None:
    """Refuse (ValueError), before scipy reads it, a file that is not a MATLAB 5 file or whose
    declared sizes exceed what it holds: scipy allocates what an element declares before
    reading it. No declared size may exceed the file (for a compressed variable: 1032 times its
    compressed bytes, deflate's limit); the `wanted` variables must be real numeric arrays."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(128)
        if len(header) < 128 or 0 in header[:4] or header[126:128] not in (b"IM", b"MI"):
            raise ValueError("not a MATLAB 5 file")
        order = "<" if header[126:128] == b"IM" else ">"
        if struct.unpack(order + "H", header[124:126])[0] != 0x0100:
            raise ValueError("not a MATLAB 5 file (version 7.3 files are HDF5: save with -v7)")
        position = 128
        while position < size:
            tag = f.read(8)
            kind, length = struct.unpack(order + "II", tag) if len(tag) == 8 else (0, 0)
            if kind not in (_MI_MATRIX, _MI_COMPRESSED) or not 0 < length <= size - position - 8:
                raise ValueError(f"a truncated or corrupt element at byte {position}")
            if kind == _MI_COMPRESSED:  # one variable, deflated: its first bytes are enough
                body = zlib.decompressobj().decompress(f.read(min(length, 1 << 16)), _HEAD)
                kind, count, at, _ = _mat_element(body, 0, length * _ZLIB_MAX_RATIO, order)
                if kind != _MI_MATRIX:
                    raise ValueError(f"a compressed element at byte {position} is not a variable")
                _check_mat_variable(body[at:], count, order, wanted)
            else:
                _check_mat_variable(f.read(min(length, _HEAD)), length, order, wanted)
            position += 8 + length
            f.seek(position)


def load_svhn(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """SVHN .mat files from ``<root>/svhn``, ``<root>/SVHN`` or ``<root>`` (MATLAB v5, read with
    scipy, not pickle, after ``check_mat5``); label 10 means digit 0."""
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
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise UserError("reading SVHN needs scipy: pip install scipy") from None
    out = []
    for fname in fnames:
        path = folder / fname
        try:
            check_mat5(path, ("X", "y"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a variable scipy cannot read becomes "Read error: ..."
                mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
            x, y = mat["X"], mat["y"]
        except (*_MAT_ERRORS, MatReadError) as exc:
            raise UserError(f"cannot read SVHN file {path}: {_one_line(exc)}") from None
        for v in (x, y):
            if isinstance(v, str):
                raise UserError(f"cannot read SVHN file {path}: {_one_line(ValueError(v))}")
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)) or y.dtype.kind not in "iuf":
            raise UserError(f"{path} does not hold SVHN images X [32,32,3,N] and labels y")
        y = y.reshape(-1)
        if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y) or x.dtype != np.uint8:
            raise UserError(f"{path} does not hold SVHN images X [32,32,3,N] and labels y")
        if not np.isin(y, np.arange(11)).all():
            raise UserError(f"{path}: labels y must be the digits 1..10 (10 for 0)")
        y = y.astype(np.int64)
        y[y == 10] = 0
        out.append((x.transpose(3, 2, 0, 1), y))
    return _make(
        "svhn", out[0], out[1], [str(i) for i in range(10)], *STATS["svhn"], str(folder.resolve()), device
    )
