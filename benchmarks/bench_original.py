"""Seconds per outer iteration: this project against the authors' code, side by side.

The authors' code (github.com/Saehyung-Lee/DCC; never part of this repository) runs its own
`main()` for exactly one outer iteration on the same data, in the same process, interleaved with
`dcclib.condense.outer_iteration` at the same settings. Their clock starts when main.py creates the
outer iteration's network and stops when it calls its evaluation (stubbed) after that iteration,
so their data set-up is not counted. DC and DCC only: their DSA path needs changes of their code
to run under PyTorch >= 2 (bench_condense.py compares DSA/DSAC with the literal baseline).
Prints one JSON line per method and side, with the ratio
original / ours (> 1: the project is faster).

The paper's shapes on CPU (full MNIST, ipc 1, ConvNet-128, 256 real images per class, K_i = 10,
T = 5; about 100 s per outer iteration per side on 2 cores):
  DCC_REFERENCE_DIR=/path/DCC python benchmarks/bench_original.py --dataset mnist \\
      --data-root ../shared/data --threads 2
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common as C  # noqa: I001 (puts the checkout on sys.path)
import numpy as np
import torch

from dcclib.condense import CondenseConfig, initial_synthetic, outer_iteration
from dcclib.data import load_dataset

THEIR_MODEL = {"convnet": "ConvNet"}  # dcclib name -> main.py's --model
FLAGS = {  # method -> main.py flags; past both warm-ups, as the project's outer index below
    "dc": ["--method", "DC", "--outer_warmup", "0"],  # main.py asserts outer_warmup <= outer_loop
    "dsa": ["--method", "DSA", "--outer_warmup", "0"],
    "dcc": ["--method", "DC", "--contrast", "--outer_warmup", "0", "--inner_warmup", "0"],
    "dsac": ["--method", "DSA", "--contrast", "--outer_warmup", "0", "--inner_warmup", "0"],
}


class _Quiet:
    INFO = 20

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def load_reference(folder: str):
    """Their main.py. Its Siamese DSA writes `t[:] = t[0]`, which PyTorch >= 2 refuses (the two
    overlap in memory); the same assignment from a copy (`t[0].clone()`) is made in their utils
    module, in memory only: nothing else of their code changes."""
    sys.path.insert(0, folder)
    try:
        main = importlib.import_module("main")
    finally:
        sys.path.remove(folder)
    utils = sys.modules["utils"]
    source = Path(utils.__file__).read_text()
    fixed = re.sub(r"(\w+)\[:\] = \1\[0\]", r"\1[:] = \1[0].clone()", source)
    exec(compile(fixed, utils.__file__, "exec"), utils.__dict__)
    return main


def time_theirs(main, data, method: str, ipc: int, batch_real: int) -> float:
    """Seconds of one outer iteration of main.py's main() (network creation to evaluation)."""
    train = [
        (data.train_images[i].cpu().contiguous(), int(data.train_labels[i]))
        for i in range(len(data.train_labels))
    ]
    c, (h, w) = data.channels, data.image_size

    def get_dataset(dataset, data_path, imagenet_class_list=None):
        names = list(data.class_names)
        return c, (h, w), data.num_classes, names, [0.0] * c, [1.0] * c, train, train, None

    marks: list[float] = []
    real_get_network = main.get_network

    def get_network(*args, **kwargs):
        marks.append(time.perf_counter())
        return real_get_network(*args, **kwargs)

    def evaluate_synset(it, net, x, y, loader, args):
        marks.append(time.perf_counter())
        return net, 0.0, 0.0

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["main.py", "--dataset", "MNIST", "--model", "ConvNet", "--ipc", str(ipc)]
        argv += ["--outer_loop", "1", "--num_exp", "1", "--num_eval", "1", "--eval_mode", "M"]
        argv += ["--batch_real", str(batch_real), "--data_path", tmp, "--save_path", tmp, *FLAGS[method]]
        saved = (main.get_dataset, main.get_network, main.evaluate_synset, main.logging, sys.argv)
        main.get_dataset, main.get_network, main.evaluate_synset = get_dataset, get_network, evaluate_synset
        main.logging, sys.argv = _Quiet(), argv
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                main.main()
        finally:
            main.get_dataset, main.get_network, main.evaluate_synset, main.logging, sys.argv = saved
    # get_network: once for the outer iteration (ol = 0), once for the evaluation pool at ol = 1
    return marks[-1] - marks[0]


def time_ours(data, method: str, ipc: int, batch_real: int, model: str) -> float:
    cfg = CondenseConfig(dataset=data.name, method=method, ipc=ipc, batch_real=batch_real, model=model)
    cfg = cfg.resolved()
    syn, labels = initial_synthetic(data, cfg)
    syn = copy.deepcopy(syn).requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    tic = time.perf_counter()
    outer_iteration(cfg, data, syn, labels, opt, outer=300)  # past the warm-up, as FLAGS
    return time.perf_counter() - tic


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", default=os.environ.get("DCC_REFERENCE_DIR"), help="their checkout")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=None)
    # DSA/DSAC: their ConvNet's `out.view(...)` fails on the tensors their DSA makes under
    # PyTorch >= 2 (non-contiguous); benchmarks/bench_condense.py times them against the literal
    p.add_argument("--methods", default="dc,dcc")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=1, help="median of N, alternating which side is first")
    args = p.parse_args(argv)
    if not args.reference or not Path(args.reference, "main.py").is_file():
        p.error("give --reference (or DCC_REFERENCE_DIR): a checkout of github.com/Saehyung-Lee/DCC")
    if args.threads:
        torch.set_num_threads(args.threads)
    main_py = load_reference(args.reference)
    data = load_dataset(args.dataset, data_root=args.data_root, device="cpu", download=False)
    for method in args.methods.split(","):
        times: dict[str, list[float]] = {"original": [], "dcclib": []}
        for r in range(args.repeats):  # alternate which side goes first
            torch.manual_seed(r)
            np.random.seed(r)
            sides = ["original", "dcclib"] if r % 2 == 0 else ["dcclib", "original"]
            for side in sides:
                if side == "original":
                    times[side].append(time_theirs(main_py, data, method, args.ipc, args.batch_real))
                else:
                    times[side].append(time_ours(data, method, args.ipc, args.batch_real, "convnet"))
        theirs, ours = C.median(times["original"]), C.median(times["dcclib"])
        for side, sec in (("original", theirs), ("dcclib", ours)):
            C.emit({
                "bench": "condense-vs-original", "dataset": data.name,
                "device": C.device_name(torch.device("cpu")),
                "threads": torch.get_num_threads(), "method": method, "ipc": args.ipc, "model": "convnet",
                "batch_real": args.batch_real, "side": side, "seconds_per_outer": sec,
                "repeats": args.repeats, "all_seconds": times[side],
                "ratio_original_over_dcclib": theirs / ours,
            })  # fmt: skip


if __name__ == "__main__":
    main()
