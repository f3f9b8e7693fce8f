"""Algorithm 1: dataset condensation by gradient matching (DC, DSA, DCC, DSAC, bi-level warm-up).

Read top to bottom: the settings, the warm-up rule, one outer iteration, the run loop with
checkpoints. The math of the losses lives in `matching.py`, the augmentation in `augment.py`.

Loop names follow the paper: an outer iteration draws a fresh network (K_o of them); the inner
loop makes K_i image updates on it; between two image updates the network trains T epochs on
the synthetic set. Randomness is seeded per outer iteration from (seed, k_o), so a resumed run
reproduces an uninterrupted one exactly, given the synthetic images and the image optimiser's
momentum saved in the checkpoint.

Speed and memory (reports/performance.md): the hot path never waits for the device (host-side
class counts, cached loss weights); `classwise_mode="auto"` picks DC's per-class gradient
path by device; `real_chunk="auto"` splits a large real batch (CIFAR-100 ipc 50: 25,600
images) into chunks that fit `chunk_budget_mb`, which changes the numbers only by float
rounding; `precision="tf32"` is opt-in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcclib import runs
from dcclib.augment import (
    DSAParams,
    apply_dsa,
    default_dsa_strategy,
    dsa_augment,
    dsa_siamese,
    parse_strategy,
    sample_dsa,
)
from dcclib.condense_config import (  # noqa: F401  (re-exported: the settings live there)
    BATCHNORM_PER_CLASS,
    CLASSWISE_AUTO,
    INNER_SCHEDULE,
    METHODS,
    CondenseConfig,
    config_from_json,
    simple_warmup_default,
)
from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.matching import dc_loss, dcc_loss
from dcclib.models import create_model, has_batchnorm
from dcclib.runtime import activation_bytes_per_image, derive_seed, precision_context

MAX_SYNTHETIC_BYTES = 16 * 2**30  # a larger synthetic set is refused before any allocation


def uses_classwise_loss(cfg: CondenseConfig, outer: int, inner: int) -> bool:
    """The bi-level warm-up rule: DC's class-wise loss while both indices are in the warm-up.

    DC/DSA always use it. DCC/DSAC: `bilevel` uses it while outer < gamma_o AND inner < gamma_i
    (so at K_i = 10 the first 250 networks are pure DC); `inner` ("Simple") while
    inner < simple_gamma_inner on every network (its own length: `simple_warmup_default`);
    `none` never.
    """
    if not cfg.contrastive:
        return True
    if cfg.gamma_outer is None or cfg.gamma_inner is None:
        cfg = cfg.resolved()  # the default lengths (the paper's shares of K_o and K_i)
    if cfg.warmup == "bilevel":
        return outer < cfg.gamma_outer and inner < cfg.gamma_inner
    if cfg.warmup == "inner":
        length = cfg.simple_gamma_inner
        if length is None:
            length = simple_warmup_default(cfg.inner_iterations or 1, cfg.gamma_inner)
        return inner < length
    return False


def iteration_seed(seed: int, outer: int) -> int:
    """The seed of outer iteration `outer` (-1: the initialisation) of a run."""
    return derive_seed("condense", seed, outer)


def host_class_counts(data: ImageDataset) -> list[int]:
    """Per-class training counts on the host; the dataset keeps them, so no device sync."""
    counts = getattr(data, "_counts", None)
    return list(counts) if counts is not None else data.class_counts.tolist()


def resolve_classwise_mode(cfg: CondenseConfig, device: torch.device) -> str:
    """'auto' -> the measured faster path of the device type (CLASSWISE_AUTO)."""
    if cfg.classwise_mode != "auto":
        return cfg.classwise_mode
    return CLASSWISE_AUTO.get(device.type, "loop")


def resolve_real_chunk(cfg: CondenseConfig, data: ImageDataset, total_real: int) -> int | None:
    """Images per chunk of the real batch, or None when the batch is processed whole.

    "auto": as many images as fit `chunk_budget_mb` by the model's activation estimate
    (deterministic: the same on every machine, so the numbers do not depend on free memory).
    """
    if cfg.real_chunk is None:
        return None
    if cfg.real_chunk == "auto":
        per_image = activation_bytes_per_image(
            cfg.model, data.channels, data.num_classes, tuple(data.image_size)
        )
        chunk = max(1, cfg.chunk_budget_mb * 2**20 // per_image)
    else:
        chunk = int(cfg.real_chunk)
    return None if chunk >= total_real else chunk


def siamese_augment(
    real_x: Tensor,
    real_y: Tensor,
    syn_x: Tensor,
    syn_y: Tensor,
    num_classes: int,
    strategy: str,
    params: DSAParams,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """`dsa_siamese` (one draw per class, shared by its real and synthetic images); with
    `chunk`, the real batch is augmented chunk by chunk from the same draw (same numbers,
    smaller temporaries)."""
    if chunk is None or chunk >= real_x.shape[0] or not parse_strategy(strategy):
        real, syn = dsa_siamese([real_x, syn_x], [real_y, syn_y], num_classes, strategy, params)
        return real, syn
    h, w = real_x.shape[-2:]
    draw = sample_dsa(num_classes, strategy, params, image_size=(h, w), device=real_x.device)
    real = torch.cat(
        [
            apply_dsa(real_x[i : i + chunk], draw.index(real_y[i : i + chunk]), strategy, params)
            for i in range(0, real_x.shape[0], chunk)
        ]
    )
    return real, apply_dsa(syn_x, draw.index(syn_y), strategy, params)


def initial_synthetic(data: ImageDataset, cfg: CondenseConfig) -> tuple[Tensor, Tensor]:
    """Class-blocked synthetic images (real images chosen at random, or Gaussian noise)."""
    counts = host_class_counts(data)
    if cfg.init == "real" and min(counts) < cfg.ipc:
        raise UserError(f"ipc {cfg.ipc} is larger than the smallest class ({min(counts)} images)")
    size = data.num_classes * cfg.ipc * data.channels * data.image_size[0] * data.image_size[1] * 4
    if 3 * size > MAX_SYNTHETIC_BYTES:  # the images, their gradient and the optimiser's momentum
        raise UserError(
            f"a synthetic set of {data.num_classes} x {cfg.ipc} images needs {3 * size / 2**30:.1f} GiB "
            f"with its gradient and momentum (more than {MAX_SYNTHETIC_BYTES / 2**30:.0f} GiB): lower --ipc"
        )
    torch.manual_seed(iteration_seed(cfg.seed, -1))
    labels = torch.arange(data.num_classes, device=data.device).repeat_interleave(cfg.ipc)
    if cfg.init == "real":
        images, _ = data.sample_real(cfg.ipc)
    else:
        images = torch.randn(len(labels), data.channels, *data.image_size, device=data.device)
    return images.detach().clone(), labels


def _batchnorm_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def refresh_batchnorm(net: nn.Module, data: ImageDataset, per_class: int = BATCHNORM_PER_CLASS) -> None:
    """The original's step before every image update (batchnorm="original").

    `per_class` real images of each class go through the network in train mode, so every
    BatchNorm layer's running statistics move towards theirs by the layer's momentum (0.1 by
    default, starting from mean 0 and variance 1 on a fresh network); then BatchNorm is frozen
    (eval mode) for the matching, as a synthetic batch of 1 image per class is too small for
    batch statistics.
    """
    x, _ = data.sample_real(per_class)
    net.train()
    with torch.no_grad():
        net(x)
    for module in _batchnorm_layers(net):
        module.eval()


def set_batchnorm_statistics(
    net: nn.Module, data: ImageDataset, per_class: int = BATCHNORM_PER_CLASS
) -> None:
    """batchnorm="frozen": exact running averages (momentum None) over one real batch, then
    frozen (eval mode); done once per network, and the network trains with them frozen."""
    for module in _batchnorm_layers(net):
        module.reset_running_stats()
        module.momentum = None
    refresh_batchnorm(net, data, per_class)


def train_network(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    batch_size: int,
    augment: Callable[[Tensor], Tensor] | None = None,
) -> None:
    """Train on (images, labels) for `epochs` shuffled passes. No host synchronisation."""
    n = images.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, device=images.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x)
            loss = F.cross_entropy(net(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@dataclass
class StepInfo:
    """What an observer sees after one image update (tensors stay on the device)."""

    outer: int
    inner: int
    classwise: bool  # True: DC's class-wise loss was used (warm-up or DC/DSA)
    loss: Tensor
    grad: Tensor  # d loss / d synthetic images, [N, C, H, W]
    net: nn.Module


Observer = Callable[[StepInfo], None]


@dataclass
class OuterResult:
    loss_sum: Tensor  # on device: summed matching loss over the inner loop
    classwise_steps: int
    collective_steps: int
    grad_norm_sum: Tensor  # on device: summed L2 norm of d loss / d images over the image updates


def outer_iteration(
    cfg: CondenseConfig,
    data: ImageDataset,
    syn_images: Tensor,
    syn_labels: Tensor,
    image_optimizer: torch.optim.Optimizer,
    outer: int,
    observer: Observer | None = None,
) -> OuterResult:
    """One fresh network: K_i image updates, with T epochs of network training in between.

    `observer`, when given, is called after every image update with a StepInfo (analyses such
    as the kernel velocity of Figure 4 hook in here; nothing is computed for it when None).
    """
    with precision_context(cfg.precision, data.device):
        return _outer_iteration(cfg, data, syn_images, syn_labels, image_optimizer, outer, observer)


def _outer_iteration(
    cfg: CondenseConfig,
    data: ImageDataset,
    syn_images: Tensor,
    syn_labels: Tensor,
    image_optimizer: torch.optim.Optimizer,
    outer: int,
    observer: Observer | None,
) -> OuterResult:
    torch.manual_seed(iteration_seed(cfg.seed, outer))
    net = create_model(cfg.model, data.channels, data.num_classes, data.image_size).to(data.device)
    net.train()
    batchnorm = has_batchnorm(net) and cfg.batchnorm  # False, "original" or "frozen"
    if batchnorm == "frozen":
        set_batchnorm_statistics(net, data)
    net_optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
    strategy = cfg.dsa_strategy or default_dsa_strategy(data.name)
    dsa = DSAParams()
    real_counts = [min(cfg.batch_real, n) for n in host_class_counts(data)]
    syn_counts = [cfg.ipc] * data.num_classes
    mode = resolve_classwise_mode(cfg, data.device)
    chunk = resolve_real_chunk(cfg, data, sum(real_counts))
    loss_sum = syn_images.new_zeros(())
    grad_norm_sum = syn_images.new_zeros(())  # a diagnostic (notebook 13): the update's size
    steps = {True: 0, False: 0}
    for inner in range(cfg.inner_iterations):
        if batchnorm == "original":
            refresh_batchnorm(net, data)  # running statistics from real images, then frozen
        real_x, real_y = data.sample_real(cfg.batch_real)
        syn_x = syn_images
        if cfg.uses_dsa:  # Siamese: a class's real and synthetic images share one draw
            real_x, syn_x = siamese_augment(
                real_x, real_y, syn_x, syn_labels, data.num_classes, strategy, dsa, chunk
            )
        classwise = uses_classwise_loss(cfg, outer, inner)
        batches = (net, real_x, real_y, syn_x, syn_labels, real_counts, syn_counts, cfg.distance)
        loss = dc_loss(*batches, mode, chunk) if classwise else dcc_loss(*batches, chunk, mode)
        (grad,) = torch.autograd.grad(loss, syn_images)
        syn_images.grad = grad
        image_optimizer.step()
        if observer is not None:
            observer(StepInfo(outer, inner, classwise, loss.detach(), grad, net))
        syn_images.grad = None
        loss_sum = loss_sum + loss.detach()
        grad_norm_sum = grad_norm_sum + grad.detach().norm()
        steps[classwise] += 1
        if inner == cfg.inner_iterations - 1:
            break  # the network is not trained after its last image update
        augment = (lambda x: dsa_augment(x, strategy, dsa)) if cfg.uses_dsa else None
        if batchnorm == "original":
            net.train()  # the original trains the whole network in train mode (batch statistics)
        train_network(
            net,
            net_optimizer,
            syn_images.detach(),
            syn_labels,
            cfg.net_epochs,
            cfg.batch_train,
            augment,
        )
    return OuterResult(loss_sum, steps[True], steps[False], grad_norm_sum)


# ---------------------------------------------------------------------------------------------
# The run: K_o outer iterations, checkpointed into a run folder (dcclib.runs)
# ---------------------------------------------------------------------------------------------
@dataclass
class CondenseResult:
    images: Tensor
    labels: Tensor
    config: CondenseConfig
    run_dir: Path | None
    metrics: list[dict] = field(default_factory=list)


def condense(
    cfg: CondenseConfig,
    data: ImageDataset,
    run_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    observer: Observer | None = None,
) -> CondenseResult:
    """Run Algorithm 1. With `run_dir`, checkpoint every `checkpoint_every` outer iterations
    (atomically) and write the final set; `resume` continues from the checkpoint there.
    `stop_after` ends the run early after that many outer iterations (used to test resume).
    The run folder is checked before any work and locked while the run lasts (`dcclib.runs`);
    a NaN or infinite loss or image raises DivergedError at once: the last finite checkpoint
    is kept and no set is written.
    """
    cfg = cfg.resolved()
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None:
        runs.check_run_dir(run_path, resume)  # before any work: a refusal leaves the disk as it was
    create_model(cfg.model, data.channels, data.num_classes, data.image_size)  # images too small: now
    syn_images, syn_labels = initial_synthetic(data, cfg)
    start_images = syn_images.detach().clone()  # how far the images move is measured from here
    syn_images.requires_grad_(True)
    image_optimizer = torch.optim.SGD([syn_images], lr=cfg.lr_images, momentum=cfg.momentum_images)
    end = cfg.outer_iterations if stop_after is None else min(cfg.outer_iterations, stop_after)
    with runs.owned(run_path):  # created here if new, and locked: one process per run folder
        start, metrics, checkpointed = 0, [], None
        if run_path is not None:
            start, metrics = runs.prepare_run_dir(run_path, cfg, data, resume, syn_images, image_optimizer)
            checkpointed = start if resume else None
        bar = runs.progress_bar(start, cfg.outer_iterations, progress)
        try:
            for outer in range(start, end):
                tic = time.perf_counter()
                result = outer_iteration(cfg, data, syn_images, syn_labels, image_optimizer, outer, observer)
                loss_sum, loss_finite, images_finite, grad_norm_sum, moved = torch.stack(
                    [
                        result.loss_sum.float(),
                        torch.isfinite(result.loss_sum).float(),
                        torch.isfinite(syn_images).all().float(),
                        result.grad_norm_sum.float(),
                        (syn_images.detach() - start_images).norm().float(),
                    ]
                ).tolist()  # one sync per network
                row = {
                    "outer": outer,
                    "loss": loss_sum / cfg.inner_iterations if loss_finite else None,  # JSON has no NaN
                    "finite": bool(loss_finite and images_finite),
                    "classwise_steps": result.classwise_steps,
                    "collective_steps": result.collective_steps,
                    # diagnostics: the mean L2 norm of an image update's gradient, and the L2
                    # distance of the whole set from its initialisation after this network
                    "grad_norm": grad_norm_sum / cfg.inner_iterations if loss_finite else None,
                    "moved": moved if images_finite else None,
                    "seconds": time.perf_counter() - tic,
                }
                metrics.append(row)
                if run_path is not None:
                    runs.append_metrics(run_path, row)
                if not row["finite"]:  # stop at once: the last finite checkpoint stays as it is
                    raise runs.diverged(outer, cfg, run_path, checkpointed)
                phase = (
                    "warm-up (class-wise)"
                    if result.collective_steps == 0 and cfg.contrastive
                    else ("contrastive" if cfg.contrastive else "class-wise")
                )
                bar.set_postfix(loss=f"{row['loss']:.3f}", phase=phase)
                bar.update(1)
                done = outer + 1
                if run_path is not None and (
                    (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end
                ):
                    runs.save_checkpoint(run_path, cfg, data, syn_images, image_optimizer, done)
                    checkpointed = done
        finally:
            bar.close()
        images = syn_images.detach()
        if run_path is not None and end == cfg.outer_iterations:
            runs.save_set(run_path, images, syn_labels, runs.synthetic_metadata(cfg, data))
    return CondenseResult(images, syn_labels, cfg, run_path, metrics)
