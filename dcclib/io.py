"""Files: synthetic sets and checkpoints (safetensors + JSON metadata), JSON and JSONL.

Every write goes to a temporary file `.<name>.tmp-<8 characters>` in the target folder, gets the
permissions of an ordinary new file (0666 less the umask), and is then renamed over the target
(`os.replace` is atomic on one file system), so a crash leaves the old file or the new one, never
half of one; `clean_stale_temp` removes what a kill during a write left behind. Nothing here
unpickles: safetensors holds raw tensors, metadata is JSON.

Reading trusts nothing: `check_synthetic` validates a whole saved set (tensor names, dtypes,
shapes, finiteness, label range, every metadata field's type) and is what `load_synthetic`, and
so `dcc info` and `dcc evaluate`, use; `load_checkpoint` checks what it can without the run's
settings (`dcclib.runs` checks the shapes against them).

Why one module of about 480 lines: it is the one place where this project's bytes meet the
disk, and each hostile-file check (regular files only, size bounds, metadata limits) sits next to
the reader it guards; splitting writers from readers would separate the two halves of one format.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import re
import reprlib
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dcclib.errors import UserError

FORMAT_VERSION = 1
_META_KEY = "dcc"  # the safetensors header entry that holds our JSON metadata
# dcclib writes a few KiB of metadata (config, versions, accuracies); a header entry larger than
# this was not written by it, and is refused rather than shown or parsed
MAX_METADATA_CHARS = 1 << 20
MAX_JSON_BYTES = 64 << 20  # a JSON or JSON-lines file read here is refused beyond this size
_TEMP_INFIX = ".tmp-"
# atomic_path's temporary files: `.<name>.tmp-<8 characters>`, and `.<name>.<8 characters>.tmp`
# as written before version 0.2 (tempfile's random names use these 37 characters)
_TEMP_NAME = re.compile(r"\.(?P<target>.+)(?:\.tmp-[a-z0-9_]{8}|\.[a-z0-9_]{8}\.tmp)")


def _file_mode() -> int:
    """The permissions of an ordinary new file: 0666 less the process's umask."""
    umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` only on success.

    The temporary file is `.<name>.tmp-<8 characters>` (see `clean_stale_temp`); the file that
    replaces `target` has the permissions of an ordinary new file (0666 less the umask).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{_TEMP_INFIX}", suffix="", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_temp_name(name: str) -> bool:
    """Whether `name` is that of a temporary file written by `atomic_path`."""
    return _TEMP_NAME.fullmatch(name) is not None


def clean_stale_temp(folder: str | Path) -> list[Path]:
    """Remove the temporary files of `atomic_path` writes in `folder` (not in its sub-folders)
    that a kill interrupted; returns the paths removed.

    Call it only while no other process writes into `folder` (for a run folder: holding its
    lock), as a write in progress uses such a file too. A missing folder has nothing to clean.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return sorted(removed)


def _kind_of(mode: int) -> str:
    """'a folder', 'a FIFO', ... for a file mode that is not a regular file's."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    kinds += ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular(path: str | Path) -> None:
    """A UserError unless `path` is missing or a regular file (a FIFO would block a reader for
    ever, a device could be endless): the one line says what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is {_kind_of(mode)}, not a regular file; remove it or give another path")


def read_regular_bytes(path: str | Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file `path`, opened without blocking (a FIFO is refused, never
    waited on); a UserError when it is not a regular file or is larger than `limit` bytes.
    FileNotFoundError when it does not exist (callers say what that means)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise UserError(f"{path} is a folder, not a regular file; give another path") from None
        raise UserError(f"cannot read {path} ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UserError(
                f"{path} is {_kind_of(info.st_mode)}, not a regular file; remove it or give another path"
            )
        if info.st_size > limit:
            raise UserError(f"{path} is {info.st_size} bytes, larger than the {limit} bytes allowed here")
        try:
            return f.read(limit + 1)[:limit]
        except OSError as exc:
            raise UserError(f"cannot read {path} ({exc.strerror or exc})") from None


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (the old file or the new one, never half of one)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON with sorted keys, atomically (str() for what JSON lacks)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in `path`; a UserError when it is missing or not valid JSON."""
    path = Path(path)
    try:
        raw = read_regular_bytes(path)
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    try:
        return json.loads(raw.decode())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, a 5,000-digit number
        raise UserError(f"{path} is not valid JSON ({_one_line(exc)})") from None


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one line; a reader ignores a torn last line (see read_jsonl)."""
    with open(path, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write `rows` as JSON lines, atomically (replaces the file)."""
    write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file up to a torn last line (bad JSON or bad UTF-8: a crash can
    cut a character in two); [] when the file does not exist. Only a regular file is read (a
    FIFO is a UserError, never waited on)."""
    try:
        raw = read_regular_bytes(path)
    except FileNotFoundError:
        return []
    rows = []
    for line in raw.splitlines():
        try:
            rows.append(json.loads(line.decode()))
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, a huge number
            break  # a line torn by a crash: everything before it is whole
    return rows


def library_versions() -> dict[str, str]:
    """Versions recorded in every output, so a number can be traced to its software."""
    import numpy

    import dcclib

    versions = {
        "dcclib": dcclib.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    try:
        import torchvision

        versions["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        versions["cuda"] = str(torch.version.cuda)
        versions["gpu"] = torch.cuda.get_device_name()
    return versions


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# safetensors with JSON metadata
# ---------------------------------------------------------------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write `tensors` (moved to the CPU) as safetensors with `meta` as JSON in the header, atomically."""
    header = {_META_KEY: json.dumps({**meta, "format_version": FORMAT_VERSION}, default=str)}
    if len(header[_META_KEY]) > MAX_METADATA_CHARS:
        raise UserError(
            f"the metadata of {path} would be {len(header[_META_KEY])} characters, more than the "
            f"{MAX_METADATA_CHARS} a reader accepts; nothing was written"
        )
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(cpu, str(tmp), metadata=header)
        except SafetensorError as exc:  # a full disk, `ulimit -f`: an OSError like any other write's
            raise as_os_error(exc) from None


def as_os_error(exc: BaseException) -> OSError:
    """safetensors' write error ('... I/O error: No space left on device (os error 28)') as the
    OSError it wraps, so that every writer handles a full disk one way."""
    found = re.search(r"os error (\d+)", str(exc))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code) if found else _one_line(exc))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a file written by save_tensors; a UserError when it is not one.

    safetensors checks that every tensor lies inside the file before anything is read, so no
    header can make this allocate more than the file holds.
    """
    path = Path(path)
    check_regular(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({_one_line(exc)})") from None
    if _META_KEY not in header:
        raise UserError(f"{path} has no dcc-companion metadata; it was not written by dcclib")
    if len(header[_META_KEY]) > MAX_METADATA_CHARS:
        raise UserError(
            f"{path} has {len(header[_META_KEY])} characters of metadata, more than dcclib writes "
            f"(at most {MAX_METADATA_CHARS}); it was not written by dcclib"
        )
    try:
        meta = json.loads(header[_META_KEY])
    except (ValueError, RecursionError):
        raise UserError(f"{path} has corrupt metadata (not valid JSON)") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} has corrupt metadata: {_shown(meta)}, expected a JSON object")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise UserError(f"{path} has format version {_shown(version)}, expected {FORMAT_VERSION}")
    return tensors, meta


# ------------------------------------------------------------------- checking what was read
def _shown(value: Any) -> str:
    """A short, one-line description of a JSON value for an error message."""
    if value is None:
        return "null"
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _is_text(v: Any) -> bool:
    return type(v) is str and v != ""


def _is_names(v: Any) -> bool:
    return type(v) is list and len(v) > 0 and all(type(s) is str for s in v)


def _is_positive_int(v: Any) -> bool:
    return type(v) is int and v >= 1


def _is_numbers(v: Any) -> bool:
    return type(v) is list and len(v) > 0 and all(_is_number(x) for x in v)


def _is_positive_numbers(v: Any) -> bool:
    return _is_numbers(v) and all(x > 0 for x in v)


def _is_shape(v: Any) -> bool:
    return type(v) is list and len(v) == 4 and all(type(x) is int and x >= 0 for x in v)


# field: (required, check, what the field must be); other fields are allowed and not checked
_Field = tuple[bool, Callable[[Any], bool], str]
SET_FIELDS: dict[str, _Field] = {
    "dataset": (True, _is_text, "a non-empty string"),
    "class_names": (True, _is_names, "a non-empty list of strings"),
    "num_classes": (True, _is_positive_int, "a positive integer"),
    "mean": (True, _is_numbers, "a non-empty list of finite numbers"),
    "std": (True, _is_positive_numbers, "a non-empty list of positive finite numbers"),
    "shape": (True, _is_shape, "a list of 4 non-negative integers"),
    "kind": (False, _is_text, "a non-empty string"),
    "method": (False, _is_text, "a non-empty string"),
    "data_source": (False, lambda v: type(v) is str, "a string"),
    "dataset_path": (False, _is_text, "a non-empty string"),
    "ipc": (False, _is_positive_int, "a positive integer"),
    "seed": (False, lambda v: type(v) is int, "an integer"),
    "config": (False, lambda v: type(v) is dict, "a JSON object"),
    "versions": (False, lambda v: type(v) is dict, "a JSON object"),
    "accuracies": (False, lambda v: type(v) is list, "a list"),
}
CHECKPOINT_FIELDS: dict[str, _Field] = {
    "kind": (True, lambda v: v == "checkpoint", '"checkpoint"'),
    "next_outer": (True, lambda v: type(v) is int and v >= 0, "a non-negative integer"),
    "fingerprint": (True, lambda v: type(v) is dict, "a JSON object"),
}
CHECKPOINT_TENSORS = {"images": torch.float32, "momentum": torch.float32}  # "images" is required


def _field_problems(meta: dict, fields: dict[str, _Field]) -> list[str]:
    """One problem per missing required field and per field of the wrong type."""
    missing = [k for k, (required, _, _) in fields.items() if required and k not in meta]
    problems = [f"metadata lacks {', '.join(missing)}"] if missing else []
    for name, (_, check, expected) in fields.items():
        if name in meta and not check(meta[name]):
            problems.append(f"metadata field {name} is {_shown(meta[name])}, expected {expected}")
    return problems


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def check_synthetic(
    path: str | Path, tensors: dict[str, torch.Tensor], meta: dict
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images, labels, meta) of a saved set once all of it is checked; a UserError (one line,
    naming every problem found) otherwise.

    Checked: the tensors are exactly float32 `images` [N, C, H, W] (N, C, H, W >= 1, finite) and
    int64 `labels` [N] in 0..num_classes-1; every metadata field in SET_FIELDS has its type; and
    they agree (shape, num_classes = len(class_names), one mean and std per channel).
    """
    problems: list[str] = []

    def refuse() -> UserError:
        return UserError(f"{path} is not a valid saved set: {'; '.join(problems)}")

    if set(tensors) != {"images", "labels"}:
        problems.append(f"it holds tensors {sorted(tensors)}, expected images and labels")
        raise refuse()
    images, labels = tensors["images"], tensors["labels"]
    if images.dtype != torch.float32:
        problems.append(f"images are {_dtype_name(images)}, expected float32")
    if images.dim() != 4:
        problems.append(f"images have shape {list(images.shape)}, expected [N, C, H, W]")
    elif images.shape[0] == 0:
        problems.append("the set is empty (0 images)")
    elif min(images.shape) == 0:
        problems.append(f"images have shape {list(images.shape)}, expected no zero size")
    if labels.dtype != torch.int64:
        problems.append(f"labels are {_dtype_name(labels)}, expected int64")
    if labels.dim() != 1 or (images.dim() > 0 and labels.shape[0] != images.shape[0]):
        n = images.shape[0] if images.dim() else 0
        problems.append(f"labels have shape {list(labels.shape)}, expected [{n}] (one per image)")
    problems += _field_problems(meta, SET_FIELDS)
    if problems:
        raise refuse()
    n_classes = meta["num_classes"]
    if len(meta["class_names"]) != n_classes:
        problems.append(f"{len(meta['class_names'])} class names for num_classes {n_classes}")
    if list(images.shape) != meta["shape"]:
        problems.append(f"images have shape {list(images.shape)}, metadata says {meta['shape']}")
    channels = images.shape[1]
    if len(meta["mean"]) != channels or len(meta["std"]) != channels:
        problems.append(
            f"{len(meta['mean'])} means and {len(meta['std'])} stds for {channels}-channel images"
        )
    if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
        problems.append(f"labels {int(labels.min())}..{int(labels.max())} outside 0..{n_classes - 1}")
    if not torch.isfinite(images).all():
        problems.append("images contain NaN or infinity")
    if problems:
        raise refuse()
    return images, labels, meta


def _metadata_as_json(meta: dict) -> dict:
    """`meta` as a reader will see it (after the round trip through JSON)."""
    return json.loads(json.dumps(meta, default=str))


def save_synthetic(path: str | Path, images: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    """Save a synthetic (or selected) set: normalised images [N,C,H,W], labels [N], metadata.

    What would not load back (see `check_synthetic`) is refused with a UserError before writing.
    """
    names = meta.get("class_names")
    meta = {**meta, "num_classes": len(names) if isinstance(names, list | tuple) else 0}
    meta["shape"] = list(images.shape)
    tensors = {"images": images.detach().float(), "labels": labels.detach().long()}
    check_synthetic(path, tensors, _metadata_as_json({**meta, "format_version": FORMAT_VERSION}))
    save_tensors(path, tensors, meta)


def load_synthetic(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Load a saved set and check all of it (`check_synthetic`); anything wrong is a UserError."""
    tensors, meta = load_tensors(path)
    return check_synthetic(path, tensors, meta)


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Save a condensation checkpoint (save_tensors with kind 'checkpoint')."""
    save_tensors(path, tensors, {**meta, "kind": "checkpoint"})


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint, checked as far as it can be without the run's
    settings: the tensor names and dtypes (CHECKPOINT_TENSORS), images [N, C, H, W] with
    momentum of the same shape, all finite, and the metadata's types (CHECKPOINT_FIELDS).
    A UserError (one line) when any of it is wrong; `dcclib.runs` checks shapes and
    `next_outer` against the run's settings."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "checkpoint" or "images" not in tensors:
        raise UserError(f"{path} is not a dcclib checkpoint")
    problems = []
    unexpected = sorted(set(tensors) - set(CHECKPOINT_TENSORS))
    if unexpected:
        problems.append(f"it holds unexpected tensors {unexpected}")
    for name, dtype in CHECKPOINT_TENSORS.items():
        t = tensors.get(name)
        if t is None:
            continue
        if t.dtype != dtype:
            problems.append(f"{name} are {_dtype_name(t)}, expected {str(dtype).removeprefix('torch.')}")
        elif t.dim() != 4 or min(t.shape) == 0:
            problems.append(f"{name} have shape {list(t.shape)}, expected [N, C, H, W] with no zero size")
        elif t.shape != tensors["images"].shape:
            problems.append(f"{name} have shape {list(t.shape)}, images {list(tensors['images'].shape)}")
        elif not torch.isfinite(t).all():
            problems.append(f"{name} contain NaN or infinity")
    problems += _field_problems(meta, CHECKPOINT_FIELDS)
    if problems:
        raise UserError(f"{path} is not a valid checkpoint: {'; '.join(problems)}")
    return tensors, meta
