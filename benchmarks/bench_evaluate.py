"""Evaluation throughput: N networks trained together (dcclib.batched) against one at a time.

Modes, run in the same process, interleaved, after a warm-up: `literal` (one network after
another with a host read-back every batch, as the original code), `sequential`
(`evaluate_set` with parallel_nets=1) and `batched-P` (parallel_nets=P). Each line gives the
median seconds over repeats for N networks x (E+1) passes, seconds per network, training
images per second, the ratio against the literal and sequential modes, the accuracy mean/std
(the distributions must agree), FLOPs of one network's training and the achieved FLOP/s.

CPU (the 2-core machine; reduced E, width and test set, say so when quoting):
  python benchmarks/bench_evaluate.py --device cpu --threads 1 --model convnet_w32 --epochs 5 \
      --num-nets 5 --parallel 5 --impls grouped,vmap --test-images 200
GPU, CIFAR-10 copy, 20 ConvNets on a random ipc-10 set, E = 50 passes timed (extrapolated):
  python benchmarks/bench_evaluate.py --dataset cifar10 --data-root data --device cuda \\
      --epochs 50 --parallel 5,20 --impls grouped,vmap --precisions fp32,tf32,bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import _common as C  # noqa: I001 (puts the checkout on sys.path)
import torch
from bench_condense import load
from literal import literal_evaluate

from dcclib.augment import default_dsa_strategy
from dcclib.evaluate import (
    EvalConfig,
    _augmenter,
    evaluate_set,
    protocol_defaults,
    random_subset,
    test_accuracy,
    train_from_scratch,
)
from dcclib.models import create_model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="embedded-mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--method", default="dsac", help="protocol: dsa/dsac train with DSA")
    p.add_argument("--augment", default=None, help="override: none | dsa | dc | dc_noise")
    p.add_argument("--model", default="convnet")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--num-nets", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20, help="E timed (the protocol's is 300/1000)")
    p.add_argument("--parallel", default="5,20", help="group sizes timed for the batched mode")
    p.add_argument("--modes", default="literal,sequential,batched")
    p.add_argument("--precisions", default="fp32", help="for the batched mode: fp32,tf32,bf16")
    p.add_argument("--impls", default="auto", help="batched implementations: auto,grouped,vmap")
    p.add_argument("--compile", action="store_true", help="also time the compiled grouped step")
    p.add_argument("--test-images", type=int, default=None, help="test on the first N only (timing)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load(args.dataset, args.data_root, device)
    if args.test_images:
        n = args.test_images
        data = dataclasses.replace(data, test_images=data.test_images[:n], test_labels=data.test_labels[:n])
    x, y = random_subset(data, args.ipc, seed=0)
    protocol_e, augment = protocol_defaults(args.method, data.name, args.model)
    augment = args.augment or augment
    base = EvalConfig(models=(args.model,), num_nets=args.num_nets, epochs=args.epochs, augment=augment)
    runs = {}
    modes = args.modes.split(",")
    if "literal" in modes:
        aug = _augmenter(augment, data, default_dsa_strategy(data.name))
        runs["literal"] = lambda: literal_evaluate(args.model, x, y, data, args.epochs, base, aug)
    if "sequential" in modes:
        cfg = EvalConfig(**{**base.__dict__, "parallel_nets": 1})
        runs["sequential"] = lambda cfg=cfg: evaluate_set(x, y, data, args.method, cfg)[0].accuracies
    if "batched" in modes:
        for group in (int(g) for g in args.parallel.split(",")):
            for precision in args.precisions.split(","):
                for impl in args.impls.split(","):
                    cfg = EvalConfig(**{**base.__dict__, "parallel_nets": group, "precision": precision,
                                        "batched_impl": impl})  # fmt: skip
                    name = f"batched-{group}-{impl}" + ("" if precision == "fp32" else f"-{precision}")
                    runs[name] = lambda cfg=cfg: evaluate_set(x, y, data, args.method, cfg)[0].accuracies
                if args.compile:
                    cfg = EvalConfig(**{**base.__dict__, "parallel_nets": group, "precision": precision,
                                        "batched_impl": "grouped", "compile": True})  # fmt: skip
                    suffix = "" if precision == "fp32" else f"-{precision}"
                    name = f"batched-{group}-grouped-compiled{suffix}"
                    runs[name] = lambda cfg=cfg: evaluate_set(x, y, data, args.method, cfg)[0].accuracies

    warm = EvalConfig(**{**base.__dict__, "epochs": 1, "num_nets": 2})
    for group in (1, 2):  # warm-up: allocators, kernels, vmap tracing
        evaluate_set(x, y, data, args.method, EvalConfig(**{**warm.__dict__, "parallel_nets": group}))
    stats: dict[str, dict] = {k: {"wall": [], "cpu": [], "acc": None, "peak": None} for k in runs}
    compile_seconds = {}
    for name, fn in runs.items():  # the first call of a compiled mode compiles: time it apart
        if "compiled" in name:
            compile_seconds[name] = C.timed(fn, device)[0]
    for _ in range(args.repeats):
        for name, fn in runs.items():
            C.reset_peak(device)
            wall, cpu, accs = C.timed(fn, device)
            stats[name]["wall"].append(wall)
            stats[name]["cpu"].append(cpu)
            stats[name]["acc"] = accs
            stats[name]["peak"] = C.peak_gb(device)

    def one_net() -> None:
        torch.manual_seed(0)
        net = create_model(args.model, data.channels, data.num_classes, data.image_size).to(device)
        train_from_scratch(
            net, x, y, args.epochs, base, _augmenter(augment, data, default_dsa_strategy(data.name))
        )
        test_accuracy(net, data, base.test_batch)

    flops_per_net, counter = C.count_flops(one_net)
    images_per_net = (args.epochs + 1) * x.shape[0]
    ref = {k: C.median(stats[k]["wall"]) for k in ("literal", "sequential") if k in stats}
    for name, s in stats.items():
        sec = C.median(s["wall"])
        accs = s["acc"]
        C.emit({
            "bench": "evaluate", "dataset": data.name, "device": C.device_name(device),
            "model": args.model, "ipc": args.ipc, "set_size": x.shape[0], "augment": augment,
            "num_nets": args.num_nets, "test_images": data.test_images.shape[0],
            "epochs": args.epochs, "protocol_epochs": protocol_e,
            "mode": name, "repeats": args.repeats,
            "seconds": sec, "cpu_seconds": C.median(s["cpu"]), "seconds_per_net": sec / args.num_nets,
            "images_per_s": args.num_nets * images_per_net / sec,
            "ratio_vs_literal": ref["literal"] / sec if "literal" in ref else None,
            "ratio_vs_sequential": ref["sequential"] / sec if "sequential" in ref else None,
            "acc_mean": statistics.fmean(accs), "acc_std": statistics.pstdev(accs),
            "flops_per_net": flops_per_net, "flop_counter": counter,
            "achieved_flops_per_s": flops_per_net * args.num_nets / sec,
            "peak_gpu_gb": s["peak"], "first_call_seconds_with_compile": compile_seconds.get(name),
            # the protocol's E+1 passes for num_nets networks, extrapolated from the timed E
            "protocol_seconds_extrapolated": sec * (protocol_e + 1) / (args.epochs + 1),
        })  # fmt: skip


if __name__ == "__main__":
    main()
