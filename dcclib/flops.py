"""How much work a condensation run is: FLOPs from the model's FLOP count times Algorithm 1's loops.

One home for the count that `dcc condense` prints before it starts and that the sweep's cost model
(``dcclib.lab.cost``) prices jobs with. Per outer iteration (K_o of them), for C classes: K_i image
updates, each C x batch_real real images forward+backward (the real gradient) and the C x ipc
synthetic images forward+backward with ``create_graph`` plus the backward through that graph
(``SYNTHETIC_FACTOR`` x forward+backward); then (K_i - 1) x T epochs of network training on the
C x ipc synthetic images. BatchNorm networks add 16 real images per class forward before every
update. DSA, the distances and the image step are not counted.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

import torch

from dcclib.condense_config import BATCHNORM_PER_CLASS, CondenseConfig
from dcclib.models import create_model, has_batchnorm

SYNTHETIC_FACTOR = 2.0  # the synthetic side: forward+backward with create_graph, then its backward
# Achieved by this count on a 2-core AMD EPYC (AVX-512) CPU: MNIST, 1 img/cls, the paper's settings,
# about 100 s per outer iteration (reports/perf_cpu/paper_shapes_vs_original.jsonl): 7.6e12 FLOP.
CPU_FLOPS_PER_S = 75e9
H100_FP32_PEAK = 67e12  # FLOP/s, H100 SXM, fp32 without tensor cores (the default: strict fp32)
ASSUMED_UTILISATION = 0.40
GPU_FLOPS_PER_S = ASSUMED_UTILISATION * H100_FP32_PEAK  # assumed until `make gpu-check` measures it


@cache
def model_flops(model: str, channels: int, classes: int, size: int) -> tuple[float, float, bool]:
    """(forward, forward+backward) FLOPs of `model` on one image, and whether it has BatchNorm."""
    from torch.utils.flop_counter import FlopCounterMode

    net = create_model(model, channels, classes, size).eval()  # eval: BatchNorm takes one image
    x = torch.zeros(1, channels, size, size)
    with FlopCounterMode(display=False) as forward:
        with torch.no_grad():
            net(x)
    with FlopCounterMode(display=False) as both:
        net(x).sum().backward()
    return float(forward.get_total_flops()), float(both.get_total_flops()), has_batchnorm(net)


def condense_flops(cfg: dict, classes: int, channels: int, size: int, train: int) -> float:
    """FLOPs of one condensation run with the resolved CondenseConfig `cfg` (as a dict)."""
    fwd, fb, bn = model_flops(cfg["model"], channels, classes, size)
    c, ipc, k_i, t = classes, cfg["ipc"], cfg["inner_iterations"], cfg["net_epochs"]
    real = min(cfg["batch_real"], max(1, train // classes))
    update = c * (real * fb + SYNTHETIC_FACTOR * ipc * fb + (BATCHNORM_PER_CLASS * fwd if bn else 0))
    return cfg["outer_iterations"] * (k_i * update + (k_i - 1) * t * c * ipc * fb)


def duration(seconds: float) -> str:
    """12 s, 14 min, 2.5 h, 3.1 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def cost_note(cfg: CondenseConfig, data: Any, device: str, minimum_s: float = 60.0) -> str:
    """What the run will cost, said before it starts (empty for a run of under `minimum_s`)."""
    n = int(data.train_images.shape[0])
    total = condense_flops(asdict(cfg), data.num_classes, data.channels, data.image_size[0], n)
    cpu, gpu = total / CPU_FLOPS_PER_S, total / GPU_FLOPS_PER_S
    if (cpu if device == "cpu" else gpu) < minimum_s:
        return ""
    note = (
        f"dcc: this run is about {total:.1e} FLOP ({cfg.outer_iterations} networks x "
        f"{cfg.inner_iterations} image updates): at least {duration(cpu)} on a 2-core CPU "
        f"({CPU_FLOPS_PER_S / 1e9:.0f} GFLOP/s, measured at 1 img/cls; smaller batches run slower), "
        f"about {duration(gpu)} on one H100-class GPU ({GPU_FLOPS_PER_S / 1e12:.1f} TFLOP/s, assumed)"
    )
    if device == "cpu" and cpu > 3600:
        note += (
            "; on a laptop try the cpu profile's loops first: --outer-iterations 20 --inner-iterations 5 "
            "--net-epochs 5 --batch-real 32"
        )
    return note
