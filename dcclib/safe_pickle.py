"""Read the array files of official dataset releases without executing code or allocating more
than the file can hold.

CIFAR-10/100 python batches and the ImageNet32 batches are pickles of plain dicts holding
numpy arrays, lists, strings and numbers. ``pickle.load`` would run whatever a file names, and
even a harmless-looking pickle can declare a 4 TiB bytes object or array, or share one list a
million times; ``load_array_pickle`` rebuilds only builtins and numeric numpy arrays and keeps
what it builds within a budget proportional to the file's size, so a tampered file raises a
one-line UserError instead of running code, exhausting memory or hanging.

``load_npz`` reads ``.npz`` archives (``allow_pickle=False``) after checking every member's
declared size against what the archive can hold; ``int_labels`` turns a label list into an
array only when it is a flat list of integers.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dcclib.errors import UserError

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}  # protocol 5
_ARRAY_KINDS = "biufcSU"  # numeric, bytes and unicode arrays: no objects, records or void
_OPCODE_COST = 128  # bytes charged per opcode: the most one opcode builds (an empty dict is 64)
_MAX_KEYS = 4096  # dict and set sizes: batch files hold a handful of keys (no hash flooding)
_MAX_MEMO = 1 << 32  # memo indices, as the binary opcodes allow
_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,  # UnicodeDecodeError included
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    struct.error,
    OverflowError,
)

_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
)


def _why(exc: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    if isinstance(exc, EOFError):
        return "the file ends early"
    why = " ".join(str(exc).split()) or type(exc).__name__
    return why if len(why) <= 200 else why[:197] + "..."


class _Refused(pickle.UnpicklingError):
    """A pickle that is well-formed but not a plain batch of arrays (or too costly to build)."""


def _charged(load: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: _ArrayOnlyUnpickler) -> None:
        self.charge(_OPCODE_COST)
        load(self)

    return run


_NDARRAY = object()  # what the global numpy.ndarray resolves to: only _reconstruct accepts it


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """numpy.dtype for the simple type codes a batch file uses ('u1', 'i8', 'f8', 'S10', ...)."""
    if not isinstance(spec, str) or len(spec) > 8 or spec[:1] not in tuple(_ARRAY_KINDS):
        raise _Refused(f"refusing dtype {spec!r:.60}")
    return np.dtype(spec, bool(align), bool(copy))


def _limit(entries: int) -> None:
    if entries > _MAX_KEYS:
        raise _Refused(f"a dict or set of more than {_MAX_KEYS} entries")


class _ArrayOnlyUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (which reads a declared length without allocating it first),
    restricted: globals resolve only to safe stand-ins for numpy's array, dtype and scalar
    constructors and latin-1 ``_codecs.encode``; BUILD applies only to arrays and dtypes and
    checks an array's state before numpy sees it; items are added only to builtin containers,
    dicts and sets stay small; and everything built is charged to a budget of 4 bytes per byte
    of the file (plus 16 MiB). Its ``dispatch`` table (set below the class) runs these methods."""

    def __init__(self, data: bytes, encoding: str) -> None:
        super().__init__(io.BytesIO(data), encoding=encoding)
        self._budget = 4 * len(data) + (16 << 20)

    def charge(self, nbytes: int) -> None:
        """Count `nbytes` against the budget; refuse the file once it is spent."""
        self._budget -= nbytes
        if self._budget < 0:
            raise _Refused("it builds far more data than the file holds")

    def find_class(self, module: str, name: str) -> Any:
        """A stand-in for the allowed globals; an UnpicklingError for any other."""
        key = (module, name)
        if key in _RECONSTRUCT:
            return self._reconstruct
        if key in _SCALAR:
            return self._scalar
        if key in _FROMBUFFER:
            return self._frombuffer
        if key == ("numpy", "ndarray"):
            return _NDARRAY
        if key == ("numpy", "dtype"):
            return _dtype
        if key == ("_codecs", "encode"):
            return self._encode
        raise _Refused(f"refusing to load global {module}.{name}")

    def _reconstruct(self, subtype: Any, shape: Any, code: Any) -> np.ndarray:
        if subtype is not _NDARRAY or not isinstance(shape, tuple) or math.prod(shape) != 0:
            raise _Refused("refusing an array that is not built from its pickled state")
        return np.empty(0, np.int8)  # BUILD gives it its state (see load_build)

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        if (
            not isinstance(dtype, np.dtype)
            or dtype.kind not in _ARRAY_KINDS
            or not isinstance(data, bytes | str)
        ):
            raise _Refused("refusing a numpy scalar that is not a plain number")
        raw = data.encode("latin1") if isinstance(data, str) else data
        if len(raw) != dtype.itemsize:
            raise _Refused(f"a numpy {dtype} scalar of {len(raw)} bytes")
        self.charge(len(raw))
        return np.frombuffer(raw, dtype)[0]

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        self.charge(_check_array_state((shape, dtype, order, buf)))
        array = np.frombuffer(buf, dtype)
        array = array if array.flags.writeable else array.copy()  # bytes give a read-only view
        return array.reshape(shape, order="F" if order == "F" else "C")

    def _encode(self, obj: Any, encoding: str = "utf-8") -> bytes:
        if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
            raise _Refused("refusing _codecs.encode other than of a string to latin1")
        self.charge(len(obj))
        return obj.encode("latin1")

    def _target(self, kind: type) -> Any:
        """The container on top of the stack, which must be a `kind` (dict, list or set)."""
        target = self.stack[-1]
        if type(target) is not kind:
            raise _Refused(f"refusing to add items to a {type(target).__name__}")
        return target

    def load_build(self) -> None:
        """BUILD: an array's or a dtype's state, checked before numpy uses it."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.ndarray):
            self.charge(_check_array_state(state))
        elif not isinstance(inst, np.dtype) or not _plain_dtype_state(state):
            raise _Refused(f"refusing to set the state of a {type(inst).__name__}")
        inst.__setstate__(state)

    def load_put(self) -> None:
        """PUT: a text memo index, kept in the range of the binary opcodes (no hash flooding)."""
        i = int(self.readline()[:-1])
        if not 0 <= i < _MAX_MEMO:
            raise _Refused(f"memo index {i} out of range")
        self.memo[i] = self.stack[-1]

    def load_setitem(self) -> None:
        """SETITEM, on dicts only."""
        value, key = self.stack.pop(), self.stack.pop()
        target = self._target(dict)
        _limit(len(target) + 1)
        target[key] = value

    def load_setitems(self) -> None:
        """SETITEMS, on dicts only."""
        items = self.pop_mark()
        target = self._target(dict)
        _limit(len(target) + len(items) // 2)
        target.update(zip(items[::2], items[1::2]))

    def load_dict(self) -> None:
        """DICT."""
        items = self.pop_mark()
        _limit(len(items) // 2)
        self.append(dict(zip(items[::2], items[1::2])))

    def load_append(self) -> None:
        """APPEND, on lists only."""
        value = self.stack.pop()
        self._target(list).append(value)

    def load_appends(self) -> None:
        """APPENDS, on lists only."""
        items = self.pop_mark()
        self._target(list).extend(items)

    def load_additems(self) -> None:
        """ADDITEMS, on sets only."""
        items = self.pop_mark()
        target = self._target(set)
        _limit(len(target) + len(items))
        target.update(items)

    def load_frozenset(self) -> None:
        """FROZENSET."""
        items = self.pop_mark()
        _limit(len(items))
        self.append(frozenset(items))


# every opcode charged, and run by the method of that name (the restricted one where overridden)
_ArrayOnlyUnpickler.dispatch = {
    code: _charged(getattr(_ArrayOnlyUnpickler, load.__name__))
    for code, load in pickle._Unpickler.dispatch.items()
}


def _check_array_state(state: Any) -> int:
    """The bytes an ndarray state (version, shape, dtype, fortran, data) holds, once checked:
    a numeric dtype and exactly as many bytes as the shape declares."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _Refused("an array state that is not (version, shape, dtype, order, data)")
    shape, dtype, _, data = state[-4:]
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        raise _Refused(f"an array shape {shape!r:.60}")
    if not isinstance(dtype, np.dtype) or dtype.kind not in _ARRAY_KINDS or dtype.itemsize == 0:
        raise _Refused(f"refusing an array of dtype {dtype!r:.60}")
    if not isinstance(data, bytes | bytearray | str) or len(data) != math.prod(shape) * dtype.itemsize:
        size = len(data) if isinstance(data, bytes | bytearray | str) else type(data).__name__
        raise _Refused(f"an array of shape {shape} {dtype} with {size} bytes of data")
    return len(data)


def _plain_dtype_state(state: Any) -> bool:
    """A dtype state without subarrays, fields or names (version, byte order, None x 3, ...)."""
    return isinstance(state, tuple) and len(state) >= 8 and state[2:5] == (None, None, None)


def load_array_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Load a pickle that may only contain builtins and numeric numpy arrays.

    Raises UserError (one line) for a missing, truncated or non-conforming file, including one
    that would build far more than its own size (see _ArrayOnlyUnpickler).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    data = path.read_bytes()
    try:
        return _ArrayOnlyUnpickler(data, encoding=encoding).load()
    except _ERRORS as exc:
        raise UserError(f"{path} is not a readable dataset batch file ({_why(exc)})") from None


def int_labels(obj: Any) -> np.ndarray | None:
    """`obj` as an int64 array when it is a flat list or tuple of integers or a 1-D integer
    array; None otherwise. Checked element by element before numpy converts anything, so a
    nested or shared list cannot make numpy build a large array."""
    if isinstance(obj, np.ndarray):
        ok = obj.ndim == 1 and obj.dtype.kind in "iu"
        return obj.astype(np.int64) if ok and (obj.size == 0 or obj.max() <= np.iinfo(np.int64).max) else None
    if not isinstance(obj, list | tuple) or not all(type(v) is int or isinstance(v, np.integer) for v in obj):
        return None
    try:
        return np.array(obj, dtype=np.int64)
    except OverflowError:
        return None


# ---------------------------------------------------------------------------------- .npz files
_DEFLATE_MAX_RATIO = 1032  # deflate never expands data by more than this factor


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int) -> None:
    """Refuse a member whose declared sizes exceed what the archive can hold."""
    if info.flag_bits & 0x1:
        raise UserError(f"member {info.filename} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        ok = info.file_size == info.compress_size <= archive_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        ok = (
            info.compress_size <= archive_size
            and info.file_size <= info.compress_size * _DEFLATE_MAX_RATIO + 64
        )
    else:
        raise UserError(f"member {info.filename} uses compression method {info.compress_type}")
    if not ok:
        raise UserError(f"member {info.filename} declares {info.file_size} bytes the archive cannot hold")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise UserError(f"member {info.filename} is a .npy file of version {version}")
        header = f.tell()
    if dtype.kind not in _ARRAY_KINDS or dtype.itemsize == 0:
        raise UserError(f"member {info.filename} holds {dtype} values, not numbers or text")
    if math.prod(shape) * dtype.itemsize != info.file_size - header:
        raise UserError(
            f"member {info.filename} declares shape {shape} of {dtype} but holds "
            f"{info.file_size - header} bytes"
        )


def load_npz(path: str | Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays `keys` of an .npz archive that it holds (a missing key is left out).

    Every member's declared size is checked against the archive before anything is read
    (no member may claim more than deflate can expand, no array more than its member holds),
    and object arrays are refused; anything wrong is a UserError (one line) naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            out = {}
            for key in keys:
                info = members.get(f"{key}.npy")
                if info is not None:
                    _member_header(zf, info, size)
                    with zf.open(info) as f:
                        out[key] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except UserError as exc:
        raise UserError(f"{path} is not a readable .npz archive ({exc})") from None
    except (*_ERRORS, *_ZIP_ERRORS) as exc:
        raise UserError(f"{path} is not a readable .npz archive ({_why(exc)})") from None
