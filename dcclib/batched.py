"""Train many evaluation networks together: stacked weights, one vmapped step for all of them.

Why: the protocol trains 20 fresh networks per table cell on a set of 10-500 images. One
network's step is far too small to fill a GPU, so the original code spends its time launching
kernels. Here the N networks' weights are stacked (`torch.func.stack_module_state`) and one
call computes all N gradients; a functional SGD updates the stacked weights. Two ways:
- "grouped" (ConvNet family): the N networks' channels side by side, [B, N*C, H, W]; convs
  with groups=N, instance/group/layer norm as one group_norm, one batched matmul classifier.
  The same math as N separate networks, without vmap's layout copies (1.7x faster than vmap
  on the CPU; see reports/performance.md).
- "vmap" (any architecture without BatchNorm): `vmap(grad(loss))` over the stacked weights.

Equivalence with `evaluate.train_from_scratch` (one network after another):
- every network is created exactly as the sequential path creates it (same seed, same init);
- every network shuffles with its own generator, a copy of the device's default generator
  taken right after the network was created, which is the stream the sequential path's
  `torch.randperm` draws from; without augmentation the shuffle orders are therefore identical;
- `sgd_step` is torch.optim.SGD's update (weight decay, momentum, dampening 0, buffer = first
  gradient on the first step); the lr drop after pass E//2+1 (`dcclib.protocol`) also resets
  the momentum, as the protocol's new optimiser does.
So without augmentation the weights equal the sequential ones up to float rounding (tested).
With augmentation every network still gets its own draws (DSA: one family per network per
batch, parameters per sample, as one `dsa_augment` call; DC: per-network `dc_augment` calls),
but from one generator per group, so the draws differ from the sequential path's (the
accuracy distribution matches; tested) and depend on the group size.

BatchNorm networks are not batched (their running statistics are in-place buffer updates);
`supports_batching` says so and the evaluator trains them one after another.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, stack_module_state, vmap

from dcclib.augment import DSAParams, apply_dsa, dc_augment, parse_strategy, sample_dsa
from dcclib.errors import UserError
from dcclib.models import ConvNet, has_batchnorm
from dcclib.protocol import LR_DROP_FACTOR, PROTOCOL, lr_drop_epoch
from dcclib.runtime import precision_context

IMPLS = ("auto", "grouped", "vmap")
COMPILE_OPTIONS: dict = {"dynamic": False}  # torch.compile arguments of the opt-in compiled step
_COMPILED: dict[str, Callable] = {}  # compiled grouped losses, by architecture (reused across groups)
_GROUPED_OK = (nn.Conv2d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.Sigmoid, nn.LeakyReLU,
               nn.AvgPool2d, nn.MaxPool2d, nn.Identity)  # fmt: skip

Augment = Callable[[Tensor], Tensor]  # [N, B, C, H, W] -> same shape
# (stacked params, stacked buffers, x, y) -> per-network gradients / one network's loss
GradStep = Callable[[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor], dict[str, Tensor]]
LossFn = Callable[[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# Stacking and the functional SGD.
# ---------------------------------------------------------------------------------------------
def supports_batching(net: nn.Module) -> bool:
    """BatchNorm updates running statistics in place, which vmap cannot batch: not supported."""
    return not has_batchnorm(net)


@functools.lru_cache(maxsize=64)
def supports_grouped(net: nn.Module) -> bool:
    """ConvNets made only of layers the grouped forward knows (no BatchNorm)."""
    return isinstance(net, ConvNet) and all(isinstance(m, _GROUPED_OK) for m in net.features)


def resolve_impl(impl: str, template: nn.Module) -> str:
    if impl not in IMPLS:
        raise UserError(f"unknown batched implementation '{impl}'; choose one of: {', '.join(IMPLS)}")
    if impl == "grouped" and not supports_grouped(template):
        raise UserError(f"the grouped implementation supports ConvNets only, not {type(template).__name__}")
    if impl == "auto":
        return "grouped" if supports_grouped(template) else "vmap"
    return impl


def grouped_convnet_forward(template: ConvNet, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits [N, B, K] of N stacked ConvNets on x [N, B, C, H, W] (or [B, C, H, W] shared).

    Channels of network n sit at [n*C, (n+1)*C): a conv with groups=N is N separate convs;
    instance norm GroupNorm(C, C) becomes group_norm with N*C groups, GroupNorm(G, C) N*G
    groups, LayerNorm([C, H, W]) group_norm with N groups plus its elementwise affine.
    """
    n = next(iter(params.values())).shape[0]
    if x.dim() == 4:  # one batch for every network (testing)
        x = x.unsqueeze(0).expand(n, *x.shape)
    b = x.shape[1]
    h = x.transpose(0, 1).reshape(b, n * x.shape[2], *x.shape[3:])
    for i, m in enumerate(template.features):
        w, bias = params.get(f"features.{i}.weight"), params.get(f"features.{i}.bias")
        if isinstance(m, nn.Conv2d):
            flat_bias = None if bias is None else bias.reshape(-1)
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), flat_bias, m.stride, m.padding, groups=n)
        elif isinstance(m, nn.GroupNorm):
            h = F.group_norm(h, n * m.num_groups, w.reshape(-1), bias.reshape(-1), m.eps)
        elif isinstance(m, nn.LayerNorm):
            h = F.group_norm(h, n, None, None, m.eps)
            h = h * w.reshape(-1, *w.shape[2:]) + bias.reshape(-1, *bias.shape[2:])
        else:
            h = m(h)
    feats = h.reshape(b, n, -1).transpose(0, 1)  # [N, B, features], each ConvNet's flatten(1)
    weight, bias = params["classifier.weight"], params["classifier.bias"]
    return torch.baddbmm(bias.unsqueeze(1), feats, weight.transpose(1, 2))


def clone_default_generator(device: torch.device) -> torch.Generator:
    """A generator in the current state of `device`'s default generator (what randperm uses)."""
    gen = torch.Generator(device=device)
    if device.type == "cuda":
        gen.set_state(torch.cuda.get_rng_state(device))
    elif device.type == "cpu":
        gen.set_state(torch.get_rng_state())
    else:  # other backends: seed from the global stream (still seeded, not identical)
        gen.manual_seed(int(torch.randint(2**62, (1,))))
    return gen


@dataclass
class StackedNets:
    """N networks of one architecture: stacked parameters/buffers and a template module."""

    template: nn.Module
    params: dict[str, Tensor]  # [N, *shape], plain tensors (no autograd)
    buffers: dict[str, Tensor]

    @property
    def num_nets(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def unstack(self, j: int) -> nn.Module:
        """Network j as an ordinary module (for inspection and tests)."""
        net = copy.deepcopy(self.template)
        state = {k: v[j] for k, v in {**self.params, **self.buffers}.items()}
        net.load_state_dict(state)
        return net


def stack_networks(nets: Sequence[nn.Module]) -> StackedNets:
    if not nets or not all(supports_batching(n) for n in nets):
        raise UserError("stacked training needs at least one network and no BatchNorm layers")
    params, buffers = stack_module_state(list(nets))
    params = {k: v.detach().clone() for k, v in params.items()}
    buffers = {k: v.detach().clone() for k, v in buffers.items()}
    return StackedNets(copy.deepcopy(nets[0]), params, buffers)


def sgd_step(
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    momentum_buffers: dict[str, Tensor] | None,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> dict[str, Tensor]:
    """torch.optim.SGD's step (dampening 0, no Nesterov), in place, on stacked tensors.

    d = g + wd * p; buf = d on the first step, else momentum * buf + d; p -= lr * buf.
    Returns the momentum buffers (pass None after a reset: the next step starts a new one).
    """
    keys = list(params)
    p = [params[k] for k in keys]
    d = torch._foreach_add([grads[k] for k in keys], p, alpha=weight_decay)
    if momentum == 0:
        torch._foreach_add_(p, d, alpha=-lr)
        return {}
    if momentum_buffers is None:
        bufs = [t.clone() for t in d]
    else:
        bufs = [momentum_buffers[k] for k in keys]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, d)
    torch._foreach_add_(p, bufs, alpha=-lr)
    return dict(zip(keys, bufs))


# ---------------------------------------------------------------------------------------------
# Batched augmentation: every network gets its own draws in one call.
# ---------------------------------------------------------------------------------------------
def batched_augmenter(
    kind: str, strategy: str | None, params: DSAParams, generator: torch.Generator | None
) -> Augment | None:
    """The protocol's augmentation for x of shape [N, B, C, H, W] (network, image, ...).

    dsa: one family per network per batch (like one `dsa_augment` call per network),
    parameters per sample, all networks in one vectorised `apply_dsa`. dc / dc_noise: one
    `dc_augment` call per network (its fill colour is that network's batch mean).
    """
    if kind == "none":
        return None
    if kind == "dsa":
        assert strategy is not None
        families = parse_strategy(strategy)
        if not families:
            return None

        def dsa(x: Tensor) -> Tensor:
            n_nets, b = x.shape[:2]
            flat = x.flatten(0, 1)
            draw = sample_dsa(
                n_nets * b, strategy, params, image_size=tuple(x.shape[-2:]),
                device=x.device, generator=generator,
            )  # fmt: skip
            family = torch.randint(len(families), (n_nets,), device=x.device, generator=generator)
            draw.family = family.repeat_interleave(b)
            return apply_dsa(flat, draw, strategy, params).view_as(x)

        return dsa
    dc_strategy = "crop_scale_rotate" if kind == "dc" else "crop_noise"

    def dc(x: Tensor) -> Tensor:
        return torch.stack([dc_augment(xj, dc_strategy, None, generator) for xj in x])

    return dc


# ---------------------------------------------------------------------------------------------
# Training and testing.
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainSettings:
    """How `train_stacked` trains: the protocol's SGD (`dcclib.protocol`) by default."""

    epochs: int  # E: the loop makes E + 1 passes
    lr: float = PROTOCOL.lr
    momentum: float = PROTOCOL.momentum
    weight_decay: float = PROTOCOL.weight_decay
    batch_size: int = PROTOCOL.batch_size
    precision: str = "fp32"
    compile: bool = False  # torch.compile the grouped forward + loss (opt-in; compiles per shape)


def _grouped_grads(template: ConvNet, compiled: bool = False) -> GradStep:
    """Per-network gradients of the per-network mean CE, by one backward of their sum."""

    def total_loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        logits = grouped_convnet_forward(template, params, x)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return ce.view(y.shape).mean(1).sum()

    loss_fn = total_loss
    if compiled:  # one compiled function per architecture (it uses the template's structure only)
        key = repr(template) + repr(sorted(COMPILE_OPTIONS.items()))
        loss_fn = _COMPILED.setdefault(key, torch.compile(total_loss, **COMPILE_OPTIONS))

    def step(params: dict[str, Tensor], _buffers: dict, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        loss = loss_fn(leaves, x, y)
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))

    return step


def _loss_fn(template: nn.Module) -> LossFn:
    def loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(template, (p, b), (x,)), y)

    return loss


def train_stacked(
    stack: StackedNets,
    images: Tensor,
    labels: Tensor,
    shuffles: Sequence[torch.Generator],
    settings: TrainSettings,
    augment: Augment | None = None,
    impl: str = "auto",
) -> StackedNets:
    """The protocol's loop (E+1 passes, lr x0.1 and momentum reset after pass E//2+1), all
    networks at once; network j shuffles with `shuffles[j]`. Updates `stack` in place.
    """
    n_nets = stack.num_nets
    if len(shuffles) != n_nets:
        raise UserError(f"{len(shuffles)} shuffle generators for {n_nets} networks")
    stack.template.train()
    if resolve_impl(impl, stack.template) == "grouped":
        step = _grouped_grads(stack.template, settings.compile)
    elif settings.compile:
        raise UserError("compile applies to the grouped implementation (ConvNets) only")
    else:
        step = vmap(grad(_loss_fn(stack.template)))
    n, lr, bufs = images.shape[0], settings.lr, None
    for epoch in range(settings.epochs + 1):
        order = torch.stack([torch.randperm(n, device=images.device, generator=g) for g in shuffles])
        for start in range(0, n, settings.batch_size):
            idx = order[:, start : start + settings.batch_size]  # [N, B]
            x = images[idx]
            if augment is not None:
                x = augment(x)
            with precision_context(settings.precision, images.device):
                grads = step(stack.params, stack.buffers, x, labels[idx])
            grads = {k: g.to(stack.params[k].dtype) for k, g in grads.items()}
            bufs = sgd_step(stack.params, grads, bufs, lr, settings.momentum, settings.weight_decay)
        if epoch == lr_drop_epoch(settings.epochs):
            lr *= LR_DROP_FACTOR
            bufs = None  # the protocol builds a new optimiser: momentum starts again
    return stack


@torch.no_grad()
def stacked_accuracy(
    stack: StackedNets, test_images: Tensor, test_labels: Tensor, batch: int = 2048, impl: str = "auto"
) -> Tensor:
    """Test accuracy of every network ([N], on the device), eval mode, in chunks whose total
    size (networks x images) is about `batch`."""
    stack.template.eval()

    def logits(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(stack.template, (p, b), (x,))

    if resolve_impl(impl, stack.template) == "grouped":
        forward = lambda p, _b, x: grouped_convnet_forward(stack.template, p, x)  # noqa: E731
    else:
        forward = vmap(logits, in_dims=(0, 0, None))
    chunk = max(1, batch // stack.num_nets)
    correct = torch.zeros(stack.num_nets, device=test_images.device)
    for start in range(0, test_images.shape[0], chunk):
        out = forward(stack.params, stack.buffers, test_images[start : start + chunk])
        correct += (out.argmax(-1) == test_labels[start : start + chunk]).sum(1)
    return correct / test_images.shape[0]
