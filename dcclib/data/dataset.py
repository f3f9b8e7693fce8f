"""The dataset type every loader returns, the helpers that build one, and its identity.

``ImageDataset`` holds normalised image tensors on the compute device with a per-class index
for sampling; ``_make`` builds one from uint8 arrays. ``dataset_identity`` is the dataset part
of a results-store key; ``subset_classes`` keeps (and optionally mirrors) some classes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcclib.errors import UserError

# Normalisation statistics of the DC/DSA/DCC code. The DCC code normalised CIFAR-100 with the
# CIFAR-10 statistics (a leftover of an older DC version); we use CIFAR-100's own, as the spec says.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2861,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(eq=False, repr=False)
class ImageDataset:
    """Normalised image tensors on the compute device, with a per-class index."""

    name: str
    train_images: Tensor  # [N, C, H, W] float32, normalised with mean/std
    train_labels: Tensor  # [N] int64
    test_images: Tensor
    test_labels: Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    class_counts: Tensor = field(init=False)  # [num_classes] int64, on device
    class_indices: list[Tensor] = field(init=False)  # train indices per class, on device
    class_index_matrix: Tensor = field(init=False)  # [num_classes, max_count], -1 padded
    _counts: list[int] = field(init=False)  # class_counts on the host: sampling never syncs

    def __post_init__(self) -> None:
        c = len(self.class_names)
        x, y = self.train_images, self.train_labels
        if x.ndim != 4 or x.shape[0] != y.shape[0] or len(self.mean) != x.shape[1]:
            raise UserError(f"dataset {self.name}: inconsistent image/label/statistics shapes")
        labels = y.detach().to("cpu", torch.int64)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
            raise UserError(f"dataset {self.name}: training labels outside 0..{c - 1}")
        counts = torch.bincount(labels, minlength=c)
        self._counts = counts.tolist()
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        cols = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[sorted_labels]
        matrix = torch.full((c, max(self._counts, default=0)), -1, dtype=torch.int64)
        matrix[sorted_labels, cols] = order
        dev = x.device
        self.class_counts = counts.to(dev)
        self.class_index_matrix = matrix.to(dev)
        self.class_indices = [self.class_index_matrix[k, :n] for k, n in enumerate(self._counts)]

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_labels)}, "
            f"test={len(self.test_labels)}, classes={self.num_classes}, "
            f"shape={tuple(self.train_images.shape[1:])}, device={self.device})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def to(self, device: str | torch.device) -> ImageDataset:
        """A copy with every tensor on ``device``."""
        d = torch.device(device)
        return ImageDataset(
            self.name,
            self.train_images.to(d),
            self.train_labels.to(d),
            self.test_images.to(d),
            self.test_labels.to(d),
            list(self.class_names),
            self.mean,
            self.std,
            self.source,
        )

    def sample_real(self, per_class: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """min(per_class, count_c) train images of every class, without replacement, class-blocked.

        Vectorised: random keys over the padded index matrix, the smallest k per row are taken
        (padding gets key 2 so real slots come first); the output size is known on the host.
        """
        if per_class < 1:
            raise UserError(f"images per class must be at least 1, got {per_class}")
        dev = self.device
        c, width = self.class_index_matrix.shape
        gdev = generator.device if generator is not None else dev
        keys = torch.rand((c, width), generator=generator, device=gdev).to(dev)
        keys = keys.masked_fill(self.class_index_matrix < 0, 2.0)
        slots = keys.topk(min(per_class, width), dim=1, largest=False, sorted=True).indices
        chosen = self.class_index_matrix.gather(1, slots)
        take = self.class_counts.clamp(max=per_class)
        total = sum(min(per_class, n) for n in self._counts)
        rows = torch.repeat_interleave(torch.arange(c, device=dev), take, output_size=total)
        cols = torch.arange(total, device=dev) - (torch.cumsum(take, 0) - take)[rows]
        return self.train_images[chosen[rows, cols]], rows

    def denormalise(self, x: Tensor) -> Tensor:
        """Back to [0, 1] pixels (clamped), for plotting."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x * std + mean).clamp(0, 1)


# The one signature of every dataset loader: (root, device, download) -> dataset. ``root`` is the
# data root the source's files are looked up under; ``download`` allows fetching missing files.
Loader = Callable[[Path, torch.device, bool], ImageDataset]


# ---------------------------------------------------------------- helpers shared by the loaders


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (UserError messages must be one line)."""
    return " ".join(str(exc).split())


def _to_tensor(
    u8: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, channels_last: bool
) -> Tensor:
    """uint8 images -> normalised float32 [N,C,H,W]; converted on the device to save host RAM."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).to(device)
    if channels_last:
        x = x.permute(0, 3, 1, 2).contiguous()
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return x.to(torch.float32).div_(255).sub_(m).div_(s)


def _make(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    source: str,
    device: torch.device,
    channels_last: bool = False,
) -> ImageDataset:
    """An ImageDataset from uint8 (images, labels) pairs, NCHW (or NHWC with channels_last).

    Every loader ends here, so what no dataset may be is refused here (a UserError): a split
    without images, images of zero size, a label count that differs from the image count, or
    labels outside 0..len(class_names)-1.
    """
    for split, (x, y) in (("train", train), ("test", test)):
        if x.ndim != 4 or x.shape[0] == 0 or min(x.shape) == 0:
            raise UserError(f"dataset {name} has no {split} images (image array of shape {list(x.shape)})")
        if np.shape(y) != (x.shape[0],):
            raise UserError(f"dataset {name}: {x.shape[0]} {split} images but {np.size(y)} labels")
        if np.min(y) < 0 or np.max(y) >= len(class_names):
            raise UserError(f"dataset {name}: {split} labels outside 0..{len(class_names) - 1}")

    def labels(y: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64).copy()).to(device)

    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return ImageDataset(
        name,
        _to_tensor(train[0], mean, std, device, channels_last),
        labels(train[1]),
        _to_tensor(test[0], mean, std, device, channels_last),
        labels(test[1]),
        list(class_names),
        mean,
        std,
        source,
    )


def _fetch(download: bool, fetch: Callable[[], object]) -> None:
    """Run a torchvision download; offline or blocked, the caller reports what is missing."""
    if download:
        try:
            fetch()
        except Exception:  # any network/IO failure: fall through to the caller's message
            pass


def _first_with(dirs: list[Path], files: list[str]) -> Path | None:
    """The first of ``dirs`` that holds every one of ``files``."""
    return next((d for d in dirs if all((d / f).is_file() for f in files)), None)


# ---------------------------------------------------------------------------------------------
# Identity (the dataset part of a results-store key) and class subsets
# ---------------------------------------------------------------------------------------------
def source_id(source: str) -> str:
    """A dataset's source without machine-specific paths: the folder name (MNIST/raw kept whole)."""
    if "/" not in source and "\\" not in source:
        return source
    p = Path(source)
    return f"{p.parent.name}/{p.name}" if p.name == "raw" else p.name


def dataset_identity(data: ImageDataset) -> dict[str, Any]:
    """The dataset part of an experiment's key: name, source, sizes and a content fingerprint
    (256 evenly spaced training images as 8-bit pixels, so CPU and GPU loads agree)."""
    n = data.train_images.shape[0]
    idx = torch.linspace(0, n - 1, min(256, n)).long()
    pixels = data.denormalise(data.train_images[idx.to(data.device)].float()).cpu()
    u8 = (pixels * 255).round().to(torch.uint8).numpy().tobytes()
    labels = data.train_labels[idx.to(data.device)].cpu().numpy().astype(np.int64).tobytes()
    return {
        "name": data.name,
        "source": source_id(data.source),
        "train": list(data.train_images.shape),
        "test": int(data.test_images.shape[0]),
        "fingerprint": hashlib.sha256(u8 + labels).hexdigest()[:16],
    }


def subset_classes(data: ImageDataset, classes: list[int], flip: Sequence[int] = ()) -> ImageDataset:
    """A new dataset with only `classes` (relabelled 0..k-1 in that order); the images of the
    classes in `flip` mirrored left-right, train and test (Figure 3's flipped setting)."""
    bad = [c for c in (*classes, *flip) if not 0 <= c < data.num_classes]
    if bad or len(set(classes)) != len(classes) or not set(flip) <= set(classes):
        raise UserError(
            f"classes {classes} (flip {list(flip)}) do not fit {data.name}'s {data.num_classes} classes"
        )

    def pick(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        keep = torch.isin(y, torch.tensor(classes, device=y.device))
        x, y = x[keep].clone(), y[keep]
        for c in flip:
            x[y == c] = x[y == c].flip(-1)
        new = torch.empty_like(y)
        for i, c in enumerate(classes):
            new[y == c] = i
        return x, new

    tag = "v".join(str(c) for c in classes) + "".join(f"-flip{c}" for c in flip)
    return ImageDataset(
        f"{data.name}-{tag}",
        *pick(data.train_images, data.train_labels),
        *pick(data.test_images, data.test_labels),
        [data.class_names[c] for c in classes],
        data.mean,
        data.std,
        f"{data.source} [classes {tag}]",
    )
