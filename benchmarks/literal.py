"""The literal baseline: the tests' oracle made runnable, structured as the original DC/DSA code.

- condensation: per-class Python loops (boolean-mask class selection, per-class forward and
  autograd, per-class distance; DCC averages per-class gradients before one distance),
  `loss.backward()` into the images, `.item()` after every image update and every training
  batch (the original's running loss/accuracy), one network at a time;
- evaluation: one network after another, `.item()` per batch.

It consumes the random streams in the same order as `dcclib.condense.outer_iteration` (same
real batch, same DSA draws: `sample_dsa(C, ...)` as `dsa_siamese` does, same shuffles), so
one outer iteration from the same state gives the same images up to float rounding; the
benchmarks print that difference next to the speed ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcclib.augment import DSAParams, apply_dsa, default_dsa_strategy, dsa_augment, sample_dsa
from dcclib.condense import (
    CondenseConfig,
    iteration_seed,
    set_batchnorm_statistics,
    uses_classwise_loss,
)
from dcclib.data import ImageDataset
from dcclib.evaluate import EvalConfig
from dcclib.models import create_model, has_batchnorm
from dcclib.runtime import precision_context


def distance_wb(gwr: Tensor, gws: Tensor) -> Tensor:
    """DC's `distance_wb` (as tests/test_matching.py)."""
    shape = gwr.shape
    if len(shape) == 4:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2] * shape[3])
        gws = gws.reshape(shape[0], shape[1] * shape[2] * shape[3])
    elif len(shape) == 3:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2])
        gws = gws.reshape(shape[0], shape[1] * shape[2])
    elif len(shape) == 1:
        return torch.tensor(0, dtype=gwr.dtype, device=gwr.device)
    return torch.sum(
        1 - torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 1e-6)
    )


def match_loss(gw_real: list[Tensor], gw_syn: list[Tensor], kind: str) -> Tensor:
    """DC's `match_loss`."""
    if kind == "layerwise":
        return sum(distance_wb(r, s) for r, s in zip(gw_real, gw_syn))
    r = torch.cat([g.reshape(-1) for g in gw_real])
    s = torch.cat([g.reshape(-1) for g in gw_syn])
    if kind == "mse":
        return torch.sum((s - r) ** 2)
    return 1 - torch.sum(r * s, dim=-1) / (torch.norm(r, dim=-1) * torch.norm(s, dim=-1) + 1e-6)


def literal_loss(cfg, net, real_x, real_y, syn_images, syn_labels, classwise, draws, strategy, dsa):
    """Per-class loop: DC sums per-class distances; DCC averages gradients, then one distance."""
    params = list(net.parameters())
    num_classes = int(syn_labels.max()) + 1
    loss, sums_real, sums_syn = 0.0, None, None
    for c in range(num_classes):
        xr, yr = real_x[real_y == c], real_y[real_y == c]  # boolean masks: a host sync each
        xs = syn_images[c * cfg.ipc : (c + 1) * cfg.ipc]
        ys = syn_labels[c * cfg.ipc : (c + 1) * cfg.ipc]
        if draws is not None:  # the class's one Siamese draw, for its real and synthetic images
            xr = apply_dsa(xr, draws.index(torch.full_like(yr, c)), strategy, dsa)
            xs = apply_dsa(xs, draws.index(torch.full_like(ys, c)), strategy, dsa)
        g_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(xr), yr), params)]
        g_syn = list(torch.autograd.grad(F.cross_entropy(net(xs), ys), params, create_graph=True))
        if classwise:
            loss = loss + match_loss(g_real, g_syn, cfg.distance)
        else:
            sums_real = g_real if sums_real is None else [a + b for a, b in zip(sums_real, g_real)]
            sums_syn = g_syn if sums_syn is None else [a + b for a, b in zip(sums_syn, g_syn)]
    if classwise:
        return loss
    return match_loss([g / num_classes for g in sums_real], [g / num_classes for g in sums_syn], cfg.distance)


def literal_outer_iteration(
    cfg: CondenseConfig,
    data: ImageDataset,
    syn_images: Tensor,
    syn_labels: Tensor,
    image_optimizer: torch.optim.Optimizer,
    outer: int,
) -> float:
    """One outer iteration as the original code runs it; returns the mean loss (a float).
    In the run's precision, as the fast path (fp32: TF32 off on a GPU)."""
    with precision_context(cfg.precision, data.device):
        return _literal_outer(cfg, data, syn_images, syn_labels, image_optimizer, outer)


def _literal_outer(cfg, data, syn_images, syn_labels, image_optimizer, outer) -> float:
    cfg = cfg.resolved()
    torch.manual_seed(iteration_seed(cfg.seed, outer))
    net = create_model(cfg.model, data.channels, data.num_classes, data.image_size).to(data.device)
    net.train()
    batchnorm = has_batchnorm(net) and cfg.batchnorm
    if batchnorm == "frozen":
        set_batchnorm_statistics(net, data)
    net_optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
    strategy = cfg.dsa_strategy or default_dsa_strategy(data.name)
    dsa = DSAParams()
    loss_avg = 0.0
    for inner in range(cfg.inner_iterations):
        if batchnorm == "original":  # the original: 16 real/class in train mode, then BN frozen
            x16, _ = data.sample_real(16)
            net.train()
            net(x16)
            for m in net.modules():
                if "BatchNorm" in m._get_name():
                    m.eval()
        real_x, real_y = data.sample_real(cfg.batch_real)
        draws = None
        if cfg.uses_dsa:
            h, w = data.image_size
            draws = sample_dsa(data.num_classes, strategy, dsa, image_size=(h, w), device=data.device)
        classwise = uses_classwise_loss(cfg, outer, inner)
        loss = literal_loss(cfg, net, real_x, real_y, syn_images, syn_labels, classwise, draws, strategy, dsa)
        image_optimizer.zero_grad()
        loss.backward()
        image_optimizer.step()
        loss_avg += loss.item()  # host sync per image update
        if inner == cfg.inner_iterations - 1:
            break
        augment = (lambda x: dsa_augment(x, strategy, dsa)) if cfg.uses_dsa else None
        if batchnorm == "original":
            net.train()  # the original's epoch('train', ...)
        literal_train(net, net_optimizer, syn_images.detach(), syn_labels, cfg.net_epochs,
                      cfg.batch_train, augment)  # fmt: skip
    return loss_avg / cfg.inner_iterations


def literal_train(net: nn.Module, optimizer, images, labels, epochs, batch_size, augment=None):
    """The original `epoch('train', ...)`: running loss and accuracy read back every batch."""
    n = images.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, device=images.device)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x)
            out = net(x)
            loss = F.cross_entropy(out, labels[idx])
            loss_sum += loss.item() * len(idx)  # host sync per batch
            correct += int((out.argmax(1) == labels[idx]).sum().item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def literal_evaluate(model, images, labels, data, epochs, cfg: EvalConfig, augment=None) -> list[float]:
    """cfg.num_nets networks, one after another (seeded as dcclib.evaluate), `.item()` per batch."""
    from dcclib.runtime import derive_seed

    accs = []
    for j in range(cfg.num_nets):
        torch.manual_seed(derive_seed("evaluate", cfg.seed, model, j))
        net = create_model(model, data.channels, data.num_classes, data.image_size).to(data.device)
        net.train()
        lr = cfg.lr
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for epoch in range(epochs + 1):
            literal_train(net, opt, images, labels, 1, cfg.batch_size, augment)
            if epoch == epochs // 2 + 1:
                lr *= 0.1
                opt = torch.optim.SGD(
                    net.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
                )
        net.eval()
        with torch.no_grad():
            correct = 0
            for start in range(0, data.test_images.shape[0], cfg.test_batch):
                sl = slice(start, start + cfg.test_batch)
                correct += int((net(data.test_images[sl]).argmax(1) == data.test_labels[sl]).sum().item())
        accs.append(correct / data.test_images.shape[0])
    return accs
