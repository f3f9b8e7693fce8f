"""Selection baselines of Table 2: coresets of real images chosen by a per-sample score.

- GraNd and EL2N (Paul et al., 2021): GraNd(x, y) = E_w ||grad_w CE(f_w(x), y)||_2 over all
  parameters; EL2N(x, y) = E_w ||softmax(f_w(x)) - onehot(y)||_2. The expectation is the mean
  over independently trained networks (the paper: 10), each scored after `epoch` passes over
  the full training set (0 = at initialisation). Both come from the same networks in one pass:
  per-sample gradients with torch.func (vmap over grad), the logits as the auxiliary output.
- C-score (Jiang et al., 2021): the authors' precomputed scores, read from their .npz file.

The DCC paper keeps the most typical samples: the LOWEST GraNd/EL2N scores and the HIGHEST
C-scores ("prototypical (high-scoring)") of each class. Random is `dcclib.evaluate.random_subset`.
Scores are cached as safetensors (+ JSON metadata) keyed by a hash of the dataset and config.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from dcclib.condense import train_network
from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.evaluate import PROTOCOL, protocol_optimizer
from dcclib.io import library_versions, load_tensors, save_tensors
from dcclib.models import create_model
from dcclib.runtime import derive_seed

SCORE_KINDS = ("el2n", "grand")
KEEP = {"el2n": "lowest", "grand": "lowest", "cscore": "highest"}  # the paper's choice per score
CSCORE_URL = "https://pluskid.github.io/structural-regularity/"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class ScoreConfig:
    """How GraNd/EL2N are computed: which networks, trained how long, averaged over how many.

    The networks train with the protocol's optimiser (`dcclib.protocol.PROTOCOL`: lr, momentum,
    weight decay) but deliberately not its schedule or batch: `epoch` passes with one optimiser
    (no lr drop; scored part-way through training, as Paul et al.) in batches of 128."""

    model: str = "convnet"
    num_nets: int = 10  # independently trained networks averaged (the paper: 10)
    epoch: int = 20  # training passes over the full training set before scoring (0 = at init)
    lr: float = PROTOCOL.lr
    momentum: float = PROTOCOL.momentum
    weight_decay: float = PROTOCOL.weight_decay
    batch_size: int = 128  # not the protocol's 256
    score_batch: int = 128  # samples per vmap call (memory: score_batch x parameters)
    seed: int = 0

    def validate(self) -> None:
        if self.num_nets < 1:
            raise UserError(f"score num_nets must be at least 1, got {self.num_nets}")
        if self.epoch < 0:
            raise UserError(f"score epoch must be 0 (at init) or more, got {self.epoch}")
        if self.batch_size < 1 or self.score_batch < 1:
            raise UserError("score batch sizes must be positive")


@dataclass
class Scores:
    """Per-sample scores of the training set, averaged over networks (and per network)."""

    el2n: Tensor  # [N]
    grand: Tensor  # [N]
    el2n_per_net: Tensor  # [num_nets, N]
    grand_per_net: Tensor  # [num_nets, N]
    config: dict = field(default_factory=dict)
    cache_hit: bool = False
    path: Path | None = None

    def get(self, kind: str) -> Tensor:
        if kind not in SCORE_KINDS:
            raise UserError(f"unknown score '{kind}'; choose one of: {', '.join(SCORE_KINDS)}")
        return getattr(self, kind)


# ---------------------------------------------------------------------------------------------
# the math: per-sample EL2N and GraNd of one network
# ---------------------------------------------------------------------------------------------
def el2n_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """||softmax(logits) - onehot(y)||_2 per row."""
    err = logits.softmax(dim=1) - F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return err.norm(dim=1)


def per_sample_scores(
    net: nn.Module, images: Tensor, labels: Tensor, batch: int = 128
) -> tuple[Tensor, Tensor]:
    """(EL2N, GraNd) of every sample for one network, in eval mode, without a Python loop per sample."""
    was_training = net.training
    net.eval()
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def loss_one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = functional_call(net, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0)), logits.squeeze(0)

    per_sample = vmap(grad(loss_one, has_aux=True), in_dims=(None, 0, 0))
    el2n, grand_ = [], []
    for start in range(0, images.shape[0], batch):
        x, y = images[start : start + batch], labels[start : start + batch]
        grads, logits = per_sample(params, x, y)
        sq = sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads.values())
        grand_.append(sq.sqrt())
        el2n.append(el2n_from_logits(logits, y))
    net.train(was_training)
    return torch.cat(el2n).detach(), torch.cat(grand_).detach()


def score_network(data: ImageDataset, cfg: ScoreConfig, index: int) -> nn.Module:
    """Network `index` of the average: seeded init, then cfg.epoch passes over the training set."""
    torch.manual_seed(derive_seed("selection-scores", cfg.seed, cfg.model, index))
    net = create_model(cfg.model, data.channels, data.num_classes, data.image_size).to(data.device)
    if cfg.epoch > 0:
        net.train()
        opt = protocol_optimizer(net.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
        train_network(net, opt, data.train_images, data.train_labels, cfg.epoch, cfg.batch_size)
    return net


def compute_scores(data: ImageDataset, cfg: ScoreConfig, progress: bool = False) -> Scores:
    """EL2N and GraNd of every training sample, averaged over cfg.num_nets trained networks."""
    from tqdm.auto import tqdm

    cfg.validate()
    create_model(cfg.model, data.channels, data.num_classes, data.image_size)  # validate early
    el2n, grand_ = [], []
    for j in tqdm(range(cfg.num_nets), desc="GraNd/EL2N networks", disable=not progress):
        net = score_network(data, cfg, j)
        e, g = per_sample_scores(net, data.train_images, data.train_labels, cfg.score_batch)
        el2n.append(e)
        grand_.append(g)
    e_all, g_all = torch.stack(el2n), torch.stack(grand_)
    return Scores(e_all.mean(0), g_all.mean(0), e_all, g_all, config=asdict(cfg))


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------
def dataset_fingerprint(data: ImageDataset) -> dict:
    """What identifies a training set cheaply: name, shape, all labels and a strided image sample."""
    labels = data.train_labels.detach().to("cpu", torch.int64).numpy()
    step = max(1, labels.shape[0] // 512)
    sample = data.train_images[::step].detach().to("cpu", torch.float32).contiguous().numpy()
    h = hashlib.sha256(labels.tobytes())
    h.update(sample.tobytes())
    return {"name": data.name, "shape": list(data.train_images.shape), "content": h.hexdigest()[:24]}


def cache_key(data: ImageDataset, cfg: ScoreConfig) -> str:
    payload = {"v": _CACHE_VERSION, "data": dataset_fingerprint(data), "config": asdict(cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(data: ImageDataset, cfg: ScoreConfig, cache_dir: str | Path) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in data.name)
    return Path(cache_dir) / f"scores-{safe}-{cache_key(data, cfg)}.safetensors"


def cached_scores(
    data: ImageDataset, cfg: ScoreConfig, cache_dir: str | Path, progress: bool = False
) -> Scores:
    """Scores from the cache when dataset and config match; else compute, save atomically, return."""
    cfg.validate()
    path = cache_path(data, cfg, cache_dir)
    key = path.stem.rsplit("-", 1)[-1]
    if path.is_file():
        try:
            tensors, meta = load_tensors(path)
            n = data.train_labels.shape[0]
            if meta.get("key") == key and tuple(tensors["el2n_per_net"].shape) == (cfg.num_nets, n):
                e, g = tensors["el2n_per_net"].to(data.device), tensors["grand_per_net"].to(data.device)
                return Scores(e.mean(0), g.mean(0), e, g, config=meta["config"], cache_hit=True, path=path)
            warnings.warn(f"score cache {path} does not match; recomputing", stacklevel=2)
        except (UserError, KeyError) as exc:
            warnings.warn(f"unreadable score cache {path} ({exc}); recomputing", stacklevel=2)
    scores = compute_scores(data, cfg, progress=progress)
    meta = {
        "kind": "selection-scores",
        "key": key,
        "config": asdict(cfg),
        "dataset": dataset_fingerprint(data),
        "versions": library_versions(),
        "scores": list(SCORE_KINDS),
    }
    save_tensors(path, {"el2n_per_net": scores.el2n_per_net, "grand_per_net": scores.grand_per_net}, meta)
    scores.path = path
    return scores


# ---------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------
def select_per_class(
    scores: Tensor, labels: Tensor, ipc: int, num_classes: int, keep: str = "lowest"
) -> Tensor:
    """Indices of the ipc lowest (or highest) scores of each class, class-blocked.

    Ties go to the smaller index (stable sort), so a selection is repeatable.
    """
    if keep not in ("lowest", "highest"):
        raise UserError(f"keep must be 'lowest' or 'highest', got '{keep}'")
    if ipc < 1:
        raise UserError(f"ipc must be positive, got {ipc}")
    scores, labels = scores.detach().to("cpu", torch.float64), labels.detach().to("cpu", torch.int64)
    if scores.shape != labels.shape:
        raise UserError(f"{scores.numel()} scores for {labels.numel()} samples")
    if not torch.isfinite(scores).all():
        raise UserError("scores contain NaN or infinity")
    chosen = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < ipc:
            raise UserError(f"ipc {ipc} is larger than class {c} ({idx.numel()} images)")
        key = scores[idx] if keep == "lowest" else -scores[idx]
        order = torch.argsort(key, stable=True)
        chosen.append(idx[order[:ipc]])
    return torch.cat(chosen)


def select_coreset(data: ImageDataset, scores: Tensor, ipc: int, keep: str) -> tuple[Tensor, Tensor, Tensor]:
    """(images, labels, indices) of the coreset that keeps the `keep` scores of each class."""
    idx = select_per_class(scores, data.train_labels, ipc, data.num_classes, keep).to(data.device)
    return data.train_images[idx], data.train_labels[idx], idx


def pool_indices(data: ImageDataset, per_class: int) -> Tensor:
    """Indices of the first `per_class` training images of each class, in dataset order."""
    if per_class < 1:
        raise UserError(f"pool size per class must be positive, got {per_class}")
    return torch.cat([ix[:per_class] for ix in data.class_indices]).sort().values


def class_pool(data: ImageDataset, per_class: int | None) -> ImageDataset:
    """The first `per_class` training images of each class (None: all), test set unchanged.

    For small (smoke) runs: every method then chooses from the same smaller candidate pool. The
    name stays the dataset's (the evaluation protocol depends on it); `source` names the pool.
    """
    if per_class is None:
        return data
    idx = pool_indices(data, per_class)
    return ImageDataset(
        data.name,
        data.train_images[idx],
        data.train_labels[idx],
        data.test_images,
        data.test_labels,
        list(data.class_names),
        data.mean,
        data.std,
        f"{data.source} (first {per_class} training images per class)",
    )


# ---------------------------------------------------------------------------------------------
# C-scores (Jiang et al., 2021)
# ---------------------------------------------------------------------------------------------
def cscore_file_name(dataset_name: str) -> str:
    return f"{dataset_name.lower().replace('-', '')}-cscores-orig-order.npz"


def load_cscores(path: str | Path | None, data: ImageDataset, align: str = "exact") -> Tensor:
    """The published C-scores of `data`'s training set, in `data`'s order.

    The file holds `scores` and `labels` in the original training order. align="exact": the
    dataset is in that order (the CIFAR python batches). align="within-class": the dataset keeps
    the original order only within each class (e.g. an ImageFolder copy such as cifar10-jpeg), so
    the k-th score of class c goes to the k-th image of class c. align="auto": exact when the
    labels agree; within-class when the dataset is sorted by class (an image-folder copy, which
    cannot be in the interleaved original order); otherwise an error.
    """
    hint = f"download {cscore_file_name(data.name)} (Jiang et al. 2021) from {CSCORE_URL} and pass its path"
    if path is None or not Path(path).is_file():
        raise UserError(f"C-score file not found: {path}; {hint}")
    if align not in ("exact", "within-class", "auto"):
        raise UserError(f"align must be 'exact', 'within-class' or 'auto', got '{align}'")
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("scores", "labels") if k in f.files}
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz file ({' '.join(str(exc).split())})") from None
    if set(arrays) != {"scores", "labels"}:
        raise UserError(f"{path} lacks the arrays 'scores' and 'labels' of a C-score file; {hint}")
    scores, file_labels = arrays["scores"], arrays["labels"]
    if (
        scores.ndim != 1
        or file_labels.shape != scores.shape
        or scores.dtype.kind != "f"
        or file_labels.dtype.kind not in "iu"
    ):
        raise UserError(f"{path}: 'scores' and 'labels' must be 1-D float and integer arrays of one length")
    labels = data.train_labels.detach().to("cpu", torch.int64).numpy()
    if scores.shape[0] != labels.shape[0]:
        raise UserError(
            f"{path} has {scores.shape[0]} C-scores but {data.name} has {labels.shape[0]} training images"
        )
    if not np.isfinite(scores).all():
        raise UserError(f"{path}: C-scores contain NaN or infinity")
    file_labels = file_labels.astype(np.int64)
    if align == "auto":
        class_sorted = bool(np.all(np.diff(labels) >= 0))
        align = "within-class" if class_sorted and not np.array_equal(file_labels, labels) else "exact"
    if align == "exact":
        if not np.array_equal(file_labels, labels):
            same_counts = np.array_equal(
                np.bincount(file_labels, minlength=data.num_classes),
                np.bincount(labels, minlength=data.num_classes),
            )
            extra = (
                " (class counts match: align='within-class' fits a copy in per-class order)"
                if same_counts
                else ""
            )
            raise UserError(f"{path}: its labels differ from {data.name}'s training labels{extra}")
        return torch.from_numpy(scores.astype(np.float32)).to(data.device)
    out = np.empty(labels.shape[0], dtype=np.float32)
    for c in range(data.num_classes):
        mine, theirs = np.flatnonzero(labels == c), np.flatnonzero(file_labels == c)
        if mine.shape != theirs.shape:
            raise UserError(
                f"{path}: class {c} has {theirs.size} C-scores but {data.name} has "
                f"{mine.size} training images of that class"
            )
        out[mine] = scores[theirs]
    return torch.from_numpy(out).to(data.device)
