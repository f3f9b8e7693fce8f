"""Peak memory of one image update, with and without the automatic real-batch chunking.

Each setting runs in a fresh subprocess (one outer iteration with K_i = 1, so one matching
step: DSA, real gradients, synthetic gradients with their graph, the image update) and
reports the peak: `torch.cuda.max_memory_allocated` on CUDA, the process's peak resident
set (ru_maxrss, includes the dataset and the interpreter) on the CPU. The synthetic images
after the step are compared across chunk settings (the result must not change).

CPU, CIFAR-100 shapes (Gaussian images), ipc 50 = 25,600 real images per step, a small
ConvNet so that it finishes in minutes; a 1 GiB chunk budget forces chunking:
  python benchmarks/bench_memory.py --dataset noise-cifar100 --model convnet_w32 \\
      --methods dcc --real-chunk none,auto --chunk-budget-mb 1024
GPU, the CIFAR-100 target (ipc 50 within 80 GB), the paper's ConvNet:
  python benchmarks/bench_memory.py --dataset cifar100 --data-root data --device cuda \\
      --methods dc,dsa,dcc,dsac --real-chunk none,auto
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import _common as C  # noqa: I001 (puts the checkout on sys.path)
import torch
from bench_condense import load, parse_chunk

from dcclib.condense import CondenseConfig, initial_synthetic, outer_iteration, resolve_real_chunk


def child(args: argparse.Namespace) -> None:
    """One setting: run the step, print one JSON line (and the images' checksum)."""
    device = torch.device(args.device)
    data = load(args.dataset, args.data_root, device)
    cfg = CondenseConfig(
        dataset=data.name, method=args.methods, ipc=args.ipc, inner_iterations=1, net_epochs=0,
        batch_real=args.batch_real, model=args.model, real_chunk=parse_chunk(args.real_chunk),
        chunk_budget_mb=args.chunk_budget_mb, classwise_mode=args.classwise, outer_iterations=1,
    ).resolved()  # fmt: skip
    syn, labels = initial_synthetic(data, cfg)
    syn.requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    C.reset_peak(device)
    wall, _, _ = C.timed(lambda: outer_iteration(cfg, data, syn, labels, opt, 300), device)
    total_real = sum(min(cfg.batch_real, n) for n in data.class_counts.tolist())
    C.emit({
        "bench": "memory", "dataset": data.name, "device": C.device_name(device),
        "method": cfg.method, "ipc": cfg.ipc, "model": cfg.model, "real_images": total_real,
        "classwise_mode": cfg.classwise_mode, "real_chunk_setting": args.real_chunk,
        "chunk_budget_mb": cfg.chunk_budget_mb, "real_chunk": resolve_real_chunk(cfg, data, total_real),
        "seconds": wall, "peak_gpu_gb": C.peak_gb(device),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "images_sum": float(syn.detach().double().sum()), "images_abs_sum": float(syn.detach().abs().sum()),
    })  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="noise-cifar100")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default="dcc")
    p.add_argument("--ipc", type=int, default=50)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--model", default="convnet")
    p.add_argument("--classwise", default="auto")
    p.add_argument("--real-chunk", default="none,auto")
    p.add_argument("--chunk-budget-mb", type=int, default=16384)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    for method in args.methods.split(","):
        for chunk in args.real_chunk.split(","):
            cmd = [sys.executable, __file__, "--child", "--methods", method, "--real-chunk", chunk]
            for flag in ("dataset", "device", "ipc", "batch_real", "model", "classwise", "chunk_budget_mb"):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            if args.data_root:
                cmd += ["--data-root", args.data_root]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:  # e.g. out of memory: report it as a row
                last = (out.stderr.strip().splitlines() or ["failed"])[-1]
                C.emit({"bench": "memory", "method": method, "real_chunk_setting": chunk, "error": last})
                continue
            print(out.stdout.strip().splitlines()[-1], flush=True)
            json.loads(out.stdout.strip().splitlines()[-1])  # a malformed row fails loudly


if __name__ == "__main__":
    main()
