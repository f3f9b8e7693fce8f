"""The command: options, where the outputs go, strict fp32, the watchdog, the sections, and the
closing line plus the GPU section of reports/performance.md. `main` is what
`python benchmarks/gpu_check.py` and `python -m benchmarks.gpu_check` run."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

import _common as C
import torch

from dcclib import measured

from . import __doc__ as OVERVIEW  # the package's docstring: what --help prints
from .plan import PAPER, TINY
from .record import Ctx, Recorder, one_line
from .sections import SECTION_NAMES, run_sections


def finish(ctx: Ctx, md: Path | None, statuses: list[dict]) -> None:
    """The run's closing line and the GPU section of reports/performance.md."""
    ctx.rec.write(
        "run",
        "end",
        seconds=time.monotonic() - ctx.rec.t0,
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
            print(f"[gpu-check] could not update {md}: {one_line(exc)}", flush=True)


def exit_now(code: int) -> None:
    """End the script with `code` once every result is written (each JSON line is synced as it
    is written), without the interpreter's teardown: threads that PyTorch's pools leave running
    can abort the process there ("terminate called without an active exception", exit -6)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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

    timer = threading.Timer(max(ctx.args.hard_limit - (time.monotonic() - ctx.rec.t0), 1.0), fire)
    timer.daemon = True
    timer.start()
    return timer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=OVERVIEW, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    t0 = time.monotonic() if started is None else started
    args = parse_args(argv)
    plan = TINY if args.tiny else PAPER
    args.budget = plan.budget if args.budget is None else args.budget
    args.hard_limit = args.budget + 40 if args.hard_limit is None else args.hard_limit
    device = torch.device(args.device)
    full = device.type == "cuda" and not args.tiny  # the real check: its outputs go into the checkout
    out_dir = args.out or (C.ROOT / "reports" / "perf_gpu" if full else None)
    if out_dir is None:
        print("gpu_check: give --out DIR (only a full run on CUDA writes into reports/)", file=sys.stderr)
        return 2
    defaults_file = args.defaults_file or (measured.DEFAULTS_FILE if full else None)
    md = args.performance_md or (C.ROOT / "reports" / "performance.md" if full else None)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    rec = Recorder(Path(out_dir) / f"gpu_check-{stamp}.jsonl", run=f"{stamp}-{os.getpid()}", t0=t0)
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
        f"[gpu-check] done in {time.monotonic() - t0:.0f} s; sections with errors: {bad or 'none'}; "
        f"class-wise modes failing a correctness check: {sorted(ctx.failed_modes) or 'none'}",
        flush=True,
    )
    return 0
