"""Sections correctness_matching, correctness_outer, correctness_evaluate: the device against the
CPU (and float64), fast == literal on the device, batched evaluation == one network at a time.
A class-wise mode whose difference is wrong, not rounding (plan.WRONG), goes into
ctx.failed_modes and is never chosen as a default (decisions.py)."""

from __future__ import annotations

from dataclasses import replace

import _common  # noqa: F401 (puts the checkout on sys.path)
import torch

from dcclib import batched
from dcclib.augment import DSA_FULL, DSAParams, apply_dsa, sample_dsa
from dcclib.condense import CondenseConfig, initial_synthetic, outer_iteration
from dcclib.evaluate import EvalConfig, evaluate_set, random_subset
from dcclib.matching import dc_loss, dcc_loss
from dcclib.methods import condensation_method
from dcclib.models import create_model
from dcclib.runtime import precision_context

from .data import prototype_dataset
from .outer import literal_strict, run_outer
from .plan import MIN_START_S, OUTER_INDEX, WRONG
from .record import Ctx


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def sec_correctness_matching(ctx: Ctx, section: str) -> None:
    """dc_loss / dcc_loss (DSA draw fixed for DSA/DSAC) on the device against the CPU, both in
    float32, each against the CPU in float64: loss and d loss / d synthetic images."""
    p, dev = ctx.plan, ctx.device
    n_cls, k, ipc, size = p.check_classes, 6, 2, p.check_size
    g = torch.Generator().manual_seed(0)
    real = torch.randn(n_cls * k, 3, size, size, generator=g)
    syn = torch.randn(n_cls * ipc, 3, size, size, generator=g)
    real_y = torch.arange(n_cls).repeat_interleave(k)
    syn_y = torch.arange(n_cls).repeat_interleave(ipc)
    draw = sample_dsa(n_cls, DSA_FULL, DSAParams(), image_size=(size, size), device="cpu", generator=g)
    torch.manual_seed(0)
    state = create_model(p.model, 3, n_cls, (size, size)).state_dict()

    def case(method: str, mode: str, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        info = condensation_method(method)
        net = create_model(p.model, 3, n_cls, (size, size))
        net.load_state_dict(state)
        net = net.to(device=device, dtype=dtype)
        rx, sx = real.to(device, dtype), syn.to(device, dtype).requires_grad_(True)
        ry, sy = real_y.to(device), syn_y.to(device)
        with precision_context("fp32", device):
            xr, xs = rx, sx
            if info.uses_dsa:
                d = draw.to(device)
                xr = apply_dsa(rx, d.index(ry), DSA_FULL)
                xs = apply_dsa(sx, d.index(sy), DSA_FULL)
            counts = ([k] * n_cls, [ipc] * n_cls)
            if info.contrastive:
                loss = dcc_loss(net, xr, ry, xs, sy, *counts, "layerwise", None, mode)
            else:
                loss = dc_loss(net, xr, ry, xs, sy, *counts, "layerwise", mode)
            (grad,) = torch.autograd.grad(loss, sx)
        return loss.detach(), grad.detach()

    cpu = torch.device("cpu")
    for method in ("dc", "dsa", "dcc", "dsac"):
        if ctx.left() < MIN_START_S:
            ctx.skip(section, f"matching {method} (float64 reference)")
            continue
        try:
            ref_loss, ref_grad = case(method, "loop", cpu, torch.float64)
        except Exception as exc:
            ctx.error(section, exc, method=method, what="float64 reference")
            continue
        for mode in ("loop", "vmap"):
            if ctx.left() < MIN_START_S:
                ctx.skip(section, f"matching {method} {mode}")
                continue
            try:
                l32, g32 = case(method, mode, cpu, torch.float32)
                ld, gd = case(method, mode, dev, torch.float32)
                errs = {
                    "loss_rel_err_device": rel_err(ld, ref_loss),
                    "loss_rel_err_cpu32": rel_err(l32, ref_loss),
                    "grad_rel_err_device": rel_err(gd, ref_grad),
                    "grad_rel_err_cpu32": rel_err(g32, ref_grad),
                    "grad_rel_diff_device_vs_cpu32": rel_err(gd, g32),
                }
                tol = 1e-3  # relative to the float64 value; or 10x the CPU's own float32 error
                ok = all(
                    errs[f"{q}_rel_err_device"] <= max(tol, 10 * errs[f"{q}_rel_err_cpu32"])
                    for q in ("loss", "grad")
                )
                wrong = errs["grad_rel_err_device"] > max(WRONG, 100 * errs["grad_rel_err_cpu32"])
                if wrong:  # not rounding: the mode is never chosen as a default
                    ctx.failed_modes.add(mode)
                ctx.rec.write(
                    section,
                    "result",
                    what="matching loss and image gradient",
                    method=method,
                    mode=mode,
                    reference="cpu float64",
                    device=str(dev),
                    loss=float(ref_loss),
                    tolerance=tol,
                    passed=ok,
                    wrong=wrong,
                    **errs,
                )
            except Exception as exc:
                ctx.failed_modes.add(mode)
                ctx.error(section, exc, method=method, mode=mode)


def sec_correctness_outer(ctx: Ctx, section: str) -> None:
    p, dev = ctx.plan, ctx.device
    size, n_cls = p.check_size, p.check_classes
    host = prototype_dataset("check", n_cls, 6, 2, size, 1.0, seed=1)
    on_dev = host.to(dev)
    # (a) device against CPU. Randomness is drawn on each device's own generator, so only what
    # does not depend on it is comparable: whole classes as the real batch (batch_real = class
    # size: the order inside a class does not change a class mean) and one training batch
    # (batch_train >= the set: the shuffle does not change the mean loss); no DSA.
    for method in ("dc", "dcc"):
        for mode in ("loop", "vmap"):
            if ctx.left() < MIN_START_S:
                ctx.skip(section, f"outer_iteration device vs cpu {method} {mode}")
                continue
            try:
                cfg = CondenseConfig(
                    dataset="check",
                    method=method,
                    ipc=2,
                    inner_iterations=2,
                    net_epochs=1,
                    batch_real=6,
                    batch_train=256,
                    model=p.model,
                    real_chunk=None,
                    classwise_mode=mode,
                    seed=0,
                ).resolved()
                start = torch.randn(n_cls * 2, 3, size, size, generator=torch.Generator().manual_seed(2))
                labels = torch.arange(n_cls).repeat_interleave(2)
                ref_cfg = replace(cfg, classwise_mode="loop")
                ref = run_outer(outer_iteration, ref_cfg, host, start, labels, OUTER_INDEX)
                got = run_outer(outer_iteration, cfg, on_dev, start.to(dev), labels.to(dev), OUTER_INDEX)
                update = (ref - start).abs().max().clamp_min(1e-30)
                diff = float((got.cpu() - ref).abs().max() / update)
                ok, wrong = diff <= 1e-3, diff > WRONG
                if wrong:
                    ctx.failed_modes.add(mode)
                ctx.rec.write(
                    section,
                    "result",
                    what="outer_iteration device vs cpu",
                    method=method,
                    mode=mode,
                    outer_index=OUTER_INDEX,
                    K_i=2,
                    T=1,
                    rel_diff_of_update=diff,
                    tolerance=1e-3,
                    passed=ok,
                    wrong=wrong,
                )
            except Exception as exc:
                ctx.failed_modes.add(mode)
                ctx.error(section, exc, method=method, mode=mode, what="outer_iteration device vs cpu")
    ctx.rec.write(
        section,
        "note",
        what="outer_iteration device vs cpu",
        methods=["dsa", "dsac"],
        note="not comparable across devices (DSA draws come from the device's generator): checked "
        "by matching with a fixed draw (correctness_matching) and against literal on the device (below)",
    )
    # (b) fast == literal on the device: same device, same random streams, same images
    for method in ("dc", "dsa", "dcc", "dsac"):
        for mode in ("loop", "vmap"):
            if ctx.left() < MIN_START_S:
                ctx.skip(section, f"fast == literal {method} {mode}")
                continue
            try:
                cfg = CondenseConfig(
                    dataset="check",
                    method=method,
                    ipc=2,
                    inner_iterations=3,
                    net_epochs=2,
                    batch_real=5,
                    model=p.model,
                    gamma_outer=1,
                    gamma_inner=1,
                    seed=3,
                    real_chunk=None,
                    classwise_mode=mode,
                ).resolved()
                worst, rel, ok = 0.0, 0.0, True
                for outer in p.check_outers:  # outer 0: warm-up then contrastive steps (DCC/DSAC)
                    start, labels = initial_synthetic(on_dev, cfg)
                    fast = run_outer(outer_iteration, cfg, on_dev, start, labels, outer)
                    lit = run_outer(literal_strict, cfg, on_dev, start, labels, outer)
                    diff = float((fast - lit).abs().max())
                    worst = max(worst, diff)
                    rel = max(rel, diff / float((lit - start).abs().max().clamp_min(1e-30)))
                    ok = ok and bool(torch.allclose(fast, lit, rtol=1e-4, atol=2e-5))
                wrong = rel > WRONG
                if wrong:
                    ctx.failed_modes.add(mode)
                ctx.rec.write(
                    section,
                    "result",
                    what="fast == literal on the device",
                    method=method,
                    mode=mode,
                    max_abs_diff=worst,
                    rel_diff_of_update=rel,
                    tolerance="rtol 1e-4, atol 2e-5 (the test suite's)",
                    passed=ok,
                    wrong=wrong,
                )
            except Exception as exc:
                ctx.failed_modes.add(mode)
                ctx.error(section, exc, method=method, mode=mode, what="fast == literal on the device")


def sec_correctness_evaluate(ctx: Ctx, section: str) -> None:
    """evaluate_set: parallel_nets=1 against stacked groups (grouped and vmap), no augmentation."""
    p = ctx.plan
    data = prototype_dataset("noisy", 3, 30, 60, p.check_size, 1.6).to(ctx.device)
    x, y = random_subset(data, 10, seed=0)
    base = dict(models=(p.model, "mlp"), num_nets=5, epochs=3, augment="none", batch_size=16)
    one = evaluate_set(x, y, data, "dc", EvalConfig(**base, parallel_nets=1))
    for impl in ("auto", "vmap"):  # auto: grouped for the ConvNet, vmap for the MLP
        if ctx.left() < MIN_START_S:
            ctx.skip(section, f"batched == sequential, {impl}")
            continue
        try:
            many = evaluate_set(x, y, data, "dc", EvalConfig(**base, parallel_nets=5, batched_impl=impl))
            for a, b in zip(one, many):
                used = batched.resolve_impl(impl, create_model(a.model, 3, 3, data.image_size))
                diff = max(abs(u - v) for u, v in zip(a.accuracies, b.accuracies))
                ctx.rec.write(
                    section,
                    "result",
                    what="batched evaluation == sequential (augment none)",
                    model=a.model,
                    impl=used,
                    group=5,
                    num_nets=5,
                    epochs=3,
                    sequential=a.accuracies,
                    batched=b.accuracies,
                    max_abs_diff=diff,
                    distinct_accuracies=len(set(a.accuracies)),
                    passed=diff <= 1e-6,
                )
        except Exception as exc:
            ctx.error(section, exc, impl=impl)
