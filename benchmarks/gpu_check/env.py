"""Section env: the device, the versions, the settings and plan of the run, the defaults dcclib
had before it, and the checkout's commit."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

import _common as C
import torch

import dcclib
from dcclib import measured
from dcclib.condense import CLASSWISE_AUTO
from dcclib.evaluate import GPU_BATCH_BUDGET_BYTES

from .record import Ctx, now_utc


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
        run = lambda *a: subprocess.run(["git", *a], cwd=C.ROOT, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        if head.returncode == 0:
            return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except Exception:
        pass
    return {"git_commit": None}
