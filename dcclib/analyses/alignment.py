"""Figure 6: alignment and uniformity (Wang & Isola, 2020) of synthetic sets' features.

Both are measured on L2-normalised features f(x) of a feature network trained on the real data:

    alignment  = E_{(x, y) positive} ||f(x) - f(y)||_2^alpha          (alpha = 2)
    uniformity = log E_{(x, y) all pairs} exp(-t ||f(x) - f(y)||_2^2)   (t = 2)

Lower is better for both. Wang & Isola's positives are two augmentations of one image; here,
as in the paper's Figure 6 ("how two features with the same class are close"), a positive pair
is two synthetic images of the same class. Pairs are unordered and distinct (i < j), as in
their reference code (`torch.pdist`).

The feature networks (ResNet-18, VGG-11) are trained by the project on the real training set;
their weights are cached as safetensors under a key of (model, training config, dataset), and
loaded with safetensors, never with torch.load.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dcclib import io
from dcclib.augment import default_dsa_strategy, dsa_augment
from dcclib.data import ImageDataset, source_id
from dcclib.errors import UserError
from dcclib.evaluate import PROTOCOL, EvalConfig, test_accuracy, train_from_scratch
from dcclib.models import create_model
from dcclib.runtime import derive_seed

_META_KEY = "dcc-feature-net"


# ---------------------------------------------------------------------------------------------
# The two losses (pure functions)
# ---------------------------------------------------------------------------------------------
def normalise(features: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (the hypersphere both losses live on)."""
    if features.dim() != 2:
        raise UserError(f"features must be [N, D], got shape {tuple(features.shape)}")
    return F.normalize(features.double(), dim=1)


def positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Indices (i, j), i < j, of every pair with the same label."""
    i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    same = labels[i] == labels[j]
    return i[same], j[same]


def alignment(features: Tensor, labels: Tensor, alpha: float = 2.0) -> Tensor:
    """Mean over same-class pairs of ||f_i - f_j||^alpha on normalised features."""
    if labels.shape != (features.shape[0],):
        raise UserError(f"{labels.numel()} labels for {features.shape[0]} feature vectors")
    i, j = positive_pairs(labels)
    if len(i) == 0:
        raise UserError("alignment needs at least two samples of one class")
    f = normalise(features)
    return (f[i] - f[j]).norm(dim=1).pow(alpha).mean()


def uniformity(features: Tensor, t: float = 2.0) -> Tensor:
    """log of the mean over all distinct pairs of exp(-t ||f_i - f_j||^2), normalised features."""
    if features.shape[0] < 2:
        raise UserError("uniformity needs at least two samples")
    f = normalise(features)
    return torch.pdist(f, p=2).pow(2).mul(-t).exp().mean().log()


@torch.no_grad()
def extract_features(net: nn.Module, images: Tensor, batch: int = 512) -> Tensor:
    """net.embed over the images in eval mode, [N, feature_dim]."""
    net.eval()
    return torch.cat([net.embed(images[s : s + batch]) for s in range(0, len(images), batch)])


def feature_metrics(
    net: nn.Module, images: Tensor, labels: Tensor, alpha: float = 2.0, t: float = 2.0
) -> dict[str, float]:
    """Alignment and uniformity of a set's features under one network (one point of Figure 6)."""
    f = extract_features(net, images)
    return {"alignment": float(alignment(f, labels, alpha)), "uniformity": float(uniformity(f, t))}


# ---------------------------------------------------------------------------------------------
# Feature networks: trained by the project, cached by config
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureNetConfig:
    """How a feature network is trained on the real training set (the protocol's SGD loop:
    `train_from_scratch` with the protocol's settings, `dcclib.protocol.PROTOCOL`; only the
    number of passes is this analysis' own)."""

    model: str = "resnet18"
    epochs: int = 30
    lr: float = PROTOCOL.lr
    momentum: float = PROTOCOL.momentum
    weight_decay: float = PROTOCOL.weight_decay
    batch_size: int = PROTOCOL.batch_size
    augment: str = "dsa"  # none | dsa (the dataset's default DSA strategy)
    train_per_class: int | None = None  # None: the whole training set
    seed: int = 0

    def check(self) -> None:
        if self.augment not in ("none", "dsa"):
            raise UserError(f"unknown feature-net augmentation '{self.augment}'; use none or dsa")
        if self.epochs < 0 or self.batch_size <= 0 or self.lr <= 0:
            raise UserError("feature-net epochs must be >= 0, batch size and lr positive")
        if self.train_per_class is not None and self.train_per_class <= 0:
            raise UserError(f"train-per-class must be positive, got {self.train_per_class}")


# How each profile trains the feature networks. The paper only says "pre-trained on CIFAR-10";
# these are our choices: the evaluation protocol's SGD loop with DSA augmentation.
FEATURE_TRAINING: dict[str, dict] = {
    "smoke": {"epochs": 0, "train_per_class": 10, "augment": "none"},  # one pass over 10 per class
    "cpu": {"epochs": 1, "train_per_class": 500, "augment": "none"},  # two passes over 500 per class
    "quick": {"epochs": 20, "augment": "dsa"},
    "paper": {"epochs": 100, "augment": "dsa"},
}


def feature_net_config(profile: str, model: str, seed: int = 0) -> FeatureNetConfig:
    """The feature-network training of a profile (see FEATURE_TRAINING)."""
    if profile not in FEATURE_TRAINING:
        raise UserError(f"unknown profile '{profile}'; choose one of: {', '.join(FEATURE_TRAINING)}")
    return FeatureNetConfig(model=model, seed=seed, **FEATURE_TRAINING[profile])


def feature_net_key(cfg: FeatureNetConfig, data: ImageDataset) -> str:
    """A short hash of everything the trained weights depend on."""
    ident = {
        "config": asdict(cfg),
        "dataset": data.name,
        "source": data.source,
        "train_shape": list(data.train_images.shape),
        "classes": list(data.class_names),
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"{cfg.model}-{data.name}-{digest}"


def train_feature_network(cfg: FeatureNetConfig, data: ImageDataset) -> nn.Module:
    """A fresh `cfg.model` trained on the real training set (or a seeded per-class subset)."""
    cfg.check()
    torch.manual_seed(derive_seed("feature-net", cfg.seed, cfg.model, data.name))
    if cfg.train_per_class is None:
        x, y = data.train_images, data.train_labels
    else:
        x, y = data.sample_real(cfg.train_per_class)
    net = create_model(cfg.model, data.channels, data.num_classes, data.image_size).to(data.device)
    strategy = default_dsa_strategy(data.name)
    augment = (lambda b: dsa_augment(b, strategy)) if cfg.augment == "dsa" else None
    ecfg = EvalConfig(
        lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size
    )
    train_from_scratch(net, x, y, cfg.epochs, ecfg, augment)
    return net.eval()


def _save_net(path: Path, net: nn.Module, meta: dict) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    with io.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, default=str)})


def _load_net(path: Path, net: nn.Module, key: str) -> dict | None:
    """Load cached weights into `net`; None (with a warning) when the file is unusable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header[_META_KEY])
        if meta.get("key") != key:
            raise ValueError(f"written for key {meta.get('key')}")
        tensors = load_file(str(path))
        net.load_state_dict(tensors)
        return meta
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        warnings.warn(f"ignoring unusable feature-net cache {path}: {str(exc).splitlines()[0]}", stacklevel=3)
        return None


def load_or_train_feature_network(
    cfg: FeatureNetConfig, data: ImageDataset, cache_dir: str | Path
) -> tuple[nn.Module, dict, bool]:
    """(network in eval mode, its metadata, cache hit?). A miss trains and writes the cache."""
    cfg.check()
    key = feature_net_key(cfg, data)
    path = Path(cache_dir) / f"{key}.safetensors"
    net = create_model(cfg.model, data.channels, data.num_classes, data.image_size).to(data.device)
    if path.is_file():
        meta = _load_net(path, net, key)
        if meta is not None:
            return net.eval(), meta, True
    net = train_feature_network(cfg, data)
    meta = {
        "key": key,
        "config": asdict(cfg),
        "dataset": data.name,
        "data_source": source_id(data.source),
        "test_accuracy": float(test_accuracy(net, data)),
        "versions": io.library_versions(),
    }
    _save_net(path, net, meta)
    return net.eval(), meta, False
