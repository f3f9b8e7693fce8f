"""Section targets: what the project asks of a GPU run (>= 10x against literal, a 30-minute DSAC
ipc 10 run, CIFAR-100 ipc 50 within 80 GB), from what was measured; and the achieved TFLOP/s that
the cost model reads, written next to the decisions."""

from __future__ import annotations

import statistics

from .decisions import defaults_key, write_defaults
from .plan import PAPER_OUTER_ITERATIONS
from .record import Ctx


def sec_targets(ctx: Ctx, section: str) -> None:
    p = ctx.plan
    mode = ctx.decisions.get("classwise_mode", {}).get("value") or "loop"
    main_key, main_ipc, _ = p.condense["condense_main"]
    main_name = ctx.data[main_key].name if main_key in ctx.data else None

    def cond(method: str, ipc: int, mode_: str, dataset: str | None = main_name) -> dict | None:
        return next(
            (
                r
                for r in ctx.condense_rows
                if r["method"] == method
                and r["ipc"] == ipc
                and r["mode"] == mode_
                and r["dataset"] == dataset
            ),
            None,
        )

    speedups = {}
    for method in ("dc", "dsa", "dcc", "dsac"):
        r = cond(method, main_ipc, f"fast-{mode}")
        if r:
            speedups[method] = r["ratio_literal_over_this"]
    dsac = cond("dsac", main_ipc, f"fast-{mode}")
    per_outer = (dsac or {}).get("seconds_per_outer") or (dsac or {}).get("seconds_per_outer_estimated")
    gmax = max(p.eval_groups)
    ev = next(
        (r for r in ctx.eval_rows if r["ipc"] == p.eval_ipcs[0] and r["mode"] == f"batched-{gmax}-grouped"),
        None,
    )
    run_s = (
        (per_outer * PAPER_OUTER_ITERATIONS + (ev or {}).get("protocol_seconds_extrapolated", 0))
        if per_outer
        else None
    )
    c100 = [r for r in ctx.memory_rows if r.get("real_chunk_setting") == "auto" and r.get("peak_gpu_gb")]
    condense_tflops = [
        r["achieved_tflops"]
        for r in ctx.condense_rows
        if r.get("achieved_tflops") and r["mode"] == f"fast-{mode}"
    ]
    eval_tflops = [
        r["achieved_tflops"]
        for r in ctx.eval_rows
        if r.get("achieved_tflops") and r["mode"] == f"batched-{gmax}-grouped"
    ]
    ctx.rec.write(
        section,
        "summary",
        classwise_mode=mode,
        condense_speedup_vs_literal_at_main_ipc=speedups,
        condense_target=">= 10x at ipc 10",
        evaluate_speedup_vs_literal=(ev or {}).get("ratio_vs_literal"),
        evaluate_speedup_vs_sequential=(ev or {}).get("ratio_vs_sequential"),
        evaluate_target=">= 10x",
        dsac_ipc10_paper_run_seconds=run_s,
        dsac_ipc10_target_seconds=1800,
        dsac_ipc10_parts={
            "condense_seconds_per_outer": per_outer,
            "evaluation_protocol_seconds": (ev or {}).get("protocol_seconds_extrapolated"),
        },
        cifar100_ipc50_peak_gpu_gb=max((r["peak_gpu_gb"] for r in c100), default=None),
        cifar100_target_gb=80,
        condense_achieved_tflops_median=statistics.median(condense_tflops) if condense_tflops else None,
        evaluate_achieved_tflops_median=statistics.median(eval_tflops) if eval_tflops else None,
        paper_shapes=not ctx.tiny,
        data=dict(ctx.data_kind),
    )
    throughput = {
        "condense": statistics.median(condense_tflops) if condense_tflops else None,
        "evaluate": statistics.median(eval_tflops) if eval_tflops else None,
    }
    has_decision = any(d.get("value") is not None for d in ctx.decisions.values())
    if ctx.defaults_file is not None and has_decision and any(v is not None for v in throughput.values()):
        # the cost model's measured throughput (issue 12), next to the decisions it came with
        write_defaults(ctx, defaults_key(ctx), extra={"achieved_tflops_median": throughput})
