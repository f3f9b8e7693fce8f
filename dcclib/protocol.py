"""The evaluation protocol's SGD recipe, written once (spec: the DC/DSA evaluation code).

SGD with lr 0.01, momentum 0.9, weight decay 5e-4, batch 256; E+1 passes (epoch indices
0..E); after the pass with index E//2+1 the lr drops x0.1 with a new optimiser, so the
momentum starts again. `evaluate.train_from_scratch` (one network after another) and
`batched.train_stacked` (many at once) both follow it, and every analysis that trains with
"the protocol's SGD" takes its settings from `PROTOCOL` (a config field keeps its own name,
with `PROTOCOL`'s value as its default, so the store keys do not change).

A core module of its own so that `evaluate` and `batched` (which `evaluate` imports) can both
import it without a cycle; `evaluate` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SGDProtocol:
    """The protocol's optimiser settings (the schedule is `lr_drop_epoch` / `LR_DROP_FACTOR`)."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256


PROTOCOL = SGDProtocol()
LR_DROP_FACTOR = 0.1  # the lr is multiplied by this once, after pass `lr_drop_epoch(E)`


def lr_drop_epoch(epochs: int) -> int:
    """The index of the pass after which the lr drops (x LR_DROP_FACTOR, new optimiser): E//2+1.

    The loop makes E+1 passes (indices 0..E); for E <= 2 the drop comes after the last pass
    or never, so it has no effect (as in the reference code).
    """
    return epochs // 2 + 1


def protocol_optimizer(
    params: Iterable[Tensor], lr: float, momentum: float, weight_decay: float
) -> torch.optim.SGD:
    """A new SGD optimiser of the protocol's kind (dampening 0, no Nesterov).

    A new one is built at the lr drop: that is what resets the momentum.
    """
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
