"""Sections condense_main, condense_ipc1, condense_ipc50, condense_cifar100_ipc10: seconds per
outer iteration at the paper's K_i and T, fast (loop, vmap) against literal, and TFLOP/s.

Every timing starts with two short probes per mode (K_i = 1, and K_i = 2 with the real T): they
warm the kernels up, give the seconds per image update and per T training epochs, and so an
estimate of a full outer iteration, which decides whether it fits the time left. FLOPs come the
same way (torch.utils.flop_counter on the probes, combined with K_i and T)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import _common as C
import torch

from dcclib.condense import CondenseConfig, initial_synthetic, outer_iteration, resolve_real_chunk

from .decisions import decide
from .outer import literal_strict, run_outer
from .plan import MIN_START_S, OUTER_INDEX, PAPER_OUTER_ITERATIONS
from .record import Ctx


def sec_condense(ctx: Ctx, section: str) -> None:
    key, ipc, methods = ctx.plan.condense[section]
    data = ctx.data[key]
    for i, method in enumerate(methods):
        share = ctx.left() / (len(methods) - i)  # the time left, shared by the methods to come
        if ctx.left() < MIN_START_S:
            ctx.skip(section, f"{key} ipc {ipc} {method}")
            continue
        try:
            bench_method(ctx, section, key, ipc, method, time.monotonic() + share)
        except Exception as exc:
            ctx.error(section, exc, dataset=data.name, ipc=ipc, method=method)
    decide(ctx, section, final=False)


def bench_method(ctx: Ctx, section: str, key: str, ipc: int, method: str, until: float) -> None:
    p, dev = ctx.plan, ctx.device
    data = ctx.data[key]
    base = CondenseConfig(
        dataset=data.name,
        method=method,
        ipc=ipc,
        inner_iterations=p.inner_iterations,
        net_epochs=p.net_epochs,
        batch_real=p.batch_real,
        model=p.model,
        real_chunk="auto",
    ).resolved()
    k_i, t = base.inner_iterations, base.net_epochs
    start, labels = initial_synthetic(data, base)
    runners = {
        "fast-loop": (outer_iteration, replace(base, classwise_mode="loop")),
        "fast-vmap": (outer_iteration, replace(base, classwise_mode="vmap")),
        "literal": (literal_strict, base),
    }

    def once(fn: Callable, cfg: CondenseConfig) -> tuple[float, torch.Tensor, float | None]:
        C.reset_peak(dev)
        wall, _, out = C.timed(lambda: run_outer(fn, cfg, data, start, labels, OUTER_INDEX), dev)
        return wall, out, C.peak_gb(dev)

    def left() -> float:
        return min(until, ctx.deadline) - time.monotonic()

    # probes: K_i = 1 (one image update: a) and K_i = 2 with the real T (two updates and the T
    # epochs between them: b), so a full outer iteration is K_i * a + (K_i - 1) * (b - 2a)
    # (gamma_i capped with K_i: a warm-up longer than its loop is refused, as the original asserts)
    one = dict(inner_iterations=1, net_epochs=0, gamma_inner=min(base.gamma_inner, 1))
    two = dict(inner_iterations=2, net_epochs=t, gamma_inner=min(base.gamma_inner, 2))
    once(outer_iteration, replace(runners["fast-loop"][1], **one))  # warm-up: kernels, allocator
    probe: dict[str, dict] = {}
    for name, (fn, cfg) in runners.items():
        if left() < MIN_START_S:
            ctx.skip(section, f"{data.name} ipc {ipc} {method} {name} (probes)")
            continue
        try:
            a = once(fn, replace(cfg, **one))[0]
            if left() < 3 * a:
                ctx.skip(section, f"{data.name} ipc {ipc} {method} {name} (second probe)", 3 * a)
                continue
            gap = max(once(fn, replace(cfg, **two))[0] - 2 * a, 0.0)  # T epochs of network training
            probe[name] = {
                "update": a,
                "epoch": gap / t if t else 0.0,
                "estimate": k_i * a + (k_i - 1) * gap,
            }
        except Exception as exc:
            if name != "literal":  # e.g. out of memory: the mode is not usable here
                ctx.failed_modes.add(name.removeprefix("fast-"))
            ctx.error(section, exc, dataset=data.name, ipc=ipc, method=method, mode=name, what="probe")
    flops, counter = None, None
    if not ctx.args.no_flops and left() > MIN_START_S:
        try:  # FLOPs of the two probes' configurations: any K_i from them
            cfg = runners["fast-loop"][1]
            fa, counter = C.count_flops(
                lambda: run_outer(outer_iteration, replace(cfg, **one), data, start, labels, OUTER_INDEX)
            )
            fb, _ = C.count_flops(
                lambda: run_outer(outer_iteration, replace(cfg, **two), data, start, labels, OUTER_INDEX)
            )
            flops = k_i * fa + (k_i - 1) * max(fb - 2 * fa, 0)
        except Exception as exc:
            ctx.error(section, exc, dataset=data.name, ipc=ipc, method=method, what="flop count")
    times: dict[str, list[float]] = {k: [] for k in probe}
    peaks: dict[str, float | None] = {}
    images: dict[str, torch.Tensor] = {}
    for _ in range(p.repeats):
        for name in probe:
            fn, cfg = runners[name]
            est = probe[name]["estimate"]
            if left() <= 1.1 * est:
                continue
            try:
                wall, out, peak = once(fn, cfg)
            except Exception as exc:
                if name != "literal":
                    ctx.failed_modes.add(name.removeprefix("fast-"))
                ctx.error(section, exc, dataset=data.name, ipc=ipc, method=method, mode=name)
                probe[name]["estimate"] = math.inf  # not again
                continue
            times[name].append(wall)
            peaks[name] = max(peak or 0.0, peaks.get(name) or 0.0) if peak is not None else None
            images.setdefault(name, out)
    for name, pr in probe.items():
        if not times[name] and math.isfinite(pr["estimate"]):
            ctx.skip(section, f"{data.name} ipc {ipc} {method} {name}: full outer iteration", pr["estimate"])
    total_real = sum(min(base.batch_real, n) for n in data.class_counts.tolist())
    per_outer = {k: (C.median(v) if v else None) for k, v in times.items()}
    lit = per_outer.get("literal")
    lit_basis = "measured"
    if lit is None and "literal" in probe and math.isfinite(probe["literal"]["estimate"]):
        lit, lit_basis = probe["literal"]["estimate"], "literal estimated from its probes"
    paper = p.inner_iterations is None and p.net_epochs is None and p.model == "convnet"
    for name, pr in probe.items():
        sec = per_outer[name]
        basis = sec if sec is not None else (pr["estimate"] if math.isfinite(pr["estimate"]) else None)
        diff = None
        if name != "literal" and name in images and "literal" in images:
            diff = float((images[name] - images["literal"]).abs().max())
        row = ctx.rec.write(
            section,
            "result",
            bench="condense",
            dataset=data.name,
            data=ctx.data_kind.get(key),
            method=method,
            ipc=ipc,
            model=base.model,
            K_i=k_i,
            T=t,
            batch_real=base.batch_real,
            outer_index=OUTER_INDEX,
            mode=name,
            real_chunk=resolve_real_chunk(base, data, total_real),
            precision=base.precision,
            repeats=len(times[name]),
            seconds=times[name],
            seconds_per_outer=sec,
            seconds_per_outer_estimated=pr["estimate"],
            seconds_per_image_update=pr["update"],
            seconds_per_train_epoch=pr["epoch"],
            ratio_literal_over_this=(lit / basis) if lit and basis else None,
            ratio_basis=lit_basis if sec is not None else "this estimated from its probes",
            max_abs_diff_vs_literal=diff,
            flops_per_outer=flops,
            flop_counter=counter,
            achieved_flops_per_s=(flops / sec) if flops and sec else None,
            achieved_tflops=(flops / sec / 1e12) if flops and sec else None,
            peak_gpu_gb=peaks.get(name),
            paper_run_seconds_extrapolated=(basis * PAPER_OUTER_ITERATIONS) if paper and basis else None,
            note=None if sec is not None else "not timed in full (time budget): the estimate only",
        )
        ctx.condense_rows.append(row)
