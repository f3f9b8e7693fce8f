"""Shared helpers of the benchmark scripts: timing with device sync, FLOP counting, JSON lines."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(ROOT))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of fn(), synchronised on both sides."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class RegistryFlops(TorchDispatchMode):
    """FlopCounterMode's formulas (`flop_registry`) without its module tracker, whose hooks
    refuse `torch.autograd.grad` inside a double backward (DCC's matching step)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn: Callable[[], object]) -> tuple[int, str]:
    """(FLOPs of fn(), counter used) as torch.utils.flop_counter counts them: matmuls and
    convolutions with their backward passes; elementwise work is not counted. Falls back to
    the same formulas without module tracking where FlopCounterMode cannot run."""
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops()), "FlopCounterMode"
    except RuntimeError:
        with RegistryFlops() as mode:
            fn()
        return mode.total, "flop_registry"


def median(values: list[float]) -> float:
    return statistics.median(values)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def emit(row: dict) -> None:
    print(json.dumps(row, sort_keys=False), flush=True)
