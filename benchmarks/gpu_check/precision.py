"""Section precision: the opt-in precisions timed apart from the strict fp32 of every other
section. Condensation in tf32 against fp32 (DSAC, the main ipc); evaluation in tf32 and bf16
against the fp32 grouped run of section evaluate."""

from __future__ import annotations

import statistics
from dataclasses import replace

import _common as C

from dcclib.condense import CondenseConfig, initial_synthetic, outer_iteration
from dcclib.evaluate import EvalConfig, evaluate_set, random_subset

from .outer import run_outer
from .plan import OUTER_INDEX
from .record import Ctx


def sec_precision(ctx: Ctx, section: str) -> None:
    p, dev = ctx.plan, ctx.device
    key, ipc, _ = p.condense["condense_main"]
    data = ctx.data[key]
    mode = ctx.decisions.get("classwise_mode", {}).get("value") or "loop"
    fp32 = next(
        (
            r
            for r in ctx.condense_rows
            if r["method"] == "dsac"
            and r["ipc"] == ipc
            and r["dataset"] == data.name
            and r["mode"] == f"fast-{mode}"
        ),
        None,
    )
    est = (fp32 or {}).get("seconds_per_outer") or (fp32 or {}).get("seconds_per_outer_estimated")
    if ctx.fits(est):
        try:
            base = CondenseConfig(
                dataset=data.name,
                method="dsac",
                ipc=ipc,
                inner_iterations=p.inner_iterations,
                net_epochs=p.net_epochs,
                batch_real=p.batch_real,
                model=p.model,
                classwise_mode=mode,
            ).resolved()
            start, labels = initial_synthetic(data, base)
            out = {}
            for precision in ("tf32", "fp32"):
                cfg = replace(base, precision=precision)
                wall, _, img = C.timed(
                    lambda c=cfg: run_outer(outer_iteration, c, data, start, labels, OUTER_INDEX), dev
                )
                out[precision] = (wall, img)
                if not ctx.fits(est):
                    break
            row = {
                "bench": "condense",
                "dataset": data.name,
                "method": "dsac",
                "ipc": ipc,
                "mode": f"fast-{mode}-tf32",
                "precision": "tf32",
                "seconds_per_outer": out["tf32"][0],
                "ratio_fp32_over_this": out["fp32"][0] / out["tf32"][0] if "fp32" in out else None,
                "max_abs_diff_vs_fp32": float((out["tf32"][1] - out["fp32"][1]).abs().max())
                if "fp32" in out
                else None,
            }
            ctx.rec.write(section, "result", **row)
        except Exception as exc:
            ctx.error(section, exc, what="condensation tf32")
    else:
        ctx.skip(section, "condensation tf32", est)
    ipc = p.eval_ipcs[0]
    e2 = p.eval_epochs[ipc][1]
    gmax = max(p.eval_groups)
    ref = next((r for r in ctx.eval_rows if r["ipc"] == ipc and r["mode"] == f"batched-{gmax}-grouped"), None)
    x, y = random_subset(ctx.data["cifar10"], ipc, seed=0)
    for precision in ("tf32", "bf16"):
        est = ref["seconds"] if ref else None
        if not ctx.fits(est):
            ctx.skip(section, f"evaluation {precision}", est)
            continue
        try:
            cfg = EvalConfig(
                models=(p.model,),
                num_nets=p.eval_nets,
                epochs=e2,
                parallel_nets=gmax,
                batched_impl="grouped",
                precision=precision,
            )
            wall, _, res = C.timed(lambda c=cfg: evaluate_set(x, y, ctx.data["cifar10"], "dsac", c), dev)
            accs = res[0].accuracies
            ctx.rec.write(
                section,
                "result",
                bench="evaluate",
                ipc=ipc,
                mode=f"batched-{gmax}-grouped-{precision}",
                precision=precision,
                epochs=e2,
                num_nets=p.eval_nets,
                seconds=wall,
                ratio_fp32_over_this=(ref["seconds"] / wall) if ref else None,
                acc_mean=statistics.fmean(accs),
                acc_std=statistics.pstdev(accs),
                acc_mean_fp32=ref["acc_mean"] if ref else None,
            )
        except Exception as exc:
            ctx.error(section, exc, what=f"evaluation {precision}")
