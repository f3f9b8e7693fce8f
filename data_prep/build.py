"""Stream the official files once and write one ``.npz`` per class subset, plus a manifest.

Output format (``format_version`` 1, read by ``dcclib``): ``<out>/imagenet{S}-{name}.npz``,
an ``np.savez_compressed`` archive (with fixed timestamps, so the same input gives the same
bytes and sha256 on every machine) readable with ``allow_pickle=False``, with keys

* ``train_images`` uint8 [N, S, S, 3] (HWC) and ``train_labels`` int64 [N] in 0..C-1,
* ``test_images`` uint8 [M, S, S, 3] and ``test_labels`` int64 [M] (from ``val_data``),
* ``wnids`` and ``class_names`` (first ImageNet lemma), unicode [C], in label order,
* ``mean`` and ``std`` float64 [3]: per channel over the training pixels scaled to [0, 1]
  (population std),
* ``group`` unicode 0-d (the subset's name) and ``format_version`` int64 0-d = 1.

Rows keep file order (batch 1..10, then the original row order inside a file). The ten
training files are read one at a time and only the rows of the selected classes are kept, so
peak memory is about one batch file (read twice over by the safe unpickler) plus the kept rows.
Mean and std are accumulated exactly, as per-channel histograms of the uint8 values, and turned
into float64 at the end. Every output file is first written to a temporary file in ``<out>``;
only when all of them (and the manifest) are complete are they moved into place with
``os.replace``, so a failure leaves no half-written set behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from data_prep import sources
from data_prep.groups import Subset, original_labels
from dcclib.errors import UserError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class _Collector:
    """Rows kept for one subset while the files stream past."""

    subset: Subset
    lut: np.ndarray  # original label (0..1000) -> new label, -1 for other classes
    train_images: list[np.ndarray] = field(default_factory=list)
    train_labels: list[np.ndarray] = field(default_factory=list)
    test_images: list[np.ndarray] = field(default_factory=list)
    test_labels: list[np.ndarray] = field(default_factory=list)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros((3, 256), dtype=np.int64))

    def take(self, data: np.ndarray, labels: np.ndarray, size: int, train: bool) -> int:
        """Keep the rows of this subset's classes from one file; returns how many."""
        new = self.lut[labels]
        mask = new >= 0
        count = int(mask.sum())
        if count == 0:
            return 0
        planes = data[mask].reshape(count, 3, size * size)
        if train:
            for c in range(3):
                self.histogram[c] += np.bincount(planes[:, c].ravel(), minlength=256)
        images = np.ascontiguousarray(planes.reshape(count, 3, size, size).transpose(0, 2, 3, 1))
        (self.train_images if train else self.test_images).append(images)
        (self.train_labels if train else self.test_labels).append(new[mask])
        return count


def channel_stats(histogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std per channel of pixels/255 from [3, 256] uint8 histograms.

    Sums are exact integers; only the final division is rounded.
    """
    values = np.arange(256, dtype=np.int64)
    mean = np.zeros(3, dtype=np.float64)
    std = np.zeros(3, dtype=np.float64)
    for c in range(3):
        n = int(histogram[c].sum())
        s1 = int((histogram[c] * values).sum())
        s2 = int((histogram[c] * values * values).sum())
        mean[c] = s1 / (255 * n)
        std[c] = np.sqrt((n * s2 - s1 * s1) / (n * n * 255 * 255))
    return mean, std


def _stack(chunks: list[np.ndarray], size: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _labels(chunks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def savez_deterministic(handle: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps: same arrays, same bytes, same sha256.

    The archive is what ``np.savez_compressed`` writes (one deflated ``{key}.npy`` member per
    array), except that numpy stamps each member with the current time.
    """
    with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _temp_file(out: Path, name: str) -> tuple[BinaryIO, Path]:
    """A new hidden file in ``out`` (same file system, so ``os.replace`` is atomic)."""
    handle = tempfile.NamedTemporaryFile(dir=out, prefix=f".{name}.", suffix=".tmp", delete=False)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    return handle, Path(handle.name)


def dataset_name(size: int, name: str) -> str:
    """File stem of a subset, for example ``imagenet32-automobile``."""
    return f"imagenet{size}-{name}"


def _check_writable(out: Path) -> None:
    """UserError unless ``out`` is, or can be created as, a writable folder."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {existing} is not writable")


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest in ``out``, or an empty one; UserError if it exists but is unreadable."""
    path = out / MANIFEST_NAME
    if not path.exists():
        return {"format_version": FORMAT_VERSION, "datasets": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(
            f"{path} is not a readable manifest ({' '.join(str(exc).split())}): move it away"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("datasets"), dict):
        raise UserError(f"{path} has no 'datasets' table: move it away")
    return manifest


def _write_subset(out: Path, col: _Collector, size: int) -> tuple[Path, dict[str, Any]]:
    """Write one subset to a temporary file in ``out``; returns it and its manifest entry."""
    subset = col.subset
    name = dataset_name(size, subset.name)
    if not col.train_images:
        raise UserError(f"no training images of {name} found: are the inputs ImageNet files?")
    train_labels, test_labels = _labels(col.train_labels), _labels(col.test_labels)
    mean, std = channel_stats(col.histogram)
    arrays = {
        "train_images": _stack(col.train_images, size),
        "train_labels": train_labels,
        "test_images": _stack(col.test_images, size),
        "test_labels": test_labels,
        "wnids": np.array(subset.wnids, dtype=str),
        "class_names": np.array(subset.class_names, dtype=str),
        "mean": mean,
        "std": std,
        "group": np.array(subset.name, dtype=str),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
    }
    col.train_images.clear()
    col.test_images.clear()
    handle, tmp = _temp_file(out, name)
    try:
        with handle:
            savez_deterministic(handle, arrays)
        del arrays
        num = len(subset.wnids)
        train_counts = np.bincount(train_labels, minlength=num).tolist()
        test_counts = np.bincount(test_labels, minlength=num).tolist()
        for wnid, cname, n_train, n_test in zip(
            subset.wnids, subset.class_names, train_counts, test_counts, strict=True
        ):
            if n_train == 0 or n_test == 0:
                print(
                    f"warning: {name}: class {wnid} ({cname}) has {n_train} training and "
                    f"{n_test} test images",
                    file=sys.stderr,
                )
        entry = {
            "file": f"{name}.npz",
            "sha256": _sha256(tmp),
            "group": subset.name,
            "origin": subset.origin,
            "image_size": size,
            "num_classes": num,
            "wnids": list(subset.wnids),
            "class_names": list(subset.class_names),
            "train_counts": train_counts,
            "test_counts": test_counts,
            "num_train": int(train_labels.size),
            "num_test": int(test_labels.size),
            "mean": mean.tolist(),
            "std": std.tolist(),
        }
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, entry


def _collect(files: sources.SourceFiles, collectors: list[_Collector], progress: bool | None) -> int:
    """Read every input file once, in order; returns the image size S."""
    size: int | None = None
    read = kept = 0
    disable = None if progress is None else not progress  # None: only on a terminal
    with tqdm(
        total=len(files.all), unit="file", desc="ImageNet files", disable=disable, file=sys.stderr
    ) as bar:
        for path in files.all:
            bar.set_postfix_str(f"{path.name}: {read} images read, {kept} kept")
            data, labels = sources.read_batch(path)
            file_size = sources.image_size_of(data.shape[1])
            if size is None:
                size = file_size
            elif file_size != size:
                raise UserError(
                    f"{path} holds {file_size}x{file_size} images, the files "
                    f"before it {size}x{size}: mixed downloads under {files.src}"
                )
            train = path != files.val
            for col in collectors:
                kept += col.take(data, labels, size, train)
            read += data.shape[0]
            del data, labels
            bar.update(1)
            bar.set_postfix_str(f"{read} images read, {kept} kept")
    assert size is not None
    return size


def build(
    src: str | Path, out: str | Path, subsets: list[Subset], progress: bool | None = None
) -> list[dict[str, Any]]:
    """Build every subset from the files under ``src`` into ``out``, atomically.

    Returns the manifest entries written. ``progress``: True/False forces the progress bar
    on/off, None shows it on a terminal only.
    """
    names = [s.name for s in subsets]
    if not subsets:
        raise UserError("nothing to build: give --groups and/or --hypernym")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"two subsets are called {', '.join(duplicates)}: build them separately")
    files = sources.find_sources(src)
    out = Path(out)
    _check_writable(out)  # fail now, not after streaming for an hour
    if out.is_dir():
        read_manifest(out)

    collectors = []
    for subset in subsets:
        lut = np.full(sources.NUM_CLASSES + 1, -1, dtype=np.int64)
        lut[original_labels(subset.wnids)] = np.arange(len(subset.wnids))
        collectors.append(_Collector(subset=subset, lut=lut))
    size = _collect(files, collectors, progress)

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    source_files = [
        {"path": p.relative_to(files.src).as_posix(), "bytes": p.stat().st_size} for p in files.all
    ]
    written: list[tuple[Path, Path]] = []
    entries: list[dict[str, Any]] = []
    try:
        for col in collectors:
            tmp, entry = _write_subset(out, col, size)
            written.append((tmp, out / entry["file"]))
            entry["source_dir"] = str(files.src.resolve())
            entry["source_files"] = source_files
            entries.append(entry)
        manifest = read_manifest(out)
        for entry in entries:
            manifest["datasets"][entry["file"][: -len(".npz")]] = entry
        manifest["format_version"] = FORMAT_VERSION
        manifest["datasets"] = dict(sorted(manifest["datasets"].items()))
        handle, tmp = _temp_file(out, MANIFEST_NAME)
        written.append((tmp, out / MANIFEST_NAME))
        with handle:
            handle.write((json.dumps(manifest, indent=2) + "\n").encode())
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    for tmp, final in written:  # the manifest comes last
        os.replace(tmp, final)
    return entries
