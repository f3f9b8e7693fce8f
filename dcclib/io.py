"""Files: synthetic sets and checkpoints (safetensors + JSON metadata), JSON and JSONL.

Every write goes to a temporary file in the target folder and is then renamed over the target
(`os.replace` is atomic on one file system), so a crash leaves the old file or the new one,
never half of one. Nothing here unpickles: safetensors holds raw tensors, metadata is JSON.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dcclib.errors import UserError

FORMAT_VERSION = 1
_META_KEY = "dcc"  # the safetensors header entry that holds our JSON metadata


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one line; a reader ignores a torn last line (see read_jsonl)."""
    with open(path, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write `rows` as JSON lines, atomically (replaces the file)."""
    write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file up to a torn last line; [] when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
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


# ---------------------------------------------------------------------------------------------
# safetensors with JSON metadata
# ---------------------------------------------------------------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write `tensors` (moved to the CPU) as safetensors with `meta` as JSON in the header, atomically."""
    header = {_META_KEY: json.dumps({**meta, "format_version": FORMAT_VERSION}, default=str)}
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=header)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a file written by save_tensors; a UserError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    if _META_KEY not in header:
        raise UserError(f"{path} has no dcc-companion metadata; it was not written by dcclib")
    try:
        meta = json.loads(header[_META_KEY])
    except json.JSONDecodeError:
        raise UserError(f"{path} has corrupt metadata") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has format version {meta.get('format_version')}, expected {FORMAT_VERSION}")
    return tensors, meta


def save_synthetic(path: str | Path, images: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    """Save a synthetic (or selected) set: normalised images [N,C,H,W], labels [N], metadata."""
    meta = {**meta, "num_classes": len(meta["class_names"]), "shape": list(images.shape)}
    save_tensors(path, {"images": images.float(), "labels": labels.long()}, meta)


def load_synthetic(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Load and check a saved set; a corrupt or inconsistent file is a UserError."""
    tensors, meta = load_tensors(path)
    if set(tensors) != {"images", "labels"}:
        raise UserError(f"{path} holds tensors {sorted(tensors)}, expected images and labels")
    images, labels = tensors["images"], tensors["labels"]
    required = ("class_names", "mean", "std", "dataset", "num_classes", "shape")
    missing = [k for k in required if k not in meta]
    if missing:
        raise UserError(f"{path} metadata lacks {', '.join(missing)}")
    n_classes = meta["num_classes"]
    problems = []
    if images.dim() != 4 or list(images.shape) != list(meta["shape"]):
        problems.append(f"images have shape {list(images.shape)}, metadata says {meta['shape']}")
    if labels.shape != (images.shape[0],):
        problems.append(f"{labels.shape[0] if labels.dim() else 0} labels for {images.shape[0]} images")
    elif labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        problems.append(f"labels outside 0..{n_classes - 1}")
    if len(meta["class_names"]) != n_classes or len(meta["mean"]) != images.shape[1]:
        problems.append("class names or normalisation do not match the images")
    if not torch.isfinite(images).all():
        problems.append("images contain NaN or infinity")
    if problems:
        raise UserError(f"{path} is inconsistent: {'; '.join(problems)}")
    return images, labels, meta


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Save a condensation checkpoint (save_tensors with kind 'checkpoint')."""
    save_tensors(path, tensors, {**meta, "kind": "checkpoint"})


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint; a UserError when `path` holds something else."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "checkpoint" or "images" not in tensors:
        raise UserError(f"{path} is not a dcclib checkpoint")
    return tensors, meta
