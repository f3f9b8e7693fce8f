"""One outer iteration from given images: the fast path (dcclib) or the literal baseline in the
fast path's precision. Shared by the correctness, condensation, memory and precision sections."""

from __future__ import annotations

from collections.abc import Callable

import _common  # noqa: F401 (puts the checkout on sys.path)
import torch
from literal import literal_outer_iteration

from dcclib.condense import CondenseConfig
from dcclib.data import ImageDataset
from dcclib.runtime import precision_context


def run_outer(
    fn: Callable,
    cfg: CondenseConfig,
    data: ImageDataset,
    start: torch.Tensor,
    labels: torch.Tensor,
    outer: int,
) -> torch.Tensor:
    """One outer iteration from `start` (fresh image optimiser); returns the images."""
    syn = start.clone().requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    fn(cfg, data, syn, labels, opt, outer)
    return syn.detach()


def literal_strict(
    cfg: CondenseConfig,
    data: ImageDataset,
    syn: torch.Tensor,
    labels: torch.Tensor,
    opt: torch.optim.Optimizer,
    outer: int,
) -> float:
    """The literal baseline in the fast path's precision (the fast path sets it per iteration)."""
    with precision_context(cfg.precision, data.device):
        return literal_outer_iteration(cfg, data, syn, labels, opt, outer)
