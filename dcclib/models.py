"""Networks of the original DC/DSA/DCC code (its ``networks.py``), created by name.

Every model has the same interface so the condenser, the evaluator and the feature
analyses never need to know which architecture they hold:

* ``forward(x)`` returns logits ``[N, num_classes]``;
* ``embed(x)`` returns the penultimate features ``[N, feature_dim]``, i.e. the input of
  the final linear layer ``classifier`` (``forward(x) == classifier(embed(x))``);
* attributes ``num_classes`` and ``feature_dim``.

"Instance norm" is ``GroupNorm(C, C, affine=True)`` as in the original, so it normalises
each sample on its own and, unlike BatchNorm, keeps no running statistics.
Feature sizes are computed from the input size rather than hardcoded, so 28x28 and
32x32 inputs with 1 or 3 channels work wherever the architecture allows.

Length (a little over 400 lines): the one registry of every architecture the paper trains,
with its variants; split per architecture, the registry and the shared interface would scatter.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dcclib.errors import UserError

__all__ = [
    "ConvNet",
    "MLP",
    "LeNet",
    "AlexNet",
    "VGG11",
    "ResNet18",
    "create_model",
    "list_models",
    "has_batchnorm",
]

Size = tuple[int, int]


def _as_size(image_size: int | tuple[int, int]) -> Size:
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = image_size
    return (int(h), int(w))


def _conv_size(size: Size, kernel: int, padding: int, stride: int = 1) -> Size:
    """Spatial size after a square convolution (PyTorch's floor rule)."""
    h, w = size
    return ((h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1)


def _pool_size(size: Size) -> Size:
    return (size[0] // 2, size[1] // 2)


def _check_size(size: Size, model: str, image_size: Size) -> None:
    if min(size) < 1:
        raise UserError(
            f"input size {image_size[0]}x{image_size[1]} is too small for {model}; "
            "use larger images or another model"
        )


class _Net(nn.Module):
    """Common interface: subclasses define ``embed`` and a final ``classifier`` layer."""

    num_classes: int
    feature_dim: int
    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The features [N, feature_dim] that the classifier reads."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits [N, num_classes] of the images `x`."""
        return self.classifier(self.embed(x))


# --------------------------------------------------------------------------- ConvNet

_ACTS = ("relu", "sigmoid", "leakyrelu")
_NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
_POOLS = ("avgpool", "maxpool", "none")


def _activation(act: str) -> nn.Module:
    if act == "relu":
        return nn.ReLU()
    if act == "sigmoid":
        return nn.Sigmoid()
    return nn.LeakyReLU(negative_slope=0.01)


def _norm(norm: str, shape: tuple[int, int, int]) -> nn.Module | None:
    """Norm layer for a feature map of ``shape`` = (C, H, W); ``None`` for no norm."""
    c = shape[0]
    if norm == "instancenorm":
        return nn.GroupNorm(c, c, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(c, affine=True)
    if norm == "layernorm":
        return nn.LayerNorm(list(shape), elementwise_affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(4, c, affine=True)
    return None


class ConvNet(_Net):
    """The default DC network: ``depth`` x [conv3x3 -> norm -> act -> pool] -> linear.

    As in the original, the first conv uses padding 3 for single-channel input (so
    28x28 MNIST becomes 32x32), padding 1 otherwise.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        width: int = 128,
        depth: int = 3,
        act: str = "relu",
        norm: str = "instancenorm",
        pool: str = "avgpool",
        image_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        for what, value, allowed in (
            ("act", act, _ACTS),
            ("norm", norm, _NORMS),
            ("pool", pool, _POOLS),
        ):
            if value not in allowed:
                raise UserError(f"unknown ConvNet {what} '{value}'; choose one of: " + ", ".join(allowed))
        if depth < 1 or width < 1:
            raise UserError(f"ConvNet needs depth >= 1 and width >= 1 (got {depth}, {width})")
        in_size = _as_size(image_size)
        size = in_size
        layers: list[nn.Module] = []
        in_ch = channels
        for d in range(depth):
            padding = 3 if channels == 1 and d == 0 else 1
            layers.append(nn.Conv2d(in_ch, width, kernel_size=3, padding=padding))
            size = _conv_size(size, 3, padding)
            norm_layer = _norm(norm, (width, *size))
            if norm_layer is not None:
                layers.append(norm_layer)
            layers.append(_activation(act))
            if pool != "none":
                layers.append(nn.MaxPool2d(2, 2) if pool == "maxpool" else nn.AvgPool2d(2, 2))
                size = _pool_size(size)
            _check_size(size, f"ConvNet of depth {depth}", in_size)
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.feature_dim = width * size[0] * size[1]
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier, flattened: [N, feature_dim]."""
        return self.features(x).flatten(1)


# --------------------------------------------------------------------------- MLP, LeNet, AlexNet


class MLP(_Net):
    """Flattened input -> 128 -> 128 -> classes, ReLU between."""

    def __init__(self, channels: int, num_classes: int, image_size: int | tuple[int, int] = 32) -> None:
        super().__init__()
        h, w = _as_size(image_size)
        self.fc_1 = nn.Linear(channels * h * w, 128)
        self.fc_2 = nn.Linear(128, 128)
        self.num_classes = num_classes
        self.feature_dim = 128
        self.classifier = nn.Linear(128, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier, flattened: [N, feature_dim]."""
        x = F.relu(self.fc_1(x.flatten(1)))
        return F.relu(self.fc_2(x))


class LeNet(_Net):
    """Conv 6@5x5 -> maxpool -> conv 16@5x5 -> maxpool -> 120 -> 84 -> classes."""

    def __init__(self, channels: int, num_classes: int, image_size: int | tuple[int, int] = 32) -> None:
        super().__init__()
        in_size = _as_size(image_size)
        padding = 2 if channels == 1 else 0
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        size = _pool_size(_conv_size(_pool_size(_conv_size(in_size, 5, padding)), 5, 0))
        _check_size(size, "LeNet", in_size)
        self.fc_1 = nn.Linear(16 * size[0] * size[1], 120)
        self.fc_2 = nn.Linear(120, 84)
        self.num_classes = num_classes
        self.feature_dim = 84
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier, flattened: [N, feature_dim]."""
        x = self.features(x).flatten(1)
        return F.relu(self.fc_2(F.relu(self.fc_1(x))))


class AlexNet(_Net):
    """The DC paper's small AlexNet: five convs, three max pools, one linear layer."""

    def __init__(self, channels: int, num_classes: int, image_size: int | tuple[int, int] = 32) -> None:
        super().__init__()
        in_size = _as_size(image_size)
        padding = 4 if channels == 1 else 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, kernel_size=5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(192, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(192, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        # The 5x5 convs with padding 2 and the 3x3 convs with padding 1 keep the size.
        size = _pool_size(_pool_size(_pool_size(_conv_size(in_size, 5, padding))))
        _check_size(size, "AlexNet", in_size)
        self.num_classes = num_classes
        self.feature_dim = 192 * size[0] * size[1]
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier, flattened: [N, feature_dim]."""
        return self.features(x).flatten(1)


# --------------------------------------------------------------------------- VGG11, ResNet18


def _norm2d(norm: str, c: int) -> nn.Module:
    """Instance norm (per-sample GroupNorm) or BatchNorm, the two options of VGG/ResNet."""
    return nn.GroupNorm(c, c, affine=True) if norm == "instancenorm" else nn.BatchNorm2d(c)


_VGG11_CFG: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11(_Net):
    """VGG11 with 3x3 convs -> norm -> ReLU and five max pools, then one linear layer.

    Five halvings need at least 32x32 going in: 1-channel 28x28 works (padding 3 on
    the first conv), 3-channel 28x28 does not.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        norm: str = "instancenorm",
        image_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        in_size = _as_size(image_size)
        size = in_size
        layers: list[nn.Module] = []
        in_ch = channels
        for i, v in enumerate(_VGG11_CFG):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                size = _pool_size(size)
            else:
                assert isinstance(v, int)
                padding = 3 if channels == 1 and i == 0 else 1
                layers += [
                    nn.Conv2d(in_ch, v, kernel_size=3, padding=padding),
                    _norm2d(norm, v),
                    nn.ReLU(),
                ]
                size = _conv_size(size, 3, padding)
                in_ch = v
        _check_size(size, "VGG11", in_size)
        self.features = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.feature_dim = 512 * size[0] * size[1]
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier, flattened: [N, feature_dim]."""
        return self.features(x).flatten(1)


class BasicBlock(nn.Module):
    """ResNet basic block; 1x1 conv + norm shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm2d(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm2d(norm, planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                _norm2d(norm, planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output: two 3x3 convolutions plus the (projected) shortcut."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(_Net):
    """CIFAR-style ResNet18: 3x3 stride-1 stem, BasicBlock [2, 2, 2, 2], global avg pool.

    The original pools with ``avg_pool2d(out, 4)``, which equals the global average at
    32x32; the adaptive pool gives the same there and also works at 28x28.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        norm: str = "instancenorm",
        image_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        del image_size  # global pooling makes the head independent of the input size
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = _norm2d(norm, 64)
        blocks: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for s in (stride, 1):
                blocks.append(BasicBlock(in_planes, planes, s, norm))
                in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.num_classes = num_classes
        self.feature_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier, flattened: [N, feature_dim]."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


# --------------------------------------------------------------------------- registry

_Factory = Callable[..., nn.Module]

_REGISTRY: dict[str, _Factory] = {
    "convnet": ConvNet,
    **{f"convnet_w{w}": partial(ConvNet, width=w) for w in (32, 64, 128, 256)},
    **{f"convnet_d{d}": partial(ConvNet, depth=d) for d in (1, 2, 3, 4)},
    "convnet_sigmoid": partial(ConvNet, act="sigmoid"),
    "convnet_relu": partial(ConvNet, act="relu"),
    "convnet_leakyrelu": partial(ConvNet, act="leakyrelu"),
    "convnet_nopool": partial(ConvNet, pool="none"),
    "convnet_maxpool": partial(ConvNet, pool="maxpool"),
    "convnet_avgpool": partial(ConvNet, pool="avgpool"),
    "convnet_nonorm": partial(ConvNet, norm="none"),
    "convnet_bn": partial(ConvNet, norm="batchnorm"),
    "convnet_ln": partial(ConvNet, norm="layernorm"),
    "convnet_in": partial(ConvNet, norm="instancenorm"),
    "convnet_gn": partial(ConvNet, norm="groupnorm"),
    "mlp": MLP,
    "lenet": LeNet,
    "alexnet": AlexNet,
    "vgg11": partial(VGG11, norm="instancenorm"),
    "vgg11_bn": partial(VGG11, norm="batchnorm"),
    "resnet18": partial(ResNet18, norm="instancenorm"),
    "resnet18_bn": partial(ResNet18, norm="batchnorm"),
}


def list_models() -> list[str]:
    """All names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str, channels: int, num_classes: int, image_size: int | tuple[int, int] = 32
) -> nn.Module:
    """Build a freshly initialised (default PyTorch init) model by registry name."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UserError(f"unknown model '{name}'; choose one of: " + ", ".join(list_models()))
    return factory(channels, num_classes, image_size=image_size)


def has_batchnorm(model: nn.Module) -> bool:
    """True if any BatchNorm layer is present: its running statistics must be frozen."""
    return any(isinstance(m, _BatchNorm) for m in model.modules())
