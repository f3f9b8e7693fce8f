"""KIP (Kernel Inducing Points, Nguyen et al. 2020) with a closed-form fully connected ReLU kernel.

The DCC paper ran the KIP authors' JAX code (neural-tangents) with an infinitely wide
convolutional kernel. Here the kernel is the infinite-width NNGP or NTK of a fully connected
ReLU network in NTK parameterisation (the KIP code's `FullyConnectedNetwork`: `depth` x
[Dense(W_std, b_std) -> ReLU] -> Dense; W_std^2 = 2, b_std = 0.1), on flattened normalised images:

    K^0 = w * <x, x'> / d + b                       (first pre-activations)
    K^l = w * E[relu(u) relu(v)] + b,  Theta^l = K^l + w * E[relu'(u) relu'(v)] * Theta^(l-1)
    E[relu(u) relu(v)]   = sqrt(k k') / (2 pi) * (sin t + (pi - t) cos t)   (arc-cosine, order 1)
    E[relu'(u) relu'(v)] = (pi - t) / (2 pi),   t = arccos(K / sqrt(k k'))

KIP learns the support set (x_s, optionally y_s) by Adam on the kernel ridge regression loss of
class-balanced target batches, as the KIP code does: pred = K_ts (K_ss + reg * tr(K_ss)/n I)^-1 y_s,
loss = 0.5 * mean((pred - y_t)^2), labels = one-hot minus 1/C, float64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.runtime import derive_seed

KERNELS = ("ntk", "nngp")


@dataclass(frozen=True)
class KernelConfig:
    """The infinite-width fully connected ReLU kernel: NTK or NNGP, depth, weight/bias variances."""

    kind: str = "ntk"  # ntk | nngp
    depth: int = 1  # hidden [Dense -> ReLU] layers
    w_var: float = 2.0  # W_std^2
    b_var: float = 0.01  # b_std^2

    def validate(self) -> None:
        """A UserError when a setting is out of range."""
        if self.kind not in KERNELS:
            raise UserError(f"unknown kernel '{self.kind}'; choose one of: {', '.join(KERNELS)}")
        if self.depth < 0 or self.w_var <= 0 or self.b_var < 0:
            raise UserError("kernel needs depth >= 0, w_var > 0 and b_var >= 0")


class _J1(torch.autograd.Function):
    """J_1(c) = sqrt(1 - c^2) + (pi - arccos c) c, with its exact, finite derivative pi - arccos c.

    Autograd through sqrt and arccos would give inf - inf at c = 1 (a support image equal to a
    target image); the derivative itself is bounded.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, c: Tensor) -> Tensor:
        """J_1(c), c clamped to [-1, 1] (saves arccos c for the backward pass)."""
        c = c.clamp(-1, 1)
        t = torch.arccos(c)
        ctx.save_for_backward(t)
        return torch.sqrt((1 - c * c).clamp_min(0)) + (math.pi - t) * c

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> Tensor:
        """grad_out * (pi - arccos c): bounded everywhere, also at c = +-1."""
        (t,) = ctx.saved_tensors
        return grad_out * (math.pi - t)


def safe_arccos(c: Tensor) -> Tensor:
    """arccos with the value at +-1 for |c| >= 1 and a zero (not NaN) gradient there (as neural-tangents)."""
    return torch.arccos(torch.where(c.abs() >= 1, c.sign().detach(), c))


def arccos1(cos: Tensor) -> Tensor:
    """Cho and Saul's arc-cosine kernel of order 1 for unit vectors: J_1(t) / pi, t = arccos(cos)."""
    return _J1.apply(cos) / math.pi


def relu_kernels(
    x1: Tensor, x2: Tensor, depth: int = 1, w_var: float = 2.0, b_var: float = 0.01
) -> tuple[Tensor, Tensor]:
    """(NNGP, NTK) [n1, n2] of the infinitely wide FC ReLU network on flattened inputs."""
    x1, x2 = x1.flatten(1), x2.flatten(1)
    d = x1.shape[1]
    k = w_var * (x1 @ x2.T) / d + b_var
    k1 = w_var * x1.pow(2).sum(1) / d + b_var  # diagonals [n1], [n2]
    k2 = w_var * x2.pow(2).sum(1) / d + b_var
    ntk = k
    for _ in range(depth):
        norm = torch.sqrt(k1[:, None] * k2[None, :])
        cos = k / norm
        e_relu = norm * arccos1(cos) / 2
        e_drelu = (math.pi - safe_arccos(cos)) / (2 * math.pi)
        k = w_var * e_relu + b_var
        ntk = k + w_var * e_drelu * ntk
        k1, k2 = w_var * k1 / 2 + b_var, w_var * k2 / 2 + b_var  # E[relu(u)^2] = var / 2
    return k, ntk


def kernel(x1: Tensor, x2: Tensor, cfg: KernelConfig) -> Tensor:
    """The kernel matrix [len(x1), len(x2)] that `cfg` names (NTK or NNGP)."""
    nngp, ntk = relu_kernels(x1, x2, cfg.depth, cfg.w_var, cfg.b_var)
    return ntk if cfg.kind == "ntk" else nngp


def krr_weights(k_ss: Tensor, y_s: Tensor, reg: float) -> Tensor:
    """(K_ss + reg * tr(K_ss)/n I)^-1 y_s: the KIP code scales the ridge by the mean eigenvalue."""
    n = k_ss.shape[0]
    eye = torch.eye(n, dtype=k_ss.dtype, device=k_ss.device)
    return torch.linalg.solve(k_ss + abs(reg) * torch.trace(k_ss) / n * eye, y_s)


def krr_predict(k_ts: Tensor, k_ss: Tensor, y_s: Tensor, reg: float) -> Tensor:
    """Kernel ridge regression: K_ts (K_ss + reg * tr(K_ss)/n I)^-1 y_s."""
    return k_ts @ krr_weights(k_ss, y_s, reg)


def centered_one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """One-hot labels minus 1/C, as the KIP code regresses them."""
    return torch.nn.functional.one_hot(labels, num_classes).to(dtype) - 1.0 / num_classes


def kip_loss(x_s: Tensor, y_s: Tensor, x_t: Tensor, y_t: Tensor, cfg: KernelConfig, reg: float) -> Tensor:
    """0.5 * mean((KRR prediction of the targets from the support - y_t)^2)."""
    pred = krr_predict(kernel(x_t, x_s, cfg), kernel(x_s, x_s, cfg), y_s, reg)
    return 0.5 * (pred - y_t).pow(2).mean()


@dataclass(frozen=True)
class KIPConfig:
    """Settings of a KIP run (support size, Adam steps, target batch, ridge, kernel)."""

    ipc: int = 10
    steps: int = 1000  # Adam steps (one target batch each)
    lr: float = 0.01
    target_batch: int = 5000  # class-balanced real target images per step (split evenly over classes)
    reg: float = 1e-6
    kernel: KernelConfig = field(default_factory=KernelConfig)
    learn_labels: bool = False  # the KIP code's default; True also learns y_s
    seed: int = 0
    log_every: int = 10

    def validate(self, data: ImageDataset) -> None:
        """A UserError when a setting is out of range for `data`."""
        self.kernel.validate()
        if self.ipc < 1 or self.steps < 0 or self.lr <= 0 or self.target_batch < data.num_classes:
            raise UserError(
                "KIP needs ipc >= 1, steps >= 0, lr > 0 and a target batch of at least "
                f"one image per class ({data.num_classes})"
            )
        smallest = int(data.class_counts.min())
        if self.ipc > smallest:
            raise UserError(f"ipc {self.ipc} is larger than the smallest class ({smallest} images)")


@dataclass
class KIPResult:
    images: Tensor  # [C * ipc, C, H, W] float32, normalised like the dataset, class-blocked
    labels: Tensor  # [C * ipc] hard labels (argmax of the learned targets when labels are learned)
    targets: Tensor  # [C * ipc, num_classes] the regression targets y_s (float64)
    losses: list[tuple[int, float]]  # (step, loss) every log_every steps and at the last step
    config: dict


def kip(data: ImageDataset, cfg: KIPConfig, progress: bool = False) -> KIPResult:
    """Learn a support set of cfg.ipc images per class by KIP, initialised from real images (seeded)."""
    from tqdm.auto import tqdm

    cfg.validate(data)
    c, dev, dt = data.num_classes, data.device, torch.float64
    gen = torch.Generator(device=dev).manual_seed(derive_seed("kip", cfg.seed, cfg.ipc))
    x0, y0 = data.sample_real(cfg.ipc, generator=gen)
    shape = x0.shape[1:]
    x_s = x0.flatten(1).to(dt).clone().requires_grad_(True)
    y_s = centered_one_hot(y0, c).clone().requires_grad_(cfg.learn_labels)
    opt = torch.optim.Adam([x_s, y_s] if cfg.learn_labels else [x_s], lr=cfg.lr)
    per_class = max(1, cfg.target_batch // c)
    losses: list[tuple[int, float]] = []
    for step in tqdm(range(cfg.steps), desc="KIP", disable=not progress):
        x_t, y_t = data.sample_real(per_class, generator=gen)
        loss = kip_loss(x_s, y_s, x_t.flatten(1).to(dt), centered_one_hot(y_t, c), cfg.kernel, cfg.reg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            losses.append((step, loss.detach().item()))
    targets = y_s.detach()
    labels = targets.argmax(1) if cfg.learn_labels else y0
    images = x_s.detach().to(torch.float32).reshape(-1, *shape)
    return KIPResult(images, labels, targets, losses, asdict(cfg))


@torch.no_grad()
def krr_accuracy(
    images: Tensor,
    targets: Tensor,
    data: ImageDataset,
    cfg: KernelConfig,
    reg: float = 1e-6,
    batch: int = 2000,
) -> float:
    """Test accuracy of kernel ridge regression from the support set (images, targets [n, C])."""
    x_s = images.flatten(1).to(data.device, torch.float64)
    y_s = targets.to(data.device, torch.float64)
    alpha = krr_weights(kernel(x_s, x_s, cfg), y_s, reg)
    correct = 0
    for start in range(0, data.test_images.shape[0], batch):
        x = data.test_images[start : start + batch].flatten(1).to(torch.float64)
        pred = kernel(x, x_s, cfg) @ alpha
        correct += int((pred.argmax(1) == data.test_labels[start : start + batch]).sum())
    return correct / data.test_images.shape[0]
