"""Any image folder as a dataset: ``train/<class>/`` and ``test/<class>/`` directories, or
``train.tar.gz`` and ``test.tar.gz`` read without extracting, in torchvision ImageFolder order.

Images are decoded once (PIL, in threads) and cached as an ``.npz`` in ``<folder>/.dcc-cache``
(or ``~/.cache/dcc-companion`` when the folder is read-only), keyed by the files' names, sizes
and modification times; statistics are the exact per-channel mean/std of the training pixels.

The folder is untrusted input: every class of train/ needs test images, an image name must be a
regular file (a broken link is an error, not a skipped file), a folder reached twice through
links is read once (no endless walk), an image may have at most MAX_IMAGE_PIXELS pixels, an
archive is read in chunks and may not expand beyond deflate's limit, and a cache file is used
only when its arrays are consistent (else it is rebuilt).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import torch

from dcclib.data.dataset import ImageDataset, _make, _one_line
from dcclib.data.memory import check_fits, npz_declared_bytes
from dcclib.errors import UserError
from dcclib.safe_pickle import load_npz

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_IMAGE_PIXELS = 4096 * 4096  # per image; a larger one is refused before it is decoded
_DEFLATE_MAX_RATIO = 1032  # deflate never expands data by more than this factor
_CACHE_VERSION = "1"

Entry = tuple[str, str, Path | bytes]  # class, path inside the class folder, file or its bytes


def _sort_entries(entries: list[Entry]) -> list[Entry]:
    # ImageFolder order: sorted(os.walk(class_dir)) then sorted file names within each directory
    return sorted(entries, key=lambda e: (e[0], os.path.dirname(e[1]), os.path.basename(e[1])))


def _dir_entries(split_dir: Path) -> tuple[list[str], list[Entry]]:
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and e.name[0] != ".")
    entries: list[Entry] = []
    for cls in classes:
        seen: set[tuple[int, int]] = set()  # folders already read: links may form cycles
        for dirpath, dirnames, fnames in os.walk(split_dir / cls, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = [d for d in dirnames if d[0] != "."]
            rel_dir = os.path.relpath(dirpath, split_dir / cls)
            for fn in fnames:
                if fn[0] != "." and fn.lower().endswith(IMAGE_EXTENSIONS):
                    rel = fn if rel_dir == "." else f"{rel_dir}/{fn}"
                    entries.append((cls, rel, _regular_file(Path(dirpath) / fn)))
    return classes, _sort_entries(entries)


def _regular_file(path: Path) -> Path:
    """`path`, once it is known to be a regular file (after links): not a broken link, a pipe
    (reading it would block) or a device."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path} is a broken link: remove it or restore its target") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {_one_line(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path} is not a regular file: remove it")
    return path


def _tar_entries(tar_path: Path, split: str) -> list[Entry]:
    """Image members of ``<split>.tar.gz`` read straight from the archive (nothing extracted), in
    chunks, and in all at most what deflate can expand the archive to."""
    entries: list[Entry] = []
    budget = tar_path.stat().st_size * _DEFLATE_MAX_RATIO
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            for m in tf:
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if parts and parts[0] == split:
                    parts = parts[1:]
                if (
                    m.isfile()
                    and len(parts) >= 2
                    and m.name.lower().endswith(IMAGE_EXTENSIONS)
                    and not any(p[0] == "." for p in parts)
                ):
                    budget -= m.size
                    if budget < 0:
                        raise UserError(f"{tar_path} expands to more than deflate allows: it is corrupt")
                    f = tf.extractfile(m)
                    if f is not None:
                        entries.append((parts[0], "/".join(parts[1:]), _read_member(f, m.size)))
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise UserError(f"cannot read {tar_path}: {_one_line(exc)}") from None
    return _sort_entries(entries)


def _read_member(f: IO[bytes], size: int) -> bytes:
    """A member's bytes, read in chunks (its declared size is not allocated up front)."""
    data = bytearray()
    while len(data) < size and (chunk := f.read(min(1 << 20, size - len(data)))):
        data += chunk
    return bytes(data)


def _decode(entry: Entry) -> np.ndarray:
    from PIL import Image

    src = entry[2]
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise UserError(
                    f"image {entry[0]}/{entry[1]} is {im.width}x{im.height}, more than "
                    f"{MAX_IMAGE_PIXELS} pixels: resize the images"
                )
            return np.asarray(im.convert("L" if im.mode in ("1", "L") else "RGB"))
    except (UserError, MemoryError):
        raise
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) on bad data
        raise UserError(f"cannot read image {entry[0]}/{entry[1]}: {_one_line(exc)}") from None


def _check_classes(folder: Path, classes: list[str], splits: dict[str, list[Entry]]) -> None:
    """Every image's class is one of train/'s, and every class has training and test images."""
    for s, entries in splits.items():
        present = {e[0] for e in entries}
        unknown = sorted(present - set(classes))
        if unknown:
            raise UserError(f"{folder}/{s} has classes missing from train/: {', '.join(unknown)}")
        lacking = [c for c in classes if c not in present]
        if lacking:
            shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
            raise UserError(
                f"{folder}/{s} has no images of class {shown}: every class of train/ needs "
                "training and test images"
            )


def _decode_all(folder: Path, splits: dict[str, list[Entry]], classes: list[str]) -> dict[str, np.ndarray]:
    """Decode every image once (threads: PIL releases the GIL), check sizes, compute statistics."""
    index = {c: i for i, c in enumerate(classes)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = {s: list(pool.map(_decode, es)) for s, es in splits.items()}
    rgb = any(a.ndim == 3 for arrays in decoded.values() for a in arrays)
    first = next(a for arrays in decoded.values() for a in arrays)
    out: dict[str, np.ndarray] = {}
    for s, entries in splits.items():
        images = np.empty((len(entries), *first.shape[:2], 3 if rgb else 1), np.uint8)
        for i, (e, a) in enumerate(zip(entries, decoded[s], strict=True)):
            if a.shape[:2] != first.shape[:2]:
                raise UserError(
                    f"image {s}/{e[0]}/{e[1]} is {a.shape[1]}x{a.shape[0]} but others "
                    f"are {first.shape[1]}x{first.shape[0]}: resize all to one size"
                )
            images[i] = a if a.ndim == 3 else a[..., None]
        out[f"{s}_images"] = images
        out[f"{s}_labels"] = np.array([index[e[0]] for e in entries], dtype=np.int64)
    # exact per-channel mean/std over training pixels in [0,1] (ddof=0) via 256-bin histograms
    mean, std = [], []
    v = np.arange(256, dtype=np.float64) / 255
    for ch in range(out["train_images"].shape[3]):
        h = np.bincount(out["train_images"][..., ch].ravel(), minlength=256).astype(np.float64)
        m = float((h * v).sum() / h.sum())
        sd = float(np.sqrt((h * (v - m) ** 2).sum() / h.sum()))
        mean.append(m)
        std.append(sd if sd > 1e-12 else 1.0)  # a constant channel: avoid dividing by zero
    out["mean"], out["std"] = np.array(mean), np.array(std)
    out["class_names"] = np.array(classes, dtype=str)
    return out


def _cache_dirs(folder: Path) -> list[Path]:
    return [folder / ".dcc-cache", Path.home() / ".cache" / "dcc-companion"]


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK)


def _cache_name(folder: Path, d: Path, key: str) -> str:
    if d == folder / ".dcc-cache":
        return f"images-{key}.npz"
    return f"images-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}-{key}.npz"


_CACHE_KEYS = (
    "key",
    "train_images",
    "train_labels",
    "test_images",
    "test_labels",
    "mean",
    "std",
    "class_names",
)


def _valid_cache(z: dict[str, np.ndarray], key: str) -> bool:
    """Whether arrays read from a cache file are those `_decode_all` writes for `key`."""
    if set(z) != set(_CACHE_KEYS) or z["key"].shape != () or str(z["key"]) != key:
        return False
    xtr, xte, names = z["train_images"], z["test_images"], z["class_names"]
    if xtr.dtype != np.uint8 or xtr.ndim != 4 or xtr.shape[3] not in (1, 3) or xte.shape[1:] != xtr.shape[1:]:
        return False
    if xte.dtype != np.uint8 or names.ndim != 1 or names.dtype.kind != "U" or not len(names):
        return False
    for x, y in ((xtr, z["train_labels"]), (xte, z["test_labels"])):
        if y.dtype != np.int64 or y.shape != (len(x),) or not len(y) or y.min() < 0 or y.max() >= len(names):
            return False
        if np.bincount(y, minlength=len(names)).min() == 0:  # a class without images
            return False
    stats = [z["mean"], z["std"]]
    if any(a.dtype != np.float64 or a.shape != (xtr.shape[3],) or not np.isfinite(a).all() for a in stats):
        return False
    return bool((z["std"] > 0).all())


def _read_cache(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays of `folder` for `key`, or None; a damaged or inconsistent cache is
    ignored (and rebuilt)."""
    for d in _cache_dirs(folder):
        path = d / _cache_name(folder, d, key)
        if path.is_file():
            try:
                check_fits(path, npz_declared_bytes(path, _CACHE_KEYS))  # else rebuilt, image by image
                z = load_npz(path, _CACHE_KEYS)
            except UserError:
                continue
            if _valid_cache(z, key):
                return {k: v for k, v in z.items() if k != "key"}
    return None


def _write_cache(folder: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temp file in the cache dir, then os.replace: readers never see a partial file."""
    d = next((d for d in _cache_dirs(folder) if _writable_dir(d)), None)
    if d is None:
        return
    path = d / _cache_name(folder, d, key)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the cache is as readable as the data
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write image cache {path}: {exc}", stacklevel=3)
        return
    if d == folder / ".dcc-cache":  # older caches of this folder are stale
        for old in d.glob("images-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)


def load_folder(
    folder: Path,
    device: torch.device,
    name: str | None = None,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> ImageDataset:
    """An image folder; `name`/`stats` override the folder name and its computed statistics."""
    folder = folder.resolve()
    h = hashlib.sha256(f"dcc-image-cache {_CACHE_VERSION}\n".encode())
    splits: dict[str, list[Entry]] | None = None
    classes: list[str] = []
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        (classes, train), (_, test) = (_dir_entries(folder / s) for s in ("train", "test"))
        empty = sorted(set(classes) - {e[0] for e in train})
        if empty:
            raise UserError(f"{folder}/train has class folders without images: {', '.join(empty)}")
        splits = {"train": train, "test": test}
        for s, entries in splits.items():
            for cls, rel, p in entries:
                st = Path(p).stat()
                h.update(f"{s}/{cls}/{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    elif (folder / "train.tar.gz").is_file() and (folder / "test.tar.gz").is_file():
        for s in ("train", "test"):
            st = (folder / f"{s}.tar.gz").stat()
            h.update(f"{s}.tar.gz\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    else:
        raise UserError(
            f"{folder} holds neither train/<class>/ and test/<class>/ folders "
            "nor train.tar.gz and test.tar.gz"
        )
    key = h.hexdigest()[:20]
    arrays = _read_cache(folder, key)
    if arrays is None:
        if splits is None:
            splits = {s: _tar_entries(folder / f"{s}.tar.gz", s) for s in ("train", "test")}
            classes = sorted({e[0] for e in splits["train"]})
        if not splits["train"] or not splits["test"]:
            raise UserError(f"{folder}: no .png/.jpg/.jpeg images in train/ or test/")
        _check_classes(folder, classes, splits)
        arrays = _decode_all(folder, splits, classes)
        _write_cache(folder, key, arrays)
    mean, std = stats or (tuple(arrays["mean"]), tuple(arrays["std"]))
    return _make(
        name or folder.name,
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
        [str(c) for c in arrays["class_names"]],
        mean,
        std,
        str(folder),
        device,
        channels_last=True,
    )
