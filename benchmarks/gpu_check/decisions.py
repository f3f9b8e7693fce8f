"""Section decisions: the CUDA defaults marked provisional in dcclib (classwise_mode, the stacked-
evaluation budget behind parallel_nets), decided from what was measured and merged into the
defaults file (dcclib/measured_defaults.json on a full CUDA run; read by dcclib at import, see
dcclib/measured.py). The condensation and evaluation sections decide too, as soon as they have
measured, so a run stopped later still leaves its decisions."""

from __future__ import annotations

import json
import math
import os
import statistics

import _common as C
import torch

from dcclib.evaluate import EvalConfig
from dcclib.runtime import activation_bytes_per_image

from .record import Ctx, jsonable, now_utc


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def decide_classwise(ctx: Ctx) -> dict:
    """vmap when it is at least 2% faster than loop (geometric mean of vmap/loop seconds per
    outer iteration over every measured setting), else loop; a mode that failed a correctness
    check on this device is never chosen."""
    pairs, basis = [], "measured"
    for estimated in (False, True):
        by: dict[tuple, dict[str, float]] = {}
        for r in ctx.condense_rows:
            v = r["seconds_per_outer_estimated"] if estimated else r["seconds_per_outer"]
            if r["mode"] in ("fast-loop", "fast-vmap") and v:
                by.setdefault((r["dataset"], r["ipc"], r["method"]), {})[r["mode"]] = v
        pairs = [(k, m["fast-vmap"] / m["fast-loop"]) for k, m in by.items() if len(m) == 2]
        if pairs:
            basis = "estimated from probes" if estimated else "measured"
            break
    rule = "vmap if geomean(vmap/loop) < 0.98 else loop; never a mode that failed a correctness check"
    if not pairs:
        return {"value": None, "status": "not measured", "rule": rule}
    g = geomean([r for _, r in pairs])
    value = "vmap" if g < 0.98 else "loop"
    if value in ctx.failed_modes:
        value = "loop" if value == "vmap" else "vmap"
    if value in ctx.failed_modes:
        return {"value": None, "status": "both modes failed a correctness check", "rule": rule}
    return {
        "value": value,
        "status": "measured",
        "basis": basis,
        "rule": rule,
        "geomean_vmap_over_loop": g,
        "failed_modes": sorted(ctx.failed_modes),
        "settings": [{"dataset": k[0], "ipc": k[1], "method": k[2], "vmap_over_loop": r} for k, r in pairs],
    }


def decide_parallel_nets(ctx: Ctx) -> dict:
    """The stacked-evaluation budget: from the protocol's extrapolated seconds for 20 networks
    (first evaluation ipc), the smallest group within 5% of the fastest; 0 bytes (one network
    at a time) unless stacking saves at least 10%. Budget = group x the per-network estimate of
    evaluate.resolve_parallel_nets (batch 256 x activation_bytes_per_image), rounded up to GiB."""
    p = ctx.plan
    rule = (
        "group g* = smallest with protocol time <= 1.05 x the best; budget = 0 (sequential) unless "
        "the best stacked group is >= 10% faster than one at a time; else ceil(g* x per-net bytes, GiB)"
    )
    ipc = p.eval_ipcs[0]
    times: dict[int, float] = {}
    peaks: dict[int, float | None] = {}
    for r in ctx.eval_rows:
        if r["ipc"] != ipc:
            continue
        if r["mode"] == "sequential":
            times[1], peaks[1] = r["protocol_seconds_extrapolated"], r["peak_gpu_gb"]
        elif r["mode"].startswith("batched-") and r["mode"].endswith("-grouped"):
            g = int(r["mode"].split("-")[1])
            times[g], peaks[g] = r["protocol_seconds_extrapolated"], r["peak_gpu_gb"]
    times = {g: v for g, v in times.items() if isinstance(v, int | float) and v > 0}
    if 1 not in times or len(times) < 2:
        return {"value": None, "status": "not measured", "rule": rule}
    data = ctx.data["cifar10"]
    per_net = EvalConfig().batch_size * activation_bytes_per_image(
        p.model, data.channels, data.num_classes, data.image_size
    )
    best = min(times.values())
    stacked_best = min(v for g, v in times.items() if g > 1)
    if stacked_best > 0.9 * times[1]:
        group, value = 1, 0
    else:
        group = min(g for g, v in times.items() if g > 1 and v <= 1.05 * best)
        value = math.ceil(group * per_net / 2**30) * 2**30
    return {
        "value": int(value),
        "status": "measured",
        "rule": rule,
        "group": group,
        "per_net_bytes_estimate": per_net,
        "ipc": ipc,
        "protocol_seconds_by_group": {str(g): v for g, v in sorted(times.items())},
        "peak_gpu_gb_by_group": {str(g): v for g, v in sorted(peaks.items())},
        "nets_per_group_at_budget": max(1, value // per_net) if value else 1,
    }


def decide(ctx: Ctx, section: str, final: bool) -> dict:
    """Decide what can be decided so far; write it (atomically) to the defaults file; record it."""
    dev = ctx.device
    ctx.decisions = {
        "classwise_mode": decide_classwise(ctx),
        "parallel_nets_budget_bytes": decide_parallel_nets(ctx),
    }
    key = defaults_key(ctx)
    written = None
    if ctx.defaults_file is not None and any(d["value"] is not None for d in ctx.decisions.values()):
        try:
            write_defaults(ctx, key)
            written = str(ctx.defaults_file)
        except Exception as exc:
            ctx.error(section, exc, what="writing the defaults file")
    return ctx.rec.write(
        section,
        "decision",
        final=final,
        device_type=key,
        device=C.device_name(dev),
        written_to=written,
        decisions=ctx.decisions,
    )


def defaults_key(ctx: Ctx) -> str:
    """The entry of the defaults file: "cuda" (the one dcclib reads); a tiny run never counts."""
    return ctx.device.type + ("-tiny" if ctx.tiny else "")


def write_defaults(ctx: Ctx, key: str, extra: dict | None = None) -> None:
    """Merge this run's decisions (and `extra`) into the entry `key` of the defaults file."""
    path = ctx.defaults_file
    assert path is not None
    try:
        current = json.loads(path.read_text()) if path.exists() else {}
        current = current if isinstance(current, dict) else {}
    except ValueError:
        current = {}
    entry = dict(current.get(key) or {})
    for name, d in ctx.decisions.items():
        if d["value"] is not None:
            entry[name] = d["value"]
    try:
        report = str(ctx.rec.path.resolve().relative_to(C.ROOT))
    except ValueError:
        report = str(ctx.rec.path)
    entry.update(
        measured_on=C.device_name(ctx.device),
        date=now_utc(),
        source="make gpu-check",
        report=report,
        torch=torch.__version__,
        run=ctx.rec.run,
        tiny=ctx.tiny,
        data=dict(ctx.data_kind),
        evidence={k: {x: v for x, v in d.items() if x != "rule"} for k, d in ctx.decisions.items()},
        **(extra or {}),
    )
    current[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(jsonable(current), indent=2) + "\n")
    os.replace(tmp, path)


def sec_decisions(ctx: Ctx, section: str) -> None:
    decide(ctx, section, final=True)
