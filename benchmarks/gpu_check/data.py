"""Section data: CIFAR-10 and CIFAR-100 from --data-root, else Gaussian noise of their shape (timing
only); at tiny shapes, class prototypes plus noise (`prototype_dataset`, also the correctness
sections' cases)."""

from __future__ import annotations

import time

import _common  # noqa: F401 (puts the checkout on sys.path)
import torch
from bench_condense import noise_dataset

from dcclib.data import ImageDataset, load_dataset

from .record import Ctx, one_line


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
            reason = one_line(exc)
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
