"""Recording: every result is one JSON line, flushed and synced the moment it exists; the run's
context (`Ctx`) that each section gets: the plan, the device, the data, the rows so far, and the
time left in the section."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import _common  # noqa: F401 (puts the checkout on sys.path)
import torch

from dcclib.data import ImageDataset

from .plan import MIN_START_S, Plan


def jsonable(v: object) -> object:
    if isinstance(v, float):
        return v if math.isfinite(v) else None  # JSON has no NaN
    if isinstance(v, torch.Tensor):
        return jsonable(v.item()) if v.numel() == 1 else [jsonable(x) for x in v.flatten().tolist()]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, Path | torch.device):
        return str(v)
    return v


class Recorder:
    """Rows of one run into `path`; `t0`: when the run's budget began (time.monotonic())."""

    def __init__(self, path: Path, run: str, t0: float) -> None:
        self.path, self.run, self.t0 = path, run, t0
        self.lock = threading.Lock()
        self.rows: list[dict] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, section: str, kind: str, **fields: object) -> dict:
        head = {
            "check": "gpu_check",
            "run": self.run,
            "section": section,
            "kind": kind,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
        }
        # a field named like a header key is kept under another name, never over the header
        row = jsonable({**head, **{(f"field_{k}" if k in head else k): v for k, v in fields.items()}})
        line = json.dumps(row, default=str)  # anything unexpected as text, never a lost row
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.rows.append(row)
        brief = {
            k: row[k] for k in ("method", "ipc", "mode", "seconds_per_outer", "status", "error") if k in row
        }
        print(f"[gpu-check {row['elapsed_s']:6.1f}s] {section} {kind} {json.dumps(brief)[:200]}", flush=True)
        return row


@dataclass
class Ctx:
    args: argparse.Namespace
    plan: Plan
    device: torch.device
    rec: Recorder
    defaults_file: Path | None
    tiny: bool
    deadline: float = 0.0  # of the current section (monotonic)
    data: dict[str, ImageDataset] = field(default_factory=dict)
    data_kind: dict[str, str] = field(default_factory=dict)
    condense_rows: list[dict] = field(default_factory=list)
    eval_rows: list[dict] = field(default_factory=list)
    memory_rows: list[dict] = field(default_factory=list)
    failed_modes: set[str] = field(default_factory=set)  # class-wise modes that failed a check
    problems: list[str] = field(default_factory=list)  # within-section errors and skips
    decisions: dict = field(default_factory=dict)

    def left(self) -> float:
        """Seconds left for the current section (its cap, within the global budget)."""
        return self.deadline - time.monotonic()

    def fits(self, estimate: float | None) -> bool:
        return self.left() > (MIN_START_S if estimate is None else 1.1 * estimate)

    def skip(self, section: str, what: str, estimate: float | None = None) -> None:
        reason = f"time: {self.left():.1f} s left in the section" + (
            f", estimated {estimate:.1f} s" if estimate is not None else ""
        )
        self.problems.append(f"skipped {what}")
        self.rec.write(section, "skipped", what=what, reason=reason)

    def error(self, section: str, exc: BaseException, **where: object) -> None:
        self.problems.append(f"error {where}: {type(exc).__name__}")
        self.rec.write(section, "error", error=one_line(exc), traceback=_tail(exc), **where)
        free_memory(self.device)


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def _tail(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:]


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
