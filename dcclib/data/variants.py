"""Named variants of a dataset: the same images under another normalisation.

``cifar100-dcc-norm`` is CIFAR-100 normalised with CIFAR-10's statistics, as the DCC code did
(a leftover of an older DC version; spec/reference-details.md). The published CIFAR-100 numbers
come from that, so the ``paper`` profile uses it for CIFAR-100; users' runs keep ``cifar100``
with its own statistics. A variant has its own name, so its results never mix with the
original's in the store, and a saved set records the statistics it was made with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcclib.data.cifar import load_cifar100
from dcclib.data.dataset import STATS, ImageDataset

DCC_CIFAR100 = "cifar100-dcc-norm"


def renormalized(
    data: ImageDataset, mean: tuple[float, ...], std: tuple[float, ...], name: str
) -> ImageDataset:
    """`data` with its images re-normalised from (data.mean, data.std) to (mean, std).

    x_raw = x * std_old + mean_old; x_new = (x_raw - mean) / std, per channel, train and test.
    """
    if len(mean) != data.channels or len(std) != data.channels:
        raise ValueError(f"{name}: {len(mean)} statistics for {data.channels} channels")

    def convert(x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        old_m, old_s = (
            torch.tensor(v, dtype=x.dtype, device=x.device).view(shape) for v in (data.mean, data.std)
        )
        new_m, new_s = (torch.tensor(v, dtype=x.dtype, device=x.device).view(shape) for v in (mean, std))
        return ((x * old_s + old_m) - new_m) / new_s

    return ImageDataset(
        name=name,
        train_images=convert(data.train_images),
        train_labels=data.train_labels,
        test_images=convert(data.test_images),
        test_labels=data.test_labels,
        class_names=list(data.class_names),
        mean=tuple(mean),
        std=tuple(std),
        source=f"{data.source} (normalised with CIFAR-10's statistics, as the DCC code)",
    )


def load_cifar100_dcc_norm(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """CIFAR-100 normalised with CIFAR-10's mean and std (the DCC code's CIFAR-100 numbers)."""
    return renormalized(load_cifar100(root, device, download), *STATS["cifar10"], name=DCC_CIFAR100)
