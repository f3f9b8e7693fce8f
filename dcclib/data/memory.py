"""How much memory a dataset file may make this process allocate, checked before it is read.

A compressed file may declare arrays up to deflate's limit (1032 times its size): a 1 MB archive
can declare 1 GB. What it declares, as read and once converted to float32 (`dataset._to_tensor`),
must fit in what this process can still allocate: the address-space limit (``ulimit -v``,
RLIMIT_AS) less what is mapped already, and the memory the system has available. A file that
declares more is refused in one line before any of it is decompressed.
"""

from __future__ import annotations

import os
import resource
import zipfile
from collections.abc import Sequence
from pathlib import Path

from dcclib.errors import UserError

AS_FLOAT32 = 5  # bytes per declared uint8 byte: the array as read, and 4 once converted to float32


def _mapped_bytes() -> int:
    """This process's virtual memory size now (0 when /proc cannot say)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _system_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None when not known)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_bytes() -> int | None:
    """The bytes this process can still allocate (None: no limit known)."""
    limits = []
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - _mapped_bytes()))
    system = _system_available()
    if system is not None:
        limits.append(system)
    return min(limits) if limits else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def check_fits(path: Path, declared: int, factor: int = AS_FLOAT32) -> None:
    """A UserError when the `declared` bytes of `path`'s arrays, `factor` times over (as read and
    as float32), exceed what this process can still allocate."""
    available = available_bytes()
    need = declared * factor
    if available is not None and need > available:
        raise UserError(
            f"{path} declares {_gb(declared)} of arrays ({_gb(need)} in memory once converted), more "
            f"than the {_gb(available)} this process can still allocate; check the file, or free memory"
        )


def npz_declared_bytes(path: Path, keys: Sequence[str]) -> int:
    """The uncompressed size the archive `path` declares for the arrays `keys` (0 when it is not
    a readable zip archive: the reader then says what is wrong)."""
    wanted = {f"{key}.npy" for key in keys}
    try:
        with zipfile.ZipFile(path) as zf:
            return sum(info.file_size for info in zf.infolist() if info.filename in wanted)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return 0
