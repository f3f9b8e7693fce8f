"""One process per run folder: a lock file that names its owner (pid, host, start time).

The lock is created with O_CREAT | O_EXCL, so only one process can create it. A lock whose
process is gone (same host, pid not alive: a kill -9, a power cut) is stale and taken over with
a note; the check-and-take-over runs under an flock of the folder, so two processes cannot
both take over the same stale lock (an flock goes away with its process: nothing stays stuck).
A lock held by a live process, or by another host (which this one cannot check), is refused
with one line that names the owner and the file to remove if that owner is gone. Under Slurm the
lock also names its job: a lock of another host is stale when that job is this very job (a former
run of it, requeued here after its node was lost: Slurm runs a job once at a time) or when the
queue no longer lists it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dcclib.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: the lock file alone
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"


@contextmanager
def holding(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock (folder/run.lock) for the block; a UserError when another run holds it."""
    lock = folder / LOCK_NAME
    mine = _acquire(lock)
    try:
        yield
    finally:
        _release(lock, mine)


def check_free(folder: Path) -> None:
    """Refuse early (before any work) a folder whose lock a live run holds; `holding` checks again."""
    lock = folder / LOCK_NAME
    _check_kind(lock)
    owner = _read(lock) if lock.exists() else None
    if owner is not None and not _stale(owner):
        raise _in_use(lock, owner)


def owner_text(owner: dict) -> str:
    """'process PID on HOST (since TIME)' for a lock's contents."""
    return f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')})"


@contextmanager
def _folder_mutex(folder: Path) -> Iterator[None]:
    """An exclusive flock of the folder itself, held for a few file operations."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # pragma: no cover - a file system without flock: the lock file alone
            pass
        yield
    finally:
        os.close(fd)  # releases the flock


def _acquire(lock: Path) -> str:
    """Create `lock` for this process (taking over a stale one); its contents, to release it."""
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    job = _slurm_job()
    mine = json.dumps({**owner, "slurm_job": job} if job else owner)
    with _folder_mutex(lock.parent):
        _check_kind(lock)
        if _create(lock, mine):
            return mine
        owner = _read(lock)
        if owner is not None and not _stale(owner):
            raise _in_use(lock, owner)
        what = "an unreadable lock" if owner is None else f"the lock of {owner_text(owner)}"
        print(f"dcc: note: {lock.parent}: taking over {what}, which is no longer running", file=sys.stderr)
        lock.unlink(missing_ok=True)
        if not _create(lock, mine):  # pragma: no cover - only without flock
            raise UserError(f"{lock.parent} was just taken by another run")
    return mine


def _in_use(lock: Path, owner: dict) -> UserError:
    return UserError(
        f"{lock.parent} is in use by {owner_text(owner)}; wait for that run to end, "
        f"or remove {lock} if it is no longer running"
    )


def _check_kind(lock: Path) -> None:
    """A UserError when `lock` exists and is not a regular file (a folder cannot be taken over,
    a FIFO would block its reader for ever)."""
    try:
        mode = os.stat(lock).st_mode
    except OSError:
        return  # missing (or unreadable: the creation says so)
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UserError(f"{lock} is {kind}, not a lock file; remove it if no run is using {lock.parent}")


def _create(lock: Path, text: str) -> bool:
    """Create `lock` holding `text`; False when it exists already. A lock that cannot be written
    whole (a full disk) is removed again and is a UserError."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise UserError(f"cannot create {lock} ({exc.strerror or exc}); nothing was written") from None
    data = (text + "\n").encode()
    try:
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)
    except OSError as exc:
        lock.unlink(missing_ok=True)
        raise UserError(f"cannot write {lock} ({exc.strerror or exc}); nothing was written") from None
    return True


def _read_text(lock: Path) -> str | None:
    """The text of the regular file `lock` (opened without blocking), or None."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 1 << 16).decode()
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _read(lock: Path) -> dict | None:
    """The lock's owner, or None when the file is unreadable (a crash while writing it)."""
    try:
        owner = json.loads(_read_text(lock) or "")
    except (ValueError, RecursionError):
        return None
    return owner if isinstance(owner, dict) else None


def _stale(owner: dict) -> bool:
    """The owner is known to be gone: this host, and its pid is not a live process."""
    pid = owner.get("pid")
    if type(pid) is not int or pid <= 0:
        return True
    if owner.get("host") != socket.gethostname():
        return _slurm_job_gone(owner.get("slurm_job"))  # its process cannot be checked from here
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def _slurm_job() -> str | None:
    from dcclib.slurm_queue import job_here

    return job_here()


def _slurm_job_gone(job: object) -> bool:
    """The lock's Slurm job is this one (a former run of it) or no longer queued (see the doc)."""
    if not isinstance(job, str) or not job:
        return False
    from dcclib import slurm_queue

    return job == slurm_queue.job_here() or slurm_queue.job_gone(job, slurm_queue.queue()) is True


def _release(lock: Path, mine: str) -> None:
    """Remove `lock` if it is still this process's (it may have been removed by hand)."""
    with _folder_mutex(lock.parent):
        try:
            if (_read_text(lock) or "").strip() == mine:
                lock.unlink()
        except OSError:
            pass
