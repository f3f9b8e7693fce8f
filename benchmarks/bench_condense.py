"""Seconds per outer iteration of condensation: the fast path against the literal baseline.

One outer iteration = one fresh network: K_i image updates with T epochs of network training
in between (Algorithm 1). For every (method, ipc) the fast path (each class-wise mode asked
for) and the literal per-class baseline (benchmarks/literal.py) run in the same process,
interleaved, from the same synthetic images and seeds; the script prints one JSON line per
setting and mode with the median seconds over repeats (after a warm-up run), the ratio
literal / fast, the largest difference between their resulting images (same numbers), the
FLOPs of one outer iteration (torch.utils.flop_counter) and the achieved FLOP/s.

CPU (the 2-core machine; reduced K_i/T/batch/width, say so when quoting):
  python benchmarks/bench_condense.py --device cpu --threads 1 --model convnet_w32 \\
      --batch-real 32 --inner-iterations 2 --net-epochs 5 --ipcs 10
GPU, CIFAR-10 copy (a folder holding cifar10-jpeg/), the paper's K_i/T:
  python benchmarks/bench_condense.py --dataset cifar10 --data-root data --device cuda
CPU at the paper's shapes (full MNIST, ipc 1, ConvNet-128, 256 real/class, K_i = 10, T = 5),
all four methods, both forms of the per-class work (~20 min on 2 cores):
  python benchmarks/bench_condense.py --dataset mnist --data-root ../shared/data --device cpu \
      --ipcs 1 --repeats 1 --no-warmup --no-flops --threads 2
CIFAR-100 ipc 50 memory (peak GPU memory with the automatic real-batch chunking):
  python benchmarks/bench_condense.py --dataset cifar100 --data-root data --device cuda \\
      --methods dcc,dsac --ipcs 50 --inner-iterations 2 --net-epochs 1 --modes fast --repeats 1
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import _common as C  # noqa: I001 (puts the checkout on sys.path)
import torch
from literal import literal_outer_iteration

from dcclib.condense import (
    CondenseConfig,
    initial_synthetic,
    outer_iteration,
    resolve_real_chunk,
)
from dcclib.data import ImageDataset, load_dataset


def noise_dataset(name: str, device: torch.device) -> ImageDataset:
    """'noise-cifar10' / 'noise-cifar100': Gaussian images of CIFAR's shapes (timing only)."""
    classes = 100 if name.endswith("100") else 10
    g = torch.Generator().manual_seed(0)
    per_class = 300

    def split(n: int):
        y = torch.arange(classes).repeat_interleave(n)
        return torch.randn(len(y), 3, 32, 32, generator=g), y

    (xt, yt), (xe, ye) = split(per_class), split(20)
    names = [f"c{i}" for i in range(classes)]
    data = ImageDataset(name, xt, yt, xe, ye, names, (0.0,) * 3, (1.0,) * 3, "benchmark noise")
    return data.to(device)


def load(name: str, root: str | None, device: torch.device) -> ImageDataset:
    if name.startswith("noise-"):
        return noise_dataset(name, device)
    return load_dataset(None if name == "embedded-mnist" else name, data_root=root, device=device)


def run_once(fn, cfg, data, start_images, labels, outer):
    """One outer iteration from `start_images` (fresh image optimiser); returns the images."""
    syn = start_images.clone().requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    fn(cfg, data, syn, labels, opt, outer)
    return syn.detach()


def parse_chunk(text: str):
    return None if text == "none" else ("auto" if text == "auto" else int(text))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="embedded-mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default="dc,dsa,dcc,dsac")
    p.add_argument("--ipcs", default="1,10,50")
    p.add_argument("--model", default="convnet")
    p.add_argument("--inner-iterations", type=int, default=None, help="K_i (default: the paper's)")
    p.add_argument("--net-epochs", type=int, default=None, help="T (default: the paper's)")
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--outer-index", type=int, default=300, help="past the warm-up: DCC is contrastive")
    p.add_argument("--modes", default="fast,literal", help="fast and/or literal")
    p.add_argument("--classwise", default="loop,vmap", help="class-wise modes timed for the fast path")
    p.add_argument("--real-chunk", default="auto", help="auto | none | N")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-warmup", action="store_true", help="no untimed first run (long CPU runs)")
    args = p.parse_args(argv)
    args.paper = is_paper(args) and args.model == "convnet"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load(args.dataset, args.data_root, device)
    modes = args.modes.split(",")
    for method in args.methods.split(","):
        for ipc in (int(i) for i in args.ipcs.split(",")):
            base = CondenseConfig(
                dataset=data.name, method=method, ipc=ipc, inner_iterations=args.inner_iterations,
                net_epochs=args.net_epochs, batch_real=args.batch_real, model=args.model,
                real_chunk=parse_chunk(args.real_chunk), precision=args.precision,
            ).resolved()  # fmt: skip
            bench_setting(args, data, device, base, modes)


def is_paper(args) -> bool:
    return args.inner_iterations is None and args.net_epochs is None and args.batch_real == 256


def bench_setting(args, data, device, base: CondenseConfig, modes: list[str]) -> None:
    start, labels = initial_synthetic(data, base)
    runners = {}
    if "fast" in modes:
        # DC/DSA: the mode is how the per-class gradients are taken; DCC/DSAC (past the warm-up):
        # how the real-side gradient is taken (loop: a class's worth of images at a time; vmap:
        # the whole real batch in one pass)
        for mode in args.classwise.split(","):
            runners[f"fast-{mode}"] = (outer_iteration, replace(base, classwise_mode=mode))
    if "literal" in modes:
        runners["literal"] = (literal_outer_iteration, base)
    outer = args.outer_index
    results: dict[str, dict] = {k: {"wall": [], "cpu": [], "peak": None} for k in runners}
    images: dict[str, torch.Tensor] = {}
    if not args.no_warmup:
        for name, (fn, cfg) in runners.items():  # warm-up (and the images for the same-numbers check)
            images[name] = run_once(fn, cfg, data, start, labels, outer)
    for _ in range(args.repeats):
        for name, (fn, cfg) in runners.items():
            C.reset_peak(device)
            wall, cpu, out = C.timed(lambda f=fn, c=cfg: run_once(f, c, data, start, labels, outer), device)
            images.setdefault(name, out)
            results[name]["wall"].append(wall)
            results[name]["cpu"].append(cpu)
            results[name]["peak"] = C.peak_gb(device)
    flops, counter = None, None
    if not args.no_flops and runners:
        fn, cfg = next(iter(runners.values()))
        flops, counter = C.count_flops(lambda: run_once(fn, cfg, data, start, labels, outer))
    literal = C.median(results["literal"]["wall"]) if "literal" in results else None
    total_real = sum(min(base.batch_real, n) for n in data.class_counts.tolist())
    for name, r in results.items():
        sec = C.median(r["wall"])
        diff = None
        if "literal" in images and name != "literal":
            diff = float((images[name] - images["literal"]).abs().max())
        C.emit({
            "bench": "condense", "dataset": data.name, "device": C.device_name(device),
            "method": base.method, "ipc": base.ipc, "model": base.model,
            "K_i": base.inner_iterations, "T": base.net_epochs, "batch_real": base.batch_real,
            "outer_index": outer, "mode": name, "real_chunk": resolve_real_chunk(base, data, total_real),
            "precision": base.precision, "repeats": args.repeats,
            "seconds_per_outer": sec, "cpu_seconds_per_outer": C.median(r["cpu"]),
            "ratio_literal_over_this": (literal / sec) if literal else None,
            "max_abs_diff_vs_literal": diff,
            "flops_per_outer": flops, "flop_counter": counter,
            "achieved_flops_per_s": (flops / sec) if flops else None,
            "peak_gpu_gb": r["peak"],
            # K_o = 1000 outer iterations; only meaningful with the paper's K_i, T and batch
            "paper_run_seconds_extrapolated": sec * base.outer_iterations if args.paper else None,
        })  # fmt: skip


if __name__ == "__main__":
    main()
