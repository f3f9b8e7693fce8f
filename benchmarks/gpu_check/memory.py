"""Section memory_cifar100_ipc50: CIFAR-100 ipc 50 with real_chunk auto. Peak memory of one image
update (each method), of one unchunked DCC update (what chunking saves; out of memory is a result
here), and of one outer iteration at the paper's K_i (and T when it fits)."""

from __future__ import annotations

import resource

import _common as C
import torch

from dcclib.condense import (
    CLASSWISE_AUTO,
    CondenseConfig,
    initial_synthetic,
    outer_iteration,
    resolve_real_chunk,
)

from .outer import run_outer
from .plan import OUTER_INDEX
from .record import Ctx, free_memory


def sec_memory(ctx: Ctx, section: str) -> None:
    p, dev = ctx.plan, ctx.device
    key, ipc, methods, full_method = p.memory
    data = ctx.data[key]
    mode = ctx.decisions.get("classwise_mode", {}).get("value") or CLASSWISE_AUTO.get(dev.type, "loop")
    total_memory = torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.type == "cuda" else None
    update_s: dict[str, float] = {}

    def step(method: str, chunk: str | None, k_i: int, t: int) -> dict:
        cfg = CondenseConfig(
            dataset=data.name,
            method=method,
            ipc=ipc,
            inner_iterations=k_i,
            net_epochs=t,
            batch_real=p.batch_real,
            model=p.model,
            real_chunk=chunk,
            classwise_mode=mode,
        ).resolved()
        syn, labels = initial_synthetic(data, cfg)
        free_memory(dev)
        resident = torch.cuda.memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
        C.reset_peak(dev)
        wall, _, out = C.timed(lambda: run_outer(outer_iteration, cfg, data, syn, labels, OUTER_INDEX), dev)
        total_real = sum(min(cfg.batch_real, n) for n in data.class_counts.tolist())
        return {
            "bench": "memory",
            "dataset": data.name,
            "data": ctx.data_kind.get(key),
            "method": method,
            "ipc": ipc,
            "model": cfg.model,
            "classwise_mode": mode,
            "K_i": k_i,
            "T": t,
            "real_images": total_real,
            "real_chunk_setting": str(chunk),
            "chunk_budget_mb": cfg.chunk_budget_mb,
            "real_chunk": resolve_real_chunk(cfg, data, total_real),
            "seconds": wall,
            "peak_gpu_gb": C.peak_gb(dev),
            "resident_before_gb": resident,  # the datasets on the device: part of the peak
            "device_memory_gb": total_memory,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "images_sum": float(out.double().sum()),
        }

    for method in methods:  # one image update each (the peak is in the matching step)
        if not ctx.fits(None):
            ctx.skip(section, f"one update {method}")
            continue
        try:
            row = ctx.rec.write(section, "result", what="one image update", **step(method, "auto", 1, 0))
            ctx.memory_rows.append(row)
            update_s[method] = row["seconds"]
        except Exception as exc:
            ctx.error(section, exc, method=method, real_chunk="auto")
    if ctx.fits(update_s.get("dcc")):  # unchunked: what chunking saves (may not fit the card)
        try:
            row = ctx.rec.write(
                section, "result", what="one image update, unchunked", **step("dcc", None, 1, 0)
            )
            ctx.memory_rows.append(row)
        except Exception as exc:  # out of memory is a result here
            ctx.error(
                section, exc, method="dcc", real_chunk="none", bench="memory", real_chunk_setting="none"
            )
    else:
        ctx.skip(section, "one image update, unchunked", update_s.get("dcc"))
    # one outer iteration at the paper's K_i (and T when it fits)
    try:
        base = CondenseConfig(
            dataset=data.name,
            method=full_method,
            ipc=ipc,
            inner_iterations=p.inner_iterations,
            net_epochs=p.net_epochs,
        ).resolved()
        k_i, t = base.inner_iterations, base.net_epochs
        first = update_s.get(full_method)
        if not ctx.fits(3 * first if first else None):
            ctx.skip(section, f"outer iteration {full_method} K_i={k_i}", 3 * first if first else None)
            return
        probe = step(full_method, "auto", 2, t)  # two updates and the T epochs between them
        ctx.memory_rows.append(
            ctx.rec.write(section, "result", what="two image updates and T epochs", **probe)
        )
        upd = update_s.get(full_method) or probe["seconds"] / 2
        gap = max(probe["seconds"] - 2 * upd, 0.0)
        paper_est = k_i * upd + (k_i - 1) * gap
        plans = [(k_i, t, "the paper's K_i and T", paper_est)]
        if t > 1:
            why = "the paper's K_i, T = 1 to fit the time (the peak is in the matching step)"
            plans.append((k_i, 1, why, k_i * upd + (k_i - 1) * gap / t))
        for ki, tt, what, est in plans:
            if ctx.fits(est):
                row = ctx.rec.write(
                    section,
                    "result",
                    what=f"one outer iteration, {what}",
                    estimate_s=est,
                    paper_outer_seconds_estimated=paper_est,
                    **step(full_method, "auto", ki, tt),
                )
                ctx.memory_rows.append(row)
                return
        ctx.skip(section, f"outer iteration {full_method} K_i={k_i}", plans[-1][3])
        ctx.rec.write(
            section,
            "result",
            what="outer iteration estimated from probes",
            method=full_method,
            ipc=ipc,
            K_i=k_i,
            T=t,
            seconds_per_image_update=upd,
            seconds_per_train_epoch=gap / t if t else 0.0,
            paper_outer_seconds_estimated=paper_est,
            peak_gpu_gb=probe["peak_gpu_gb"],
        )
    except Exception as exc:
        ctx.error(section, exc, method=full_method, what="outer iteration")
