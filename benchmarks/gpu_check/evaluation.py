"""Section evaluate: 20 ConvNets on a random ipc-10 (then ipc-50) set, one at a time, literal,
batched 5/10/20 (grouped) and 20 (vmap). Two E values give the per-pass time, and from it the
protocol's E extrapolated."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import _common as C
from literal import literal_evaluate

from dcclib.augment import DSAParams, default_dsa_strategy, dsa_augment
from dcclib.data import ImageDataset
from dcclib.evaluate import EvalConfig, evaluate_set, protocol_defaults, random_subset

from .decisions import decide
from .plan import MIN_START_S
from .record import Ctx


def sec_evaluate(ctx: Ctx, section: str) -> None:
    p = ctx.plan
    data = ctx.data["cifar10"]
    method = "dsac"  # the paper's method: its protocol trains with DSA, E = 1000
    protocol_e, augment = protocol_defaults(method, data.name, p.model)
    strategy = default_dsa_strategy(data.name)
    gmax = max(p.eval_groups)

    def cfg_for(epochs: int, **over: object) -> EvalConfig:
        return EvalConfig(
            **{"models": (p.model,), "num_nets": p.eval_nets, "epochs": epochs, "augment": augment, **over}
        )

    x0, y0 = random_subset(data, p.eval_ipcs[0], seed=0)
    for group, impl in ((1, "auto"), (2, "grouped"), (2, "vmap")):  # warm-up
        evaluate_set(x0, y0, data, method, cfg_for(1, num_nets=2, parallel_nets=group, batched_impl=impl))
    for ipc in p.eval_ipcs:
        if ctx.left() < MIN_START_S:
            ctx.skip(section, f"evaluation ipc {ipc}")
            continue
        try:
            eval_ipc(ctx, section, data, ipc, method, protocol_e, augment, strategy, gmax, cfg_for)
        except Exception as exc:
            ctx.error(section, exc, ipc=ipc)
    decide(ctx, section, final=False)


def eval_ipc(
    ctx: Ctx,
    section: str,
    data: ImageDataset,
    ipc: int,
    method: str,
    protocol_e: int,
    augment: str,
    strategy: str,
    gmax: int,
    cfg_for: Callable[..., EvalConfig],
) -> None:
    p, dev = ctx.plan, ctx.device
    x, y = random_subset(data, ipc, seed=0)
    e1, e2 = p.eval_epochs[ipc]
    flops_pass = flops_fixed = None
    counter = None
    try:  # one network, E = 1 (2 passes) and E = 2 (3 passes): FLOPs per pass and the test's
        f1, counter = C.count_flops(
            lambda: evaluate_set(x, y, data, method, cfg_for(1, num_nets=1, parallel_nets=1))
        )
        f2, _ = C.count_flops(
            lambda: evaluate_set(x, y, data, method, cfg_for(2, num_nets=1, parallel_nets=1))
        )
        flops_pass = max(f2 - f1, 0)
        flops_fixed = max(f1 - 2 * flops_pass, 0)
    except Exception as exc:
        ctx.error(section, exc, ipc=ipc, what="flop count")
    modes: list[tuple[str, dict | None]] = [("sequential", {"parallel_nets": 1})]
    if ipc == p.eval_ipcs[0]:
        modes.append(("literal", None))
    modes += [
        (f"batched-{g}-grouped", {"parallel_nets": g, "batched_impl": "grouped"}) for g in p.eval_groups
    ]
    modes.append((f"batched-{gmax}-vmap", {"parallel_nets": gmax, "batched_impl": "vmap"}))
    ref: dict[str, float] = {}
    for name, over in modes:
        secs: dict[int, float] = {}
        accs: list[float] = []
        peak = None
        for epochs in (e1, e2):
            est = secs[e1] * (epochs + 1) / (e1 + 1) if e1 in secs else None
            if not ctx.fits(est):
                ctx.skip(section, f"evaluation ipc {ipc} {name} E={epochs}", est)
                break
            try:
                if over is None:
                    aug = (lambda im: dsa_augment(im, strategy, DSAParams())) if augment == "dsa" else None
                    fn = lambda e=epochs, a=aug: literal_evaluate(p.model, x, y, data, e, cfg_for(e), a)  # noqa: E731
                else:
                    fn = lambda e=epochs, o=over: (
                        evaluate_set(x, y, data, method, cfg_for(e, **o))[0].accuracies
                    )  # noqa: E731
                C.reset_peak(dev)
                wall, _, out = C.timed(fn, dev)
                secs[epochs], accs, peak = wall, list(out), C.peak_gb(dev)
            except Exception as exc:
                ctx.error(section, exc, ipc=ipc, mode=name, epochs=epochs)
                break
        if not secs:
            continue
        per_pass = (secs[e2] - secs[e1]) / (e2 - e1) if e1 in secs and e2 in secs else None
        if per_pass is not None and per_pass > 0:
            fixed = max(secs[e1] - (e1 + 1) * per_pass, 0.0)  # test and set-up
            protocol = fixed + (protocol_e + 1) * per_pass
            basis = "two E values: per-pass time and fixed part (test, set-up)"
        else:  # one E, or two whose difference is noise
            per_pass, fixed = None, None
            e_done = max(secs)
            protocol = secs[e_done] * (protocol_e + 1) / (e_done + 1)
            basis = "one E value, scaled (includes the test in the scaling: an overestimate)"
        e_top = max(secs)
        sec = secs[e_top]
        if name in ("sequential", "literal"):
            ref[name] = protocol
        flops_net = (flops_fixed + (e_top + 1) * flops_pass) if flops_pass is not None else None
        row = ctx.rec.write(
            section,
            "result",
            bench="evaluate",
            dataset=data.name,
            data=ctx.data_kind.get("cifar10"),
            model=p.model,
            ipc=ipc,
            set_size=int(x.shape[0]),
            augment=augment,
            method=method,
            num_nets=p.eval_nets,
            test_images=int(data.test_images.shape[0]),
            mode=name,
            epochs=e_top,
            epochs_timed=sorted(secs),
            seconds_by_epochs={str(k): v for k, v in secs.items()},
            protocol_epochs=protocol_e,
            seconds=sec,
            seconds_per_net=sec / p.eval_nets,
            seconds_per_pass_all_nets=per_pass,
            seconds_fixed=fixed,
            images_per_s=p.eval_nets * (e_top + 1) * x.shape[0] / sec,
            protocol_seconds_extrapolated=protocol,
            protocol_basis=basis,
            ratio_vs_sequential=(ref["sequential"] / protocol) if "sequential" in ref else None,
            ratio_vs_literal=(ref["literal"] / protocol) if "literal" in ref else None,
            acc_mean=statistics.fmean(accs),
            acc_std=statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            flops_per_net=flops_net,
            flops_per_pass_per_net=flops_pass,
            flop_counter=counter,
            achieved_flops_per_s=(flops_net * p.eval_nets / sec) if flops_net else None,
            achieved_tflops=(flops_net * p.eval_nets / sec / 1e12) if flops_net else None,
            peak_gpu_gb=peak,
            precision="fp32",
        )
        ctx.eval_rows.append(row)
