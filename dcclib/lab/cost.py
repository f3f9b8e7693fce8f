"""What a sweep's jobs cost: FLOPs from the model's FLOP count times the loop counts, and GPU-hours.

A model's FLOPs per image (forward, forward+backward) come from ``torch.utils.flop_counter`` on
one image. The loop counts are those of the code:

- condensation (Algorithm 1): ``dcclib.flops.condense_flops`` (its docstring gives the count);
- evaluation: per network, E+1 passes over the set forward+backward, then the test set forward;
- a kernel-velocity trace: its condensation (the kernel itself is N x N x D: negligible);
- an alignment point: the feature network's training on the real set (once per feature
  network, charged to the first point that needs it); the features of the set are negligible;
- a continual run: ``epochs`` passes over every task (+ the replayed batch after the first),
  and the condensation of the memories of every task but the last.

Notebook 13's convergence study runs in the notebook, not as sweep jobs: ``study_flops`` prices it
by the same count.

GPU-hours divide by an achieved throughput: measured by the GPU benchmarks (JSON lines under
``reports/perf_gpu/`` with ``"bench": "condense"`` and ``"achieved_flops_per_s"``), or until then
``ASSUMED_FLOPS_PER_S``. Jobs are whole units (one GPU each), so the wall-clock time on G GPUs
is, per stage, the longest-first list schedule of the jobs over G GPUs (``wall_hours``).
"""

from __future__ import annotations

import heapq
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from dcclib import io
from dcclib.errors import UserError
from dcclib.evaluate import protocol_defaults
from dcclib.flops import (  # noqa: F401 (SYNTHETIC_FACTOR, model_flops: the cost model's, re-exported)
    ASSUMED_UTILISATION,
    GPU_FLOPS_PER_S,
    H100_FP32_PEAK,
    SYNTHETIC_FACTOR,
    model_flops,
)
from dcclib.flops import condense_flops as run_flops
from dcclib.lab.store import repo_root

ASSUMED_FLOPS_PER_S = GPU_FLOPS_PER_S  # the GPU throughput assumed until one is measured
CLUSTER_GPUS = 64  # the Slurm cluster of the cost table

# (classes, channels, size, train, test) of the datasets, for a plan made without the data
SHAPES: dict[str, tuple[int, int, int, int, int]] = {
    "embedded-mnist": (10, 1, 28, 4000, 1000),
    "mnist": (10, 1, 28, 60000, 10000),
    "fashionmnist": (10, 1, 28, 60000, 10000),
    "svhn": (10, 3, 32, 73257, 26032),
    "cifar10": (10, 3, 32, 50000, 10000),
    "cifar100": (100, 3, 32, 50000, 10000),
    "cifar100-dcc-norm": (100, 3, 32, 50000, 10000),
    "gtsrb": (43, 3, 32, 26640, 12630),
}
# classes of the ImageNet32 groups (data_prep.groups); ImageNet: 1300 train, 50 test images a class
IMAGENET32_CLASSES = {"automobile": 9, "truck": 9, "lizard": 11, "fish": 16, "terrier": 26, "insect": 27}


@dataclass(frozen=True)
class Shape:
    """What the cost of a job on a dataset depends on."""

    classes: int
    channels: int
    size: int
    train: int
    test: int

    def as_dict(self) -> dict:
        """The shape as a plain dict (for job records)."""
        return {k: getattr(self, k) for k in ("classes", "channels", "size", "train", "test")}


def shape_of_data(data: object) -> Shape:
    """The shape of a loaded ImageDataset."""
    return Shape(
        data.num_classes,
        data.channels,
        data.image_size[0],
        int(data.train_images.shape[0]),
        int(data.test_images.shape[0]),
    )


def shape_of(name: str) -> Shape:
    """The shape of a dataset by name, without the data: a known name, an ImageNet32 group, a class
    subset '<name>-3v8[-flip3]' or a task '<name>:0-3'; a UserError otherwise."""
    if name in SHAPES:
        return Shape(*SHAPES[name])
    group = re.fullmatch(r"imagenet32-(\w+)", name)
    if group and group[1] in IMAGENET32_CLASSES:
        c = IMAGENET32_CLASSES[group[1]]
        return Shape(c, 3, 32, 1300 * c, 50 * c)
    part = re.fullmatch(r"(.+?)(?::(\d+)-(\d+)|-(\d+(?:v\d+)+)(?:-flip\d+)*)", name)
    if part:
        base = shape_of(part[1])
        k = int(part[3]) - int(part[2]) + 1 if part[2] else len(part[4].split("v"))
        per_train, per_test = base.train // base.classes, base.test // base.classes
        return Shape(k, base.channels, base.size, k * per_train, k * per_test)
    raise UserError(f"no shape known for dataset '{name}' (load it, or add it to dcclib.lab.cost.SHAPES)")


def condense_flops(cfg: dict, shape: Shape) -> float:
    """FLOPs of one condensation run with the (profile-scaled, resolved) CondenseConfig `cfg`."""
    return run_flops(cfg, shape.classes, shape.channels, shape.size, shape.train)


def evaluation_flops(config: dict, shape: Shape) -> float:
    """FLOPs of an 'evaluate' job: every network's E+1 passes over the set, then the test set."""
    ev, set_config = config["eval"], config["set"]
    n_set = shape.classes * set_config["ipc"]
    total = 0.0
    for model in ev["models"]:
        fwd, fb, _ = model_flops(model, shape.channels, shape.classes, shape.size)
        epochs = (
            ev["epochs"] or protocol_defaults(set_config["method"], set_config["dataset"]["name"], model)[0]
        )
        total += ev["num_nets"] * ((epochs + 1) * n_set * fb + shape.test * fwd)
    return total


def feature_net_flops(feature: dict, shape: Shape) -> float:
    """FLOPs of training one feature network (Figure 6) on the real set, and testing it."""
    fwd, fb, _ = model_flops(feature["model"], shape.channels, shape.classes, shape.size)
    per_class = feature.get("train_per_class")
    n = shape.train if per_class is None else min(shape.train, per_class * shape.classes)
    return (feature["epochs"] + 1) * n * fb + shape.test * fwd


def continual_flops(config: dict, tasks: list[Shape], memory_cfg: dict | None) -> float:
    """FLOPs of one continual run: `epochs` passes per task (plus replay), and its memories."""
    cont = config["continual"]
    total = 0.0
    for i, task in enumerate(tasks):
        fwd, fb, _ = model_flops(cont["model"], task.channels, task.classes, task.size)
        replay = 1 + (cont["replay_batch"] / cont["batch_size"] if i and cont["method"] != "none" else 0)
        seen_test = sum(t.test for t in tasks[: i + 1])
        total += cont["epochs"] * task.train * fb * replay + seen_test * fwd
        if memory_cfg is not None and i < len(tasks) - 1:
            total += condense_flops(memory_cfg, task)
    return total


def study_flops(profile: str) -> float:
    """FLOPs of notebook 13's convergence study at `profile` (``dcclib.lab.convergence.STUDIES``),
    which `dcc sweep --plan` does not count (the notebook runs it itself): per (dataset, method),
    one condensation run of the study's longest K_o at the profile's per-step settings, and an
    evaluation of its set at every point (counted even where a warm-up point reuses its twin's)."""
    from dataclasses import asdict, replace

    from dcclib.condense import CondenseConfig
    from dcclib.lab.convergence import STUDIES
    from dcclib.lab.profiles import get_profile

    prof = get_profile(profile)
    total = 0.0
    for study in STUDIES[profile]:
        longer = replace(prof, outer_iterations=study.longest)
        for paper, method in study.runs:
            name = prof.dataset_for(paper)
            shape = shape_of(name)
            cfg = longer.condense_config(CondenseConfig(dataset=name, method=method, ipc=study.ipc))
            total += condense_flops(asdict(cfg), shape)
            ev = {"models": [study.model], "num_nets": prof.num_nets, "epochs": prof.eval_epochs}
            config = {"eval": ev, "set": {"ipc": study.ipc, "method": method, "dataset": {"name": name}}}
            total += len(study.points) * evaluation_flops(config, shape)
    return total


def hours_note(rate: float, source: str) -> str:
    """The line that goes directly above every table of GPU times: the throughput they divide by."""
    return f"GPU times below: FLOP / {rate / 1e12:.1f} TFLOP/s per GPU; throughput {source}"


def throughput(perf_dir: Path | None = None) -> tuple[float, str]:
    """(achieved FLOP/s, where that number comes from): measured by the GPU benchmarks under
    reports/perf_gpu/ (gpu-check's summary: the median of the fast condensation path at the
    paper's shapes; else every condensation row but the literal baseline's), else the assumption."""
    folder = perf_dir or (repo_root() or Path.cwd()) / "reports" / "perf_gpu"
    rows = [r for p in sorted(folder.glob("*.jsonl")) for r in io.read_jsonl(p)]
    devices = ", ".join(sorted({str(r["device"]) for r in rows if r.get("device")})) or "a GPU"
    summaries = [r for r in rows if r.get("condense_achieved_tflops_median") and r.get("paper_shapes", True)]
    rates = [1e12 * r["condense_achieved_tflops_median"] for r in summaries]
    what = "gpu-check's fast condensation path"
    if not rates:
        tags = ("bench", "kind", "section")
        rates = [
            r["achieved_flops_per_s"]
            for r in rows
            if any(r.get(t) == "condense" for t in tags)
            and isinstance(r.get("achieved_flops_per_s"), (int, float))
            and not str(r.get("mode", "")).startswith("literal")
        ]
        what = "condensation benchmarks"
    if not rates:
        return ASSUMED_FLOPS_PER_S, (
            f"assumed {ASSUMED_FLOPS_PER_S / 1e12:.1f} TFLOP/s: {ASSUMED_UTILISATION:.0%} of an H100's fp32 "
            f"peak ({H100_FP32_PEAK / 1e12:.0f} TFLOP/s); not measured yet (nothing in reports/perf_gpu/)"
        )
    rate = statistics.median(rates)
    return (
        rate,
        f"measured {rate / 1e12:.1f} TFLOP/s on {devices}: median of {len(rates)} {what} (reports/perf_gpu)",
    )


def wall_hours(stages: list[list[float]], gpus: int, rate: float) -> float:
    """Hours on `gpus` GPUs: per stage, the jobs (FLOPs) longest first, each on the GPU free first."""
    total = 0.0
    for flops in stages:
        free = [0.0] * max(1, min(gpus, len(flops)))
        for f in sorted(flops, reverse=True):
            heapq.heapreplace(free, free[0] + f / rate)
        total += max(free, default=0.0)
    return total / 3600


def human_flops(flops: float) -> str:
    """1.2e16 -> '1.2e16' (and 0 -> '0')."""
    return (
        "0"
        if flops <= 0
        else f"{flops / 10 ** math.floor(math.log10(flops)):.1f}e{math.floor(math.log10(flops))}"
    )
