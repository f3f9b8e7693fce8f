"""Gradient matching: the distance D and the DC (class-wise) and DCC (class-collective) losses.

Pure functions of a network and already-augmented batches. Everything here is written so that
one call does the work for all classes at once; `tests/test_matching.py` holds the literal
per-class versions (the oracle) and checks that these give the same loss and the same gradient
with respect to the synthetic images.

Shapes: real and synthetic batches are class-blocked (all images of class 0, then class 1, ...),
with labels alongside. Gradients are lists of tensors, one per network parameter; the class-wise
path returns them with a leading class dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from dcclib.errors import UserError

DISTANCES = ("layerwise", "mse", "cos")
CLASSWISE_MODES = ("vmap", "loop")
_EPS = 1e-6  # the original's constant in the cosine denominators


# ---------------------------------------------------------------------------------------------
# The distance D, batched over a leading "pair" dimension P (P = classes for DC, 1 for DCC).
# ---------------------------------------------------------------------------------------------
def gradient_distance(real: Sequence[Tensor], syn: Sequence[Tensor], kind: str = "layerwise") -> Tensor:
    """Sum over the P pairs of D(real[p], syn[p]); every tensor has shape [P, *param_shape].

    layerwise: per parameter tensor, rows by output unit, 1 - cos per row, summed; 1-D
    parameters (biases, norm scales/shifts) contribute nothing (DC's `distance_wb`).
    mse: squared L2 over all parameters concatenated. cos: 1 - one global cosine.
    """
    if kind == "layerwise":
        total = real[0].new_zeros(())
        for r, s in zip(real, syn):
            if r.dim() <= 2:  # [P, n]: a 1-D parameter: ignored
                continue
            r_rows = r.flatten(2)  # [P, out, in*k*k]
            s_rows = s.flatten(2)
            cos = (r_rows * s_rows).sum(-1) / (r_rows.norm(dim=-1) * s_rows.norm(dim=-1) + _EPS)
            total = total + (1 - cos).sum()
        return total
    r_flat = torch.cat([r.flatten(1) for r in real], dim=1)  # [P, all params]
    s_flat = torch.cat([s.flatten(1) for s in syn], dim=1)
    if kind == "mse":
        return ((r_flat - s_flat) ** 2).sum()
    if kind == "cos":
        cos = (r_flat * s_flat).sum(-1) / (r_flat.norm(dim=-1) * s_flat.norm(dim=-1) + _EPS)
        return (1 - cos).sum()
    raise UserError(f"unknown distance '{kind}'; choose one of: {', '.join(DISTANCES)}")


# ---------------------------------------------------------------------------------------------
# Gradients of the cross-entropy with respect to the network parameters.
# ---------------------------------------------------------------------------------------------
def collective_gradient(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    weights: Tensor | None = None,
    create_graph: bool = False,
    chunk_size: int | None = None,
) -> list[Tensor]:
    """Gradient of sum_i w_i * CE(x_i, y_i) (mean CE when weights is None), shapes [1, *param].

    With `weights = 1 / (C * k_c)` this is the average over classes of per-class mean-CE
    gradients, i.e. DCC's real side. `chunk_size` splits the batch and adds the chunks'
    gradients (same numbers, less memory); it only applies without create_graph.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    n = x.shape[0]
    if weights is None:
        weights = x.new_full((n,), 1.0 / n)
    if create_graph or chunk_size is None or chunk_size >= n:
        loss = (F.cross_entropy(net(x), y, reduction="none") * weights).sum()
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        return [g.unsqueeze(0) if create_graph else g.detach().unsqueeze(0) for g in grads]
    total = [torch.zeros_like(p) for p in params]
    for start in range(0, n, chunk_size):
        sl = slice(start, start + chunk_size)
        loss = (F.cross_entropy(net(x[sl]), y[sl], reduction="none") * weights[sl]).sum()
        for acc, g in zip(total, torch.autograd.grad(loss, params)):
            acc.add_(g)
    return [t.unsqueeze(0) for t in total]


def classwise_gradients(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    counts: Sequence[int],
    create_graph: bool = False,
    mode: str = "vmap",
    chunk_size: int | None = None,
) -> list[Tensor]:
    """Per-class gradients of the class's mean CE, each of shape [C, *param] (DC's two sides).

    x is class-blocked with `counts[c]` images of class c (a host-side list, so that nothing
    here waits for the device). mode "vmap" computes all classes in one batched call when the
    counts are equal and the network is `vmap_safe`; "loop" runs one autograd call per class.
    Which is faster depends on the device (see benchmarks/); both give the same numbers.
    `chunk_size` (without create_graph) bounds the images processed at once: vmap takes
    classes in groups, the loop splits a class larger than the chunk (memory only; the numbers
    change by float rounding at most).
    """
    if mode not in CLASSWISE_MODES:
        raise UserError(f"unknown class-wise mode '{mode}'; choose one of: {', '.join(CLASSWISE_MODES)}")
    chunk = None if create_graph else chunk_size
    if mode == "vmap" and len(set(counts)) == 1 and vmap_safe(net):
        per_class = counts[0]
        if chunk is None or chunk >= per_class * len(counts):
            return _classwise_vmap(net, x, y, len(counts), per_class, create_graph)
        step = max(1, chunk // per_class) * per_class  # whole classes per call
        parts = []
        for i in range(0, x.shape[0], step):
            xs, ys = x[i : i + step], y[i : i + step]
            parts.append(_classwise_vmap(net, xs, ys, xs.shape[0] // per_class, per_class, False))
        return [torch.cat(gs) for gs in zip(*parts)]
    return _classwise_loop(net, x, y, counts, create_graph, chunk)


def vmap_safe(net: nn.Module) -> bool:
    """False for networks whose second-order gradients vmap gets wrong: through LayerNorm, the
    input gradient of vmap(grad(f)) differentiated again is wrong in PyTorch (functorch #534,
    #807; found by the cross-check against the original: 1.7e-2 relative). Those use the loop."""
    return not any(isinstance(m, nn.LayerNorm) for m in net.modules())


def _classwise_loop(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    counts: Sequence[int],
    create_graph: bool,
    chunk: int | None = None,
) -> list[Tensor]:
    params = [p for p in net.parameters() if p.requires_grad]
    per_param: list[list[Tensor]] = [[] for _ in params]
    start = 0
    for count in counts:
        xc, yc = x[start : start + count], y[start : start + count]
        start += count
        if chunk is not None and count > chunk:  # mean-CE gradient of the class, in chunks
            for acc, g in zip(per_param, collective_gradient(net, xc, yc, chunk_size=chunk)):
                acc.append(g[0])
            continue
        loss = F.cross_entropy(net(xc), yc)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        for acc, g in zip(per_param, grads):
            acc.append(g if create_graph else g.detach())
    return [torch.stack(gs) for gs in per_param]


def _classwise_vmap(
    net: nn.Module, x: Tensor, y: Tensor, num_classes: int, per_class: int, create_graph: bool
) -> list[Tensor]:
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    buffers = dict(net.named_buffers())

    def class_loss(p: dict[str, Tensor], xc: Tensor, yc: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(net, (p, buffers), (xc,)), yc)

    xs = x.reshape(num_classes, per_class, *x.shape[1:])
    ys = y.reshape(num_classes, per_class)
    grads = vmap(grad(class_loss), in_dims=(None, 0, 0))(params, xs, ys)
    out = [grads[n] for n in names]
    return out if create_graph else [g.detach() for g in out]


# ---------------------------------------------------------------------------------------------
# The two matching losses.
# ---------------------------------------------------------------------------------------------
_WEIGHTS: dict[tuple, Tensor] = {}  # class_weights cache: a host-to-device copy waits for the device


def class_weights(counts: Sequence[int], like: Tensor) -> Tensor:
    """w_i = 1 / (C * k_c) for each image of a class-blocked batch with counts k_c.

    Summing w_i * CE_i turns a sum over the batch into the average over classes of per-class
    mean losses. Built from host-side counts once per (counts, dtype, device) and cached:
    a copy from pageable host memory would wait for the device on every call. Read-only.
    """
    key = (tuple(counts), like.dtype, like.device)
    cached = _WEIGHTS.get(key)
    if cached is not None:
        return cached
    num_classes = len(counts)
    values = [1.0 / (num_classes * k) for k in counts for _ in range(k)]
    weights = torch.tensor(values, dtype=like.dtype).to(like.device)
    if len(_WEIGHTS) >= 64:
        _WEIGHTS.clear()
    _WEIGHTS[key] = weights
    return weights


def dc_loss(
    net: nn.Module,
    real_x: Tensor,
    real_y: Tensor,
    syn_x: Tensor,
    syn_y: Tensor,
    real_counts: Sequence[int],
    syn_counts: Sequence[int],
    distance: str = "layerwise",
    mode: str = "vmap",
    real_chunk: int | None = None,
) -> Tensor:
    """DC, Eq. (2): sum over classes of D(g_real_c, g_syn_c), per-class mean-CE gradients.

    Batches are class-blocked with the given per-class counts (host-side lists). `real_chunk`
    bounds the real images processed at once (memory only).
    """
    g_real = classwise_gradients(
        net, real_x, real_y, real_counts, create_graph=False, mode=mode, chunk_size=real_chunk
    )
    g_syn = classwise_gradients(net, syn_x, syn_y, syn_counts, create_graph=True, mode=mode)
    return gradient_distance(g_real, g_syn, distance)


def dcc_loss(
    net: nn.Module,
    real_x: Tensor,
    real_y: Tensor,
    syn_x: Tensor,
    syn_y: Tensor,
    real_counts: Sequence[int],
    syn_counts: Sequence[int],
    distance: str = "layerwise",
    real_chunk: int | None = None,
    mode: str = "vmap",
) -> Tensor:
    """DCC, Eq. (10): D(mean_c g_real_c, mean_c g_syn_c), each side one weighted gradient.

    The real side weights every image by 1/(C*k_c), which equals the average over classes of
    per-class mean gradients for any class counts; the synthetic side is the mean CE over all
    C*ipc images (ipc is equal across classes). The network must normalise per sample
    (instance norm, or frozen batch norm) for the concatenation to be exact.
    Speed (the same numbers up to float rounding): mode "vmap" takes the real batch in one pass;
    "loop" accumulates it one class's worth of images at a time, as the original does, which is
    faster on a CPU (cache-sized activations; benchmarks/bench_condense.py --paper-shapes).
    """
    if mode not in CLASSWISE_MODES:
        raise UserError(f"unknown class-wise mode '{mode}'; choose one of: {', '.join(CLASSWISE_MODES)}")
    if mode == "loop":
        per_class = max(real_counts)
        real_chunk = per_class if real_chunk is None else min(real_chunk, per_class)
    w_real = class_weights(real_counts, real_x)
    w_syn = class_weights(syn_counts, syn_x)
    g_real = collective_gradient(net, real_x, real_y, w_real, chunk_size=real_chunk)
    g_syn = collective_gradient(net, syn_x, syn_y, w_syn, create_graph=True)
    return gradient_distance(g_real, g_syn, distance)
