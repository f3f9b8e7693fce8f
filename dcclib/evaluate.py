"""The evaluation protocol: fresh networks trained from scratch on a small set, then tested.

The spec's protocol (DC/DSA code): SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256,
shuffled; E+1 passes (epoch indices 0..E), after the pass with index E//2+1 the lr drops by 10x
with a new optimiser (momentum reset); these live in `dcclib.protocol` (re-exported here:
`PROTOCOL`, `lr_drop_epoch`, `protocol_optimizer`). Sets of a method that fixes the protocol's
augmentation (`dcclib.methods`: DSA and DSAC use DSA) train with it for E = 1000; the others
(DC, DCC, Random, ...) train without augmentation for E = 300, except on MNIST (E = 1000 with
DC's crop/scale/rotate augmentation) and for the BatchNorm ConvNet (E = 1000, crop or noise).
An unknown method is a UserError before any training.
Accuracy is on the full test set in eval mode; the reported number is the mean and std over
all trained networks.

Speed settings (see reports/performance.md): `parallel_nets` trains that many networks
together (`dcclib.batched`; same numbers as one after another without augmentation, same
distribution with it); `precision` (fp32 | tf32 | bf16) and `channels_last` are opt-in and
off by default.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcclib import batched, runtime
from dcclib.augment import DSAParams, dc_augment, default_dsa_strategy, dsa_augment, parse_strategy
from dcclib.data import ImageDataset
from dcclib.errors import DivergedError, UserError
from dcclib.measured import measured_default
from dcclib.methods import get_method
from dcclib.models import create_model, list_models
from dcclib.protocol import (  # noqa: F401  (re-exported: the protocol's SGD is written there)
    LR_DROP_FACTOR,
    PROTOCOL,
    SGDProtocol,
    lr_drop_epoch,
    protocol_optimizer,
)
from dcclib.runtime import derive_seed

AUGMENTS = ("none", "dsa", "dc", "dc_noise")
MNIST_LIKE = ("mnist", "embedded-mnist")
AUGMENTED_EPOCHS = 1000  # E when the protocol augments (DSA, DC's MNIST and BatchNorm rules)
PLAIN_EPOCHS = 300  # E without augmentation


@dataclass
class EvalConfig:
    """Settings of the evaluation protocol; None means the protocol's default for the method."""

    models: tuple[str, ...] = ("convnet",)
    num_nets: int = 20  # networks trained per model
    epochs: int | None = None  # E
    augment: str | None = None  # none | dsa | dc | dc_noise
    lr: float = PROTOCOL.lr
    momentum: float = PROTOCOL.momentum
    weight_decay: float = PROTOCOL.weight_decay
    batch_size: int = PROTOCOL.batch_size
    test_batch: int = 2048
    seed: int = 0
    # networks trained together (dcclib.batched); None: auto (CUDA: all of them, within a
    # memory budget; CPU: CPU_PARALLEL_NETS = 1, measured). 1: one after another.
    parallel_nets: int | None = None
    precision: str = "fp32"  # fp32 | tf32 | bf16 (autocast); reduced precision is opt-in
    channels_last: bool = False  # NHWC memory format (one-after-another path only)
    batched_impl: str = "auto"  # auto | grouped (ConvNets) | vmap: how stacked networks train
    compile: bool = False  # torch.compile the grouped training step (opt-in; pays on long runs)
    # DSA strategy of the "dsa" augmentation; None: the dataset's default. The original passes
    # its condensation strategy to the evaluation, so sets carry theirs (CondenseConfig.dsa_strategy).
    dsa_strategy: str | None = None

    def validate(self) -> None:
        """Every setting checked before any training: a UserError naming the first bad one."""
        finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        checks = [
            (len(self.models) > 0, "give at least one evaluation model"),
            (self.num_nets > 0, f"num-nets must be positive, got {self.num_nets}"),
            (
                self.epochs is None or self.epochs >= 1,
                f"eval-epochs must be >= 1 (E: the protocol trains E+1 passes), got {self.epochs}",
            ),
            (
                self.augment is None or self.augment in AUGMENTS,
                f"unknown augmentation '{self.augment}'; choose one of: {', '.join(AUGMENTS)}",
            ),
            (finite(self.lr) and 0 < self.lr <= 1e3, f"eval lr must be in (0, 1e3], got {self.lr}"),
            (
                finite(self.momentum) and 0 <= self.momentum < 1,
                f"momentum must be in [0, 1), got {self.momentum}",
            ),
            (
                finite(self.weight_decay) and self.weight_decay >= 0,
                f"weight decay must be finite and >= 0, got {self.weight_decay}",
            ),
            (self.batch_size > 0 and self.test_batch > 0, "batch sizes must be positive"),
            (
                self.batched_impl in batched.IMPLS,
                f"unknown batched implementation '{self.batched_impl}'; "
                f"choose one of: {', '.join(batched.IMPLS)}",
            ),
            (
                self.precision in runtime.PRECISIONS,
                f"unknown precision '{self.precision}'; choose one of: {', '.join(runtime.PRECISIONS)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        for model in self.models:
            if model not in list_models():
                raise UserError(f"unknown model '{model}'; choose one of: {', '.join(list_models())}")
        if self.dsa_strategy is not None:
            parse_strategy(self.dsa_strategy)  # a UserError for an unknown family


# Chosen by measurement (reports/performance.md): on the 2-core CPU one network after another
# is faster than any stacked group (grouped 1.2-1.4x, vmap 2x slower per network), so 1. On
# CUDA as many networks train together as fit GPU_BATCH_BUDGET_BYTES: as `make gpu-check`
# measured it (dcclib/measured_defaults.json; 0 = one after another), else 24 GiB, provisional
# (dcclib.measured.provenance("cuda", "parallel_nets_budget_bytes") says which).
CPU_PARALLEL_NETS = 1
GPU_BATCH_BUDGET_BYTES: int = measured_default(  # training activations of one stacked step, on CUDA
    "cuda",
    "parallel_nets_budget_bytes",
    24 * 2**30,
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
)


def resolve_parallel_nets(cfg: EvalConfig, model: str, data: ImageDataset) -> int:
    """How many networks of `model` train together (1 for BatchNorm models: not batched)."""
    if cfg.parallel_nets is not None and cfg.parallel_nets < 1:
        raise UserError(f"parallel-nets must be positive, got {cfg.parallel_nets}")
    probe = create_model(model, data.channels, data.num_classes, data.image_size)
    if not batched.supports_batching(probe):
        return 1
    if cfg.parallel_nets is not None:
        return min(cfg.parallel_nets, cfg.num_nets)
    if data.device.type != "cuda":
        return min(CPU_PARALLEL_NETS, cfg.num_nets)
    per_net = cfg.batch_size * runtime.activation_bytes_per_image(
        model, data.channels, data.num_classes, data.image_size
    )
    return max(1, min(cfg.num_nets, GPU_BATCH_BUDGET_BYTES // max(per_net, 1)))


def protocol_defaults(method: str, dataset_name: str, model: str) -> tuple[int, str]:
    """(E, augmentation) of the spec for a set made by `method`, trained on `model`.

    The method's own augmentation (`Method.eval_augment`: DSA for DSA/DSAC) comes first, else
    `default_augment`'s rule; E is 1000 with augmentation, 300 without. A UserError for an
    unknown method.
    """
    augment = get_method(method).eval_augment or default_augment(dataset_name, model)
    return (PLAIN_EPOCHS if augment == "none" else AUGMENTED_EPOCHS), augment


def default_augment(dataset_name: str, model: str) -> str:
    """The protocol's augmentation for a method that fixes none (DC, DCC, Random, ...)."""
    if model == "convnet_bn":
        return "dc_noise"
    if dataset_name.lower() in MNIST_LIKE:
        return "dc"
    return "none"


def dsa_strategy_for(cfg: EvalConfig, data: ImageDataset) -> str:
    """The DSA strategy of the evaluation: the set's (cfg.dsa_strategy) or the dataset's default."""
    return cfg.dsa_strategy or default_dsa_strategy(data.name)


def _augmenter(kind: str, data: ImageDataset, strategy: str) -> Callable[[Tensor], Tensor] | None:
    if kind == "none":
        return None
    if kind == "dsa":
        params = DSAParams()
        return lambda x: dsa_augment(x, strategy, params)
    # DC's augment(): padding and corners are filled with the batch's channel means (mean=None)
    strategy = "crop_scale_rotate" if kind == "dc" else "crop_noise"
    return lambda x: dc_augment(x, strategy, None)


@torch.no_grad()
def test_accuracy(net: nn.Module, data: ImageDataset, batch: int = 2048) -> Tensor:
    """Accuracy on the full test set in eval mode, as a device tensor (no host sync)."""
    net.eval()
    correct = torch.zeros((), device=data.device)
    for start in range(0, data.test_images.shape[0], batch):
        logits = net(data.test_images[start : start + batch])
        correct += (logits.argmax(1) == data.test_labels[start : start + batch]).sum()
    return correct / data.test_images.shape[0]


def train_from_scratch(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    cfg: EvalConfig,
    augment: Callable[[Tensor], Tensor] | None = None,
    require_finite: bool = False,
) -> nn.Module:
    """The protocol's training loop (E+1 passes, lr x0.1 with a new optimiser after E//2+1).

    cfg.precision applies to each forward pass (an autocast region spanning optimiser steps
    would keep using its cached low-precision copies of the old weights). With `require_finite`
    a NaN or infinite training loss is a DivergedError once training ends (one sync, at the end).
    """
    lr = cfg.lr
    opt = protocol_optimizer(net.parameters(), lr, cfg.momentum, cfg.weight_decay)
    n = images.shape[0]
    net.train()
    autocast = cfg.precision == "bf16"  # the forward only: autocast caches its weight casts
    flags = contextlib.nullcontext() if autocast else runtime.precision_context(cfg.precision, images.device)
    finite = torch.ones((), dtype=torch.bool, device=images.device) if require_finite else None
    with flags:  # fp32 / tf32: the TF32 flags hold for the backward passes too
        for epoch in range(epochs + 1):
            order = torch.randperm(n, device=images.device)
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                x = images[idx]
                if augment is not None:
                    x = augment(x)
                with (
                    runtime.precision_context("bf16", images.device) if autocast else contextlib.nullcontext()
                ):
                    loss = F.cross_entropy(net(x), labels[idx])
                if finite is not None:
                    finite &= torch.isfinite(loss.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch == lr_drop_epoch(epochs):
                lr *= LR_DROP_FACTOR
                opt = protocol_optimizer(net.parameters(), lr, cfg.momentum, cfg.weight_decay)
    if finite is not None and not bool(finite):
        raise DivergedError("the training loss became NaN or infinite")
    return net


def _diverged(model: str, images: Tensor) -> DivergedError:
    """The error of an evaluation whose training loss (or weights) became NaN or infinite."""
    low, high = (float(v) for v in torch.aminmax(images))
    return DivergedError(
        f"the evaluation diverged: training {model} on the set, the loss became NaN or infinite "
        f"(the set's pixels range from {low:.4g} to {high:.4g}); no accuracy is reported"
    )


@dataclass
class ModelResult:
    model: str
    epochs: int
    augment: str
    accuracies: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "mean": self.mean, "std": self.std}


def check_compatible(images: Tensor, labels: Tensor, data: ImageDataset) -> None:
    """A set must fit the dataset it is tested on (channels, size, classes)."""
    if tuple(images.shape[1:]) != (data.channels, *data.image_size):
        raise UserError(
            f"the set has images of shape {tuple(images.shape[1:])} but {data.name} has "
            f"{(data.channels, *data.image_size)}"
        )
    if labels.numel() and int(labels.max()) >= data.num_classes:
        raise UserError(
            f"the set has labels up to {int(labels.max())}; {data.name} has {data.num_classes} classes"
        )


def evaluate_set(
    images: Tensor,
    labels: Tensor,
    data: ImageDataset,
    method: str,
    cfg: EvalConfig,
    progress: bool = False,
) -> list[ModelResult]:
    """Train cfg.num_nets fresh networks of each model on (images, labels); test each one.

    `method` made the set: it picks the protocol (`protocol_defaults`); an unknown one is a
    UserError before any training.
    """
    from tqdm.auto import tqdm

    get_method(method)  # an unknown method is an error, never silently DC's protocol
    cfg.validate()
    check_compatible(images, labels, data)
    if images.shape[0] == 0:
        raise UserError("the set is empty: there is nothing to train on")
    images, labels = images.to(data.device).detach(), labels.to(data.device)
    results = []
    for model in cfg.models:
        epochs, augment = protocol_defaults(method, data.name, model)
        epochs = cfg.epochs if cfg.epochs is not None else epochs
        augment = cfg.augment if cfg.augment is not None else augment
        if augment not in AUGMENTS:
            raise UserError(f"unknown augmentation '{augment}'; choose one of: {', '.join(AUGMENTS)}")
        create_model(model, data.channels, data.num_classes, data.image_size)  # validate name early
        group = resolve_parallel_nets(cfg, model, data)
        accs: list[Tensor] = []
        bar = tqdm(total=cfg.num_nets, desc=f"evaluate {model}", disable=not progress)
        for first in range(0, cfg.num_nets, group):
            ids = range(first, min(first + group, cfg.num_nets))
            try:
                if group == 1:
                    accs.append(_train_one(model, ids[0], images, labels, data, epochs, augment, cfg))
                else:
                    accs.extend(_train_group(model, ids, images, labels, data, epochs, augment, cfg))
            except DivergedError:
                bar.close()
                raise _diverged(model, images) from None
            bar.update(len(ids))
        bar.close()
        results.append(ModelResult(model, epochs, augment, [float(a) for a in torch.stack(accs).tolist()]))
    return results


def _new_network(model: str, j: int, data: ImageDataset, cfg: EvalConfig) -> nn.Module:
    """Network j of `model`: seeded by (seed, model, j), whichever path trains it."""
    torch.manual_seed(derive_seed("evaluate", cfg.seed, model, j))
    return create_model(model, data.channels, data.num_classes, data.image_size).to(data.device)


def _train_one(
    model: str,
    j: int,
    images: Tensor,
    labels: Tensor,
    data: ImageDataset,
    epochs: int,
    augment: str,
    cfg: EvalConfig,
) -> Tensor:
    """Network j trained alone (the sequential path); its test accuracy as a device tensor."""
    net = _new_network(model, j, data, cfg)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    train_from_scratch(
        net, images, labels, epochs, cfg, _augmenter(augment, data, dsa_strategy_for(cfg, data)), True
    )
    with runtime.precision_context(cfg.precision, data.device):
        return test_accuracy(net, data, cfg.test_batch)


def _train_group(
    model: str,
    ids: range,
    images: Tensor,
    labels: Tensor,
    data: ImageDataset,
    epochs: int,
    augment: str,
    cfg: EvalConfig,
) -> list[Tensor]:
    """Networks `ids` trained together; each shuffles with the stream the sequential path uses."""
    nets, shuffles = [], []
    for j in ids:
        nets.append(_new_network(model, j, data, cfg))
        shuffles.append(batched.clone_default_generator(data.device))
    stack = batched.stack_networks(nets)
    gen = torch.Generator(device=data.device)
    gen.manual_seed(derive_seed("evaluate-augment", cfg.seed, model, ids[0], len(ids)))
    strategy = dsa_strategy_for(cfg, data) if augment == "dsa" else None
    settings = batched.TrainSettings(
        epochs, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.precision, cfg.compile
    )
    aug = batched.batched_augmenter(augment, strategy, DSAParams(), gen)
    batched.train_stacked(stack, images, labels, shuffles, settings, aug, cfg.batched_impl)
    if not bool(torch.stack([torch.isfinite(p).all() for p in stack.params.values()]).all()):
        raise DivergedError("the weights became NaN or infinite")  # what a non-finite loss leaves
    with runtime.precision_context(cfg.precision, data.device):
        accs = batched.stacked_accuracy(
            stack, data.test_images, data.test_labels, cfg.test_batch, cfg.batched_impl
        )
    return list(accs)


def random_subset(data: ImageDataset, ipc: int, seed: int) -> tuple[Tensor, Tensor]:
    """The Random baseline: ipc real training images per class, chosen at random (seeded)."""
    if ipc <= 0:
        raise UserError(f"ipc must be positive, got {ipc}")
    smallest = int(data.class_counts.min())
    if ipc > smallest:
        raise UserError(f"ipc {ipc} is larger than the smallest class ({smallest} images)")
    torch.manual_seed(derive_seed("random-subset", seed, ipc))
    return data.sample_real(ipc)
