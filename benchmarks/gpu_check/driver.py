"""One-command GPU check (issue 12): `make gpu-check`, at most 8 minutes on one H100/H200.

Written so that its first run on a GPU gives every figure the project needs, with no second try:
every section runs in try/except (an error is recorded with its traceback and the next section
runs), a global time budget skips what no longer fits (and records that it did), a watchdog ends
the process at a hard limit, and every result is written as one JSON line the moment it exists.

Sections, in order of priority (planned seconds at the paper's shapes in brackets; a section
gets at most that, and never more than what is left of the budget):
  env                        device, versions, settings [instant]
  data                       CIFAR-10 from --data-root (a folder holding cifar10-jpeg/), else
                             Gaussian noise of its shape; CIFAR-100 likewise [60]
  correctness_matching       CUDA against CPU (and float64): the four methods' loss and image
                             gradient, both class-wise modes, DSA draw fixed [12]
  correctness_outer          outer_iteration on CUDA against CPU (DC, DCC: device-independent
                             randomness), and fast == literal on CUDA (all four methods) [15]
  correctness_evaluate       batched evaluation == one network at a time, no augmentation [10]
  condense_main              CIFAR-10 ipc 10, the paper's K_i/T, DC/DSA/DCC/DSAC: seconds per
                             outer iteration, fast (loop, vmap) against literal, TFLOP/s [75]
  evaluate                   20 ConvNets on a random ipc-10 (then ipc-50) set: one at a time,
                             literal, batched 5/10/20 (grouped) and 20 (vmap); two E values give
                             the per-pass time and the protocol's E extrapolated [60]
  condense_ipc1              CIFAR-10 ipc 1 [25]
  memory_cifar100_ipc50      CIFAR-100 ipc 50, real_chunk auto: peak memory of one image update
                             (4 methods), unchunked DCC, one outer iteration at the paper's K_i [45]
  condense_ipc50             CIFAR-10 ipc 50 [60]
  condense_cifar100_ipc10    CIFAR-100 ipc 10 [70]
  precision                  opt-in tf32/bf16 speed (condensation, evaluation) [15]
  decisions                  the CUDA defaults marked provisional (classwise_mode, the stacked-
                             evaluation budget behind parallel_nets), from what was measured
  targets                    the issues' targets (>= 10x, 30-minute DSAC ipc 10, CIFAR-100 ipc 50
                             within 80 GB) and throughputs for the cost model

Every condensation timing starts with two short probes per mode (K_i = 1, and K_i = 2 with the
real T): they warm the kernels up, give the seconds per image update and per T training epochs,
and so an estimate of a full outer iteration, which decides whether it fits the time left.
FLOPs come the same way (torch.utils.flop_counter on the probes, combined with K_i and T).
Literal and fast paths both run in strict fp32 (TF32 off for the whole process; the opt-in
precisions are timed apart).

Output (a full run on CUDA): reports/perf_gpu/gpu_check-<UTC time>.jsonl; the decisions in
dcclib/measured_defaults.json (read by dcclib at import, see dcclib/measured.py); the GPU
section of reports/performance.md. Anything else writes only where --out/--defaults-file/
--performance-md say.

  make gpu-check                                   # = python benchmarks/gpu_check.py --data-root data
  python benchmarks/gpu_check.py --tiny --device cpu --out /tmp/gpu-check   # seconds, the test suite's
"""

# ruff: noqa: E402  (T0 is taken before the imports: the budget includes importing torch)
from __future__ import annotations

import time

T0 = time.monotonic()  # the budget counts from here

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import _common as C  # noqa: I001 (puts the checkout on sys.path)
import torch
from bench_condense import noise_dataset
from literal import literal_evaluate, literal_outer_iteration

import dcclib
from dcclib import batched, measured
from dcclib.augment import DSA_FULL, DSAParams, apply_dsa, default_dsa_strategy, dsa_augment, sample_dsa
from dcclib.condense import (
    CLASSWISE_AUTO,
    CondenseConfig,
    initial_synthetic,
    outer_iteration,
    resolve_real_chunk,
)
from dcclib.data import ImageDataset, load_dataset
from dcclib.evaluate import GPU_BATCH_BUDGET_BYTES, EvalConfig, evaluate_set, protocol_defaults, random_subset
from dcclib.matching import dc_loss, dcc_loss
from dcclib.methods import condensation_method
from dcclib.models import create_model
from dcclib.runtime import activation_bytes_per_image, precision_context

ROOT = C.ROOT
OUTER_INDEX = 300  # past the bi-level warm-up (gamma_o = 250): DCC/DSAC use the contrastive loss
PAPER_OUTER_ITERATIONS = 1000  # K_o
MODES = ("fast-loop", "fast-vmap", "literal")
MIN_START_S = 2.0  # a measurement whose estimate is unknown starts only with this much time left
# A correctness difference above this (relative) is wrong, not rounding: that class-wise mode is
# never chosen as a default. Below it and above the reported tolerance, the row says passed=false.
WRONG = 5e-2


# ---------------------------------------------------------------------------------------------
# What runs: the paper's shapes, or tiny ones (CPU, the test suite)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    model: str  # the matching / evaluation network
    inner_iterations: int | None  # K_i (None: the paper's per-ipc schedule)
    net_epochs: int | None  # T (None: the paper's)
    batch_real: int
    condense: dict[str, tuple[str, int, tuple[str, ...]]]  # section -> (dataset, ipc, methods)
    memory: tuple[str, int, tuple[str, ...], str]  # dataset, ipc, methods (one update), full method
    eval_nets: int
    eval_ipcs: tuple[int, ...]
    eval_epochs: dict[int, tuple[int, int]]  # ipc -> (E1, E2) timed
    eval_groups: tuple[int, ...]  # grouped group sizes (the largest is also timed with vmap)
    check_size: int  # image side of the correctness cases
    check_classes: int
    check_outers: tuple[int, ...]  # outer indices of fast == literal (0: warm-up, then contrastive)
    caps: dict[str, float]  # planned seconds per section
    budget: float  # seconds for all sections, from the start of the process
    repeats: int  # timed outer iterations per mode at most


PAPER = Plan(
    model="convnet",
    inner_iterations=None,
    net_epochs=None,
    batch_real=256,
    condense={
        "condense_main": ("cifar10", 10, ("dc", "dsa", "dcc", "dsac")),
        "condense_ipc1": ("cifar10", 1, ("dsac", "dc", "dsa", "dcc")),
        "condense_ipc50": ("cifar10", 50, ("dsac", "dc")),
        "condense_cifar100_ipc10": ("cifar100", 10, ("dsac", "dc")),
    },
    memory=("cifar100", 50, ("dcc", "dsac", "dc", "dsa"), "dsac"),
    eval_nets=20,
    eval_ipcs=(10, 50),
    eval_epochs={10: (10, 30), 50: (4, 12)},
    eval_groups=(5, 10, 20),
    check_size=16,  # a small case: the paper's ConvNet on 16 x 16 images (the CPU side is slow)
    check_classes=4,
    check_outers=(0, 1),
    caps={
        "env": 5,
        "data": 60,
        "correctness_matching": 12,
        "correctness_outer": 15,
        "correctness_evaluate": 10,
        "condense_main": 75,
        "evaluate": 60,
        "condense_ipc1": 25,
        "condense_ipc50": 60,
        "condense_cifar100_ipc10": 70,
        "memory_cifar100_ipc50": 45,
        "precision": 15,
        "decisions": 0,
        "targets": 0,
    },
    budget=430.0,
    repeats=2,
)

TINY = replace(
    PAPER,
    model="convnet_w32",
    inner_iterations=2,
    net_epochs=1,
    batch_real=4,
    condense={
        "condense_main": ("cifar10", 2, ("dc", "dsa", "dcc", "dsac")),
        "condense_ipc1": ("cifar10", 1, ("dsac",)),
        "condense_ipc50": ("cifar10", 3, ("dc",)),
        "condense_cifar100_ipc10": ("cifar100", 2, ("dsac",)),
    },
    memory=("cifar100", 3, ("dcc", "dc"), "dsac"),
    eval_nets=4,
    eval_ipcs=(2,),
    eval_epochs={2: (1, 2)},
    eval_groups=(2, 4),
    check_size=16,
    check_classes=3,
    check_outers=(0,),
    caps={name: 120.0 for name in PAPER.caps},  # a loaded CPU is slow, and tiny work is short anyway
    budget=300.0,
    repeats=1,
)


# ---------------------------------------------------------------------------------------------
# Recording: JSON lines, flushed and synced row by row
# ---------------------------------------------------------------------------------------------
def _jsonable(v: object) -> object:
    if isinstance(v, float):
        return v if math.isfinite(v) else None  # JSON has no NaN
    if isinstance(v, torch.Tensor):
        return _jsonable(v.item()) if v.numel() == 1 else [_jsonable(x) for x in v.flatten().tolist()]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path | torch.device):
        return str(v)
    return v


class Recorder:
    def __init__(self, path: Path, run: str) -> None:
        self.path, self.run = path, run
        self.lock = threading.Lock()
        self.rows: list[dict] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, section: str, kind: str, **fields: object) -> dict:
        head = {
            "check": "gpu_check",
            "run": self.run,
            "section": section,
            "kind": kind,
            "elapsed_s": round(time.monotonic() - T0, 3),
        }
        # a field named like a header key is kept under another name, never over the header
        row = _jsonable({**head, **{(f"field_{k}" if k in head else k): v for k, v in fields.items()}})
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
        self.rec.write(section, "error", error=_one_line(exc), traceback=_tail(exc), **where)
        free_memory(self.device)


def _one_line(exc: BaseException) -> str:
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


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def prototype_dataset(
    name: str, classes: int, per_class: int, test_per_class: int, size: int, noise: float, seed: int = 0
) -> ImageDataset:
    """Class prototypes plus Gaussian noise (already normalised): the tiny stand-in for CIFAR and
    the correctness cases (noise > 1: overlapping classes, accuracies well below 100%)."""
    g = torch.Generator().manual_seed(seed)
    protos = 0.6 * torch.randn(classes, 3, size, size, generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(classes).repeat_interleave(n)
        return protos[y] + noise * torch.randn(len(y), 3, size, size, generator=g), y

    (xt, yt), (xe, ye) = split(per_class), split(test_per_class)
    names = [f"c{i}" for i in range(classes)]
    return ImageDataset(name, xt, yt, xe, ye, names, (0.0,) * 3, (1.0,) * 3, "gpu_check generated")


def sec_data(ctx: Ctx, section: str) -> None:
    if ctx.tiny:
        tiny = {"cifar10": ("tiny-cifar10", 4), "cifar100": ("tiny-cifar100", 6)}
        for key, (name, classes) in tiny.items():
            ctx.data[key] = prototype_dataset(name, classes, 12, 6, 16, 1.0).to(ctx.device)
            ctx.data_kind[key] = "tiny"
            _data_row(ctx, section, key, 0.0, None)
        return
    for key in ("cifar10", "cifar100"):
        tic, reason = time.monotonic(), None
        try:
            data = load_dataset(key, data_root=ctx.args.data_root, device=ctx.device, download=False)
            kind = "real"
        except Exception as exc:  # absent or unreadable: noise of its shape (timing only)
            reason = _one_line(exc)
            data, kind = noise_dataset(f"noise-{key}", ctx.device), "noise"
        ctx.data[key], ctx.data_kind[key] = data, kind
        _data_row(ctx, section, key, time.monotonic() - tic, reason)


def _data_row(ctx: Ctx, section: str, key: str, seconds: float, reason: str | None) -> None:
    d = ctx.data[key]
    ctx.rec.write(
        section,
        "result",
        dataset=key,
        name=d.name,
        data=ctx.data_kind[key],
        reason=reason,
        train=len(d.train_labels),
        test=len(d.test_labels),
        classes=d.num_classes,
        shape=list(d.train_images.shape[1:]),
        source=d.source,
        seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------
# Correctness
# ---------------------------------------------------------------------------------------------
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


def run_outer(
    fn: Callable,
    cfg: CondenseConfig,
    data: ImageDataset,
    start: torch.Tensor,
    labels: torch.Tensor,
    outer: int,
) -> torch.Tensor:
    """One outer iteration from `start` (fresh image optimiser); returns the images."""
    syn = start.clone().requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    fn(cfg, data, syn, labels, opt, outer)
    return syn.detach()


def literal_strict(
    cfg: CondenseConfig,
    data: ImageDataset,
    syn: torch.Tensor,
    labels: torch.Tensor,
    opt: torch.optim.Optimizer,
    outer: int,
) -> float:
    """The literal baseline in the fast path's precision (the fast path sets it per iteration)."""
    with precision_context(cfg.precision, data.device):
        return literal_outer_iteration(cfg, data, syn, labels, opt, outer)


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


# ---------------------------------------------------------------------------------------------
# Condensation: seconds per outer iteration, fast against literal
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Evaluation: 20 networks batched against one at a time
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# CIFAR-100 ipc 50: peak memory
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Opt-in precisions
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Decisions: the CUDA defaults marked provisional, from what was measured
# ---------------------------------------------------------------------------------------------
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
        report = str(ctx.rec.path.resolve().relative_to(ROOT))
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
    tmp.write_text(json.dumps(_jsonable(current), indent=2) + "\n")
    os.replace(tmp, path)


def sec_decisions(ctx: Ctx, section: str) -> None:
    decide(ctx, section, final=True)


# ---------------------------------------------------------------------------------------------
# Targets: what the issues ask, from what was measured
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def sec_env(ctx: Ctx, section: str) -> None:
    dev = ctx.device
    info: dict[str, object] = {
        "device": C.device_name(dev),
        "device_type": dev.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dcclib": dcclib.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "tiny": ctx.tiny,
        "budget_s": ctx.args.budget,
        "hard_limit_s": ctx.args.hard_limit,
        "date": now_utc(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(ctx.args).items()},
        "plan": asdict(ctx.plan),
        "strict_fp32": "TF32 off for the whole process (matmul and cuDNN)",
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "defaults_before": {
            "classwise_mode_cuda": CLASSWISE_AUTO.get("cuda"),
            "classwise_mode_cuda_provenance": measured.provenance("cuda", "classwise_mode"),
            "gpu_batch_budget_bytes": GPU_BATCH_BUDGET_BYTES,
            "gpu_batch_budget_provenance": measured.provenance("cuda", "parallel_nets_budget_bytes"),
        },
        **git_info(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update(
            device_memory_gb=props.total_memory / 2**30,
            multiprocessors=props.multi_processor_count,
            capability=f"{props.major}.{props.minor}",
        )
    ctx.rec.write(section, "result", **info)


def git_info() -> dict[str, object]:
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        if head.returncode == 0:
            return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except Exception:
        pass
    return {"git_commit": None}


@dataclass(frozen=True)
class Section:
    name: str
    fn: Callable[[Ctx, str], None]
    always: bool = False  # runs even past the budget (instant: no device work)


SECTIONS = (
    Section("env", sec_env, always=True),
    Section("data", sec_data, always=True),
    Section("correctness_matching", sec_correctness_matching),
    Section("correctness_outer", sec_correctness_outer),
    Section("correctness_evaluate", sec_correctness_evaluate),
    Section("condense_main", sec_condense),
    Section("evaluate", sec_evaluate),
    Section("condense_ipc1", sec_condense),
    Section("memory_cifar100_ipc50", sec_memory),
    Section("condense_ipc50", sec_condense),
    Section("condense_cifar100_ipc10", sec_condense),
    Section("precision", sec_precision),
    Section("decisions", sec_decisions, always=True),
    Section("targets", sec_targets, always=True),
)
SECTION_NAMES = tuple(s.name for s in SECTIONS)


def run_sections(ctx: Ctx, only: set[str] | None) -> list[dict]:
    statuses = []
    for sec in SECTIONS:
        if only is not None and sec.name not in only and not sec.always:
            statuses.append(
                ctx.rec.write(sec.name, "section", status="skipped", reason="not asked for (--sections)")
            )
            continue
        budget_left = ctx.args.budget - (time.monotonic() - T0)
        cap = ctx.plan.caps.get(sec.name, 30.0)
        if not sec.always and budget_left < MIN_START_S:
            statuses.append(
                ctx.rec.write(
                    sec.name,
                    "section",
                    status="skipped",
                    cap_s=cap,
                    reason=f"time budget: {max(budget_left, 0):.1f} s of {ctx.args.budget:.0f} s left",
                )
            )
            continue
        ctx.deadline = time.monotonic() + (max(min(cap, budget_left), 0.0) if not sec.always else 600.0)
        ctx.problems = []
        tic = time.monotonic()
        status, err = "ok", None
        try:
            sec.fn(ctx, sec.name)
        except Exception as exc:
            status, err = "error", exc
            ctx.error(sec.name, exc)
        free_memory(ctx.device)
        if status == "ok" and ctx.problems:
            status = "partial"
        statuses.append(
            ctx.rec.write(
                sec.name,
                "section",
                status=status,
                seconds=time.monotonic() - tic,
                cap_s=cap,
                error=_one_line(err) if err else None,
                problems=ctx.problems[:20],
            )
        )
    return statuses


def finish(ctx: Ctx, md: Path | None, statuses: list[dict]) -> None:
    """The run's closing line and the GPU section of reports/performance.md."""
    ctx.rec.write(
        "run",
        "end",
        seconds=time.monotonic() - T0,
        sections={s["section"]: s["status"] for s in statuses},
        correctness_failed_modes=sorted(ctx.failed_modes),
        out=str(ctx.rec.path),
    )
    if md is not None:
        try:
            import summarise

            summarise.update_performance_md(md, ctx.rec.path.parent)
            print(f"[gpu-check] updated {md}", flush=True)
        except Exception as exc:
            print(f"[gpu-check] could not update {md}: {_one_line(exc)}", flush=True)


def start_watchdog(ctx: Ctx, md: Path | None) -> threading.Timer:
    """At the hard limit: record it, update the report, and end the process (exit code 3)."""

    def fire() -> None:
        try:
            ctx.rec.write(
                "watchdog", "error", error=f"hard limit of {ctx.args.hard_limit:.0f} s reached: stopped"
            )
            finish(ctx, md, [])
        finally:
            os._exit(3)

    timer = threading.Timer(max(ctx.args.hard_limit - (time.monotonic() - T0), 1.0), fire)
    timer.daemon = True
    timer.start()
    return timer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu")
    p.add_argument(
        "--tiny", action="store_true", help="tiny shapes (seconds, on a CPU): the test suite's run"
    )
    p.add_argument("--data-root", default="data", help="a folder holding cifar10-jpeg/ (else noise)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the JSON lines (default on CUDA: reports/perf_gpu; else required)",
    )
    p.add_argument(
        "--defaults-file",
        type=Path,
        default=None,
        help="where the decisions go (default on CUDA: dcclib/measured_defaults.json; else none)",
    )
    p.add_argument(
        "--performance-md",
        type=Path,
        default=None,
        help="markdown whose GPU section is rewritten (default on CUDA: reports/performance.md)",
    )
    p.add_argument(
        "--budget", type=float, default=None, help="seconds for all sections (default 430; tiny 300)"
    )
    p.add_argument(
        "--hard-limit", type=float, default=None, help="the watchdog's limit (default budget + 40 s)"
    )
    p.add_argument("--sections", default=None, help=f"comma list, default all: {','.join(SECTION_NAMES)}")
    p.add_argument("--no-flops", action="store_true", help="no FLOP counting")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's; tiny on CPU: 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """The check; `started`: when the budget began (the script passes its start, before torch)."""
    global T0
    T0 = time.monotonic() if started is None else started
    args = parse_args(argv)
    plan = TINY if args.tiny else PAPER
    args.budget = plan.budget if args.budget is None else args.budget
    args.hard_limit = args.budget + 40 if args.hard_limit is None else args.hard_limit
    device = torch.device(args.device)
    full = device.type == "cuda" and not args.tiny  # the real check: its outputs go into the checkout
    out_dir = args.out or (ROOT / "reports" / "perf_gpu" if full else None)
    if out_dir is None:
        print("gpu_check: give --out DIR (only a full run on CUDA writes into reports/)", file=sys.stderr)
        return 2
    defaults_file = args.defaults_file or (measured.DEFAULTS_FILE if full else None)
    md = args.performance_md or (ROOT / "reports" / "performance.md" if full else None)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    rec = Recorder(Path(out_dir) / f"gpu_check-{stamp}.jsonl", run=f"{stamp}-{os.getpid()}")
    ctx = Ctx(args, plan, device, rec, defaults_file, args.tiny)
    if device.type == "cuda" and not torch.cuda.is_available():
        rec.write(
            "env",
            "error",
            error="CUDA asked for but torch.cuda.is_available() is False",
            torch=torch.__version__,
            cuda=torch.version.cuda,
        )
        print("gpu_check: no CUDA device visible to torch; on a CPU use --tiny --device cpu", file=sys.stderr)
        return 2
    # strict fp32 for every path (the library sets it per call; the literal baseline and the
    # backward of the one-at-a-time evaluation run under the global flags): like with like
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    threads = torch.get_num_threads()
    if args.threads or (args.tiny and device.type == "cpu"):  # tiny work: threads only contend
        torch.set_num_threads(args.threads or 1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(
        f"[gpu-check] writing {rec.path}; budget {args.budget:.0f} s, hard limit {args.hard_limit:.0f} s",
        flush=True,
    )
    watchdog = start_watchdog(ctx, md)
    try:
        only = set(args.sections.split(",")) if args.sections else None
        statuses = run_sections(ctx, only)
        finish(ctx, md, statuses)
    finally:
        watchdog.cancel()  # (called in a process that goes on: leave it as it was)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
        torch.set_num_threads(threads)
    bad = [s["section"] for s in statuses if s["status"] == "error"]
    print(
        f"[gpu-check] done in {time.monotonic() - T0:.0f} s; sections with errors: {bad or 'none'}; "
        f"class-wise modes failing a correctness check: {sorted(ctx.failed_modes) or 'none'}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(started=T0))
