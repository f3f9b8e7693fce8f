"""Read the pickled batch files of official dataset releases without executing code.

CIFAR-10/100 python batches and the ImageNet32 batches are pickles of plain dicts holding
numpy arrays, lists, strings and numbers. ``pickle.load`` would run whatever a file names;
this unpickler only rebuilds numpy arrays and refuses any other global, so a tampered file
raises an error instead of running code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from dcclib.errors import UserError

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allowed globals (builtins, numpy arrays)."""

    def find_class(self, module: str, name: str) -> Any:
        """The global `module.name` when it is allowed; an UnpicklingError otherwise."""
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_array_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Load a pickle that may only contain builtins and numpy arrays.

    Raises UserError (one line) for a missing, truncated or non-conforming file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    data = path.read_bytes()
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not a readable dataset batch file ({exc})") from None
