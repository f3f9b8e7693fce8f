"""Exact, small pictures of the method for the notebooks' method cells (one batch, no training).

- `coupling`: DC's and DCC's loss on one batch, and what each image gradient responds to. DC's
  gradient on a class's synthetic images depends on that class's real images only; DCC's also
  on every other class's (Eq. 10 matches the mean over classes: the contrastive signal).
  Redrawing the other classes' real images shows it: DC's gradient stays exactly the same.
- `warmup_schedule`: which (network, image update) pairs use DC's class-wise loss, as a matrix.
- `protocol_summary`: the evaluation protocol of one set in one dict.

Each function calls the library's own code (`dc_loss`, `dcc_loss`, `uses_classwise_loss`,
`protocol_defaults`), so the pictures are of what runs, not of a re-implementation.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from dcclib.condense import CondenseConfig, host_class_counts, uses_classwise_loss
from dcclib.data import ImageDataset
from dcclib.evaluate import protocol_defaults
from dcclib.matching import dc_loss, dcc_loss
from dcclib.models import create_model
from dcclib.protocol import LR_DROP_FACTOR, PROTOCOL, lr_drop_epoch
from dcclib.runtime import derive_seed


def _image_gradient(loss_fn, net, real, syn, counts, ipc) -> tuple[float, torch.Tensor]:
    (real_x, real_y), (syn_x, syn_y) = real, syn
    syn_x = syn_x.detach().clone().requires_grad_(True)
    loss = loss_fn(net, real_x, real_y, syn_x, syn_y, counts, [ipc] * len(counts), mode="loop")
    (grad,) = torch.autograd.grad(loss, syn_x)
    return float(loss.detach()), grad


def coupling(
    data: ImageDataset, ipc: int = 1, per_class: int = 16, model: str = "convnet", seed: int = 0
) -> list[dict]:
    """DC's and DCC's loss on one batch and how much class 0's image gradient moves when only
    the OTHER classes' real images are redrawn (0 for DC, exactly; > 0 for DCC).

    One freshly initialised network (seeded), `per_class` real images per class, synthetic
    images drawn from the real ones; float64 on the CPU, so that an exact zero is a zero.
    """
    gen = torch.Generator().manual_seed(derive_seed("explain", seed))
    cpu = data.to(torch.device("cpu")) if data.device.type != "cpu" else data
    real_x, real_y = cpu.sample_real(per_class, generator=gen)
    other_x, _ = cpu.sample_real(per_class, generator=gen)
    syn_x, syn_y = cpu.sample_real(ipc, generator=gen)
    counts = [min(per_class, k) for k in host_class_counts(cpu)]
    first = slice(0, counts[0])  # class 0's real images (class-blocked)
    redrawn = other_x.clone()
    redrawn[first] = real_x[first]  # class 0 keeps its images; every other class is redrawn
    torch.manual_seed(derive_seed("explain-net", seed))
    net = create_model(model, cpu.channels, cpu.num_classes, cpu.image_size).double()
    real = (real_x.double(), real_y)
    real2 = (redrawn.double(), real_y)
    syn = (syn_x.double(), syn_y)
    rows = []
    for name, fn in (("DC", dc_loss), ("DCC", dcc_loss)):
        loss, grad = _image_gradient(fn, net, real, syn, counts, ipc)
        _, grad2 = _image_gradient(fn, net, real2, syn, counts, ipc)
        g0, g0b = grad[:ipc], grad2[:ipc]  # class 0's synthetic images
        rows.append(
            {
                "method": name,
                "loss": loss,
                "|dL/dS| of class 0": float(g0.norm()),
                "change when other classes are redrawn": float((g0b - g0).norm() / g0.norm()),
            }
        )
    return rows


def warmup_schedule(cfg: CondenseConfig) -> torch.Tensor:
    """[K_o, K_i] booleans: True where the run uses DC's class-wise loss (the warm-up)."""
    cfg = cfg.resolved()
    return torch.tensor(
        [
            [uses_classwise_loss(cfg, outer, inner) for inner in range(cfg.inner_iterations)]
            for outer in range(cfg.outer_iterations)
        ]
    )


def protocol_summary(method: str, dataset: str, model: str = "convnet") -> dict:
    """The evaluation protocol of a set made by `method` on `dataset`, trained on `model`."""
    epochs, augment = protocol_defaults(method, dataset, model)
    return {
        "method": method,
        "dataset": dataset,
        "model": model,
        "E (training passes: E + 1)": epochs,
        "augmentation": augment,
        **asdict(PROTOCOL),
        "lr drop": f"x{LR_DROP_FACTOR} after pass {lr_drop_epoch(epochs)} (new optimiser)",
    }
