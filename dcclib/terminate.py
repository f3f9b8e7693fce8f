"""SIGTERM as an exception: a terminated command unwinds like KeyboardInterrupt (locks released,
temporaries removed, the last checkpoint kept) and `dcc` says so in one line (exit 143)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt (locks released, temporaries removed)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated in the block (the main thread only: elsewhere it stays as it was)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:  # a handler installed outside Python reads as None: the default is what it did
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
