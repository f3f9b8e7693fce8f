"""The evaluation protocol: fresh networks trained from scratch on a small set, then tested.

The spec's protocol (DC/DSA code): SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256,
shuffled; E+1 passes (epoch indices 0..E), after the pass with index E//2+1 the lr drops by 10x
with a new optimiser (momentum reset). DSA/DSAC sets train with DSA augmentation for E = 1000;
DC/DCC/Random sets train without augmentation for E = 300, except on MNIST (E = 1000 with DC's
crop/scale/rotate augmentation) and for the BatchNorm ConvNet (E = 1000, crop or noise).
Accuracy is on the full test set in eval mode; the reported number is the mean and std over
all trained networks.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcclib.augment import DSAParams, dc_augment, default_dsa_strategy, dsa_augment
from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.models import create_model
from dcclib.seeding import derive_seed

AUGMENTS = ("none", "dsa", "dc", "dc_noise")
MNIST_LIKE = ("mnist", "embedded-mnist")


@dataclass
class EvalConfig:
    """Settings of the evaluation protocol; None means the protocol's default for the method."""

    models: tuple[str, ...] = ("convnet",)
    num_nets: int = 20  # networks trained per model
    epochs: int | None = None  # E
    augment: str | None = None  # none | dsa | dc | dc_noise
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    test_batch: int = 2048
    seed: int = 0


def protocol_defaults(method: str, dataset_name: str, model: str) -> tuple[int, str]:
    """(E, augmentation) of the spec for a set made by `method`, trained on `model`."""
    if method in ("dsa", "dsac"):
        return 1000, "dsa"
    if model == "convnet_bn":
        return 1000, "dc_noise"
    if dataset_name.lower() in MNIST_LIKE:
        return 1000, "dc"
    return 300, "none"


def _augmenter(kind: str, data: ImageDataset):
    if kind == "none":
        return None
    if kind == "dsa":
        strategy, params = default_dsa_strategy(data.name), DSAParams()
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
    augment=None,
) -> nn.Module:
    """The protocol's training loop (E+1 passes, lr x0.1 with a new optimiser after E//2+1)."""
    lr = cfg.lr
    opt = torch.optim.SGD(
        net.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    n = images.shape[0]
    net.train()
    for epoch in range(epochs + 1):
        order = torch.randperm(n, device=images.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x)
            loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch == epochs // 2 + 1:
            lr *= 0.1
            opt = torch.optim.SGD(
                net.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
    return net


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
    """Train cfg.num_nets fresh networks of each model on (images, labels); test each one."""
    from tqdm.auto import tqdm

    if cfg.num_nets <= 0:
        raise UserError(f"num-nets must be positive, got {cfg.num_nets}")
    check_compatible(images, labels, data)
    images, labels = images.to(data.device).detach(), labels.to(data.device)
    results = []
    for model in cfg.models:
        epochs, augment = protocol_defaults(method, data.name, model)
        epochs = cfg.epochs if cfg.epochs is not None else epochs
        augment = cfg.augment if cfg.augment is not None else augment
        if augment not in AUGMENTS:
            raise UserError(
                f"unknown augmentation '{augment}'; choose one of: {', '.join(AUGMENTS)}"
            )
        create_model(model, data.channels, data.num_classes, data.image_size)  # validate name early
        accs = []
        for j in tqdm(range(cfg.num_nets), desc=f"evaluate {model}", disable=not progress):
            torch.manual_seed(derive_seed("evaluate", cfg.seed, model, j))
            net = create_model(model, data.channels, data.num_classes, data.image_size).to(
                data.device
            )
            train_from_scratch(net, images, labels, epochs, cfg, _augmenter(augment, data))
            accs.append(test_accuracy(net, data, cfg.test_batch))
        results.append(
            ModelResult(model, epochs, augment, [float(a) for a in torch.stack(accs).tolist()])
        )
    return results


def random_subset(data: ImageDataset, ipc: int, seed: int) -> tuple[Tensor, Tensor]:
    """The Random baseline: ipc real training images per class, chosen at random (seeded)."""
    if ipc <= 0:
        raise UserError(f"ipc must be positive, got {ipc}")
    smallest = int(data.class_counts.min())
    if ipc > smallest:
        raise UserError(f"ipc {ipc} is larger than the smallest class ({smallest} images)")
    torch.manual_seed(derive_seed("random-subset", seed, ipc))
    return data.sample_real(ipc)
