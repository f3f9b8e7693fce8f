"""Defaults measured on a GPU by `make gpu-check` (benchmarks/gpu_check.py), read at import.

`dcclib/measured_defaults.json` holds, per device type, the settings that the check decided
from its own measurements and where they come from:

    {"cuda": {"classwise_mode": "loop", "parallel_nets_budget_bytes": 25769803776,
              "measured_on": "NVIDIA H200", "date": "2026-...", "source": "make gpu-check"}}

`condense_config.CLASSWISE_AUTO["cuda"]` and `evaluate.GPU_BATCH_BUDGET_BYTES` read it through
`measured_default`. A setting without a measured entry (the file as committed before any GPU
run, a missing or unreadable file, a value of the wrong kind) keeps the provisional value the
caller passes, and `provenance` says "provisional". `$DCC_MEASURED_DEFAULTS` names another file
(a site's own measurements, tests). Standard library only: any module may import this one.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DEFAULTS_FILE = Path(__file__).with_name("measured_defaults.json")
ENV_VAR = "DCC_MEASURED_DEFAULTS"
PROVISIONAL = "provisional"


def defaults_path() -> Path:
    """The file read: `$DCC_MEASURED_DEFAULTS` when set, else dcclib/measured_defaults.json."""
    return Path(os.environ.get(ENV_VAR) or DEFAULTS_FILE)


def load_measured(path: str | os.PathLike[str] | None = None) -> dict[str, dict]:
    """{device type: {setting: value, ...}} from the file; {} when it is missing or unreadable
    (a warning then says why: a damaged file never stops an import)."""
    p = Path(path) if path is not None else defaults_path()
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring {p} ({exc}); using the provisional defaults", stacklevel=2)
        return {}
    if not isinstance(data, dict):
        warnings.warn(f"ignoring {p} (not a JSON object); using the provisional defaults", stacklevel=2)
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _entry(device_type: str, key: str, path: str | os.PathLike[str] | None) -> tuple[dict, object]:
    entry = load_measured(path).get(device_type, {})
    return entry, entry.get(key)


def measured_default(
    device_type: str,
    key: str,
    provisional: T,
    valid: Callable[[object], bool] = lambda value: True,
    path: str | os.PathLike[str] | None = None,
) -> T:
    """The measured value of `key` for `device_type`, or `provisional` when there is none (or
    it fails `valid`: a wrong value is never used)."""
    _, value = _entry(device_type, key, path)
    if value is None:
        return provisional
    if not valid(value):
        warnings.warn(
            f"ignoring the measured {device_type} {key}={value!r} in {path or defaults_path()}: "
            f"not a valid value; using the provisional {provisional!r}",
            stacklevel=2,
        )
        return provisional
    return value  # type: ignore[return-value]


def provenance(device_type: str, key: str, path: str | os.PathLike[str] | None = None) -> str:
    """Where the default of `key` comes from: 'measured on <device>, <date> (<source>)' or
    'provisional'."""
    entry, value = _entry(device_type, key, path)
    if value is None:
        return PROVISIONAL
    where = entry.get("measured_on", "an unnamed device")
    when = entry.get("date", "an unknown date")
    return f"measured on {where}, {when} ({entry.get('source', 'unknown source')})"
