"""The task sequences of Figures 7 and 8, loaded as lists of ImageDatasets (one per task).

Figure 7: ImageNet32 Lizard -> Truck -> Insect (the `data_prep` groups); Figure 8: CIFAR-10 ->
SVHN -> GTSRB (GTSRB read here from its official folder layout). Offline, the embedded MNIST
digits split into three tasks stand in for both (`STAND_IN`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dcclib import io
from dcclib.data import ImageDataset, default_data_root, load_dataset
from dcclib.errors import UserError
from dcclib.runtime import derive_seed

SEQUENCES: dict[str, tuple[str, ...]] = {
    "lizard-truck-insect": ("imagenet32-lizard", "imagenet32-truck", "imagenet32-insect"),
    "cifar10-svhn-gtsrb": ("cifar10", "svhn", "gtsrb"),
    "embedded-mnist-split": ("embedded-mnist:0-3", "embedded-mnist:4-6", "embedded-mnist:7-9"),
}
STAND_IN = "embedded-mnist-split"  # offline stand-in sequence (digits split into three tasks)


def class_subset(data: ImageDataset, classes: list[int], name: str | None = None) -> ImageDataset:
    """The given classes of a dataset, relabelled 0..len(classes)-1 in the order given."""
    valid = all(0 <= c < data.num_classes for c in classes)
    if not classes or len(set(classes)) != len(classes) or not valid:
        raise UserError(f"bad class subset {classes} for {data.name} ({data.num_classes} classes)")
    lut = torch.full((data.num_classes,), -1, dtype=torch.long, device=data.device)
    lut[torch.tensor(classes, device=data.device)] = torch.arange(len(classes), device=data.device)

    def pick(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        keep = lut[y] >= 0
        return x[keep], lut[y[keep]]

    tr, te = pick(data.train_images, data.train_labels), pick(data.test_images, data.test_labels)
    label = name or f"{data.name}:{','.join(map(str, classes))}"
    return ImageDataset(
        label,
        *tr,
        *te,
        [data.class_names[c] for c in classes],
        data.mean,
        data.std,
        f"{data.source} (classes {classes})",
    )


def limit_per_class(data: ImageDataset, per_class: int, seed: int = 0) -> ImageDataset:
    """At most `per_class` training images of each class (seeded); the test set is kept."""
    g = torch.Generator(device=data.device).manual_seed(derive_seed("limit", data.name, per_class, seed))
    x, y = data.sample_real(per_class, generator=g)
    return ImageDataset(
        data.name,
        x,
        y,
        data.test_images,
        data.test_labels,
        list(data.class_names),
        data.mean,
        data.std,
        f"{data.source} ({per_class} train images per class)",
    )


def load_gtsrb(root: str | Path, device: str | torch.device = "cpu", download: bool = False) -> ImageDataset:
    """GTSRB (43 traffic signs) through torchvision's reader, resized to 32x32 RGB.

    The decoded arrays are cached next to the data (`gtsrb/gtsrb32.npz`, no pickle).
    """
    root = Path(root).expanduser()
    cache = root / "gtsrb" / "gtsrb32.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        arrays = _decode_gtsrb(root, download)
        with io.atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    xtr, ytr, xte, yte = arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"]
    pixels = xtr.reshape(-1, 3).astype(np.float64) / 255  # [N*32*32, 3]: per-channel statistics
    mean, std = tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist())
    dev = torch.device(device)

    m, sd = (torch.tensor(v, device=dev).view(1, 3, 1, 1) for v in (mean, std))

    def tensor(u8: np.ndarray) -> Tensor:
        return (torch.from_numpy(u8).to(dev).permute(0, 3, 1, 2).float().div_(255) - m) / sd

    num = int(max(ytr.max(), yte.max())) + 1
    return ImageDataset(
        "gtsrb",
        tensor(xtr),
        torch.from_numpy(ytr).long().to(dev),
        tensor(xte),
        torch.from_numpy(yte).long().to(dev),
        [f"sign{c:02d}" for c in range(num)],
        mean,
        std,
        str((root / "gtsrb").resolve()),
    )


def _decode_gtsrb(root: Path, download: bool) -> dict[str, np.ndarray]:
    from PIL import Image
    from torchvision.datasets import GTSRB

    out = {}
    for split in ("train", "test"):
        try:
            ds = GTSRB(
                str(root),
                split=split,
                download=download,
                transform=lambda im: np.asarray(im.resize((32, 32), Image.BILINEAR), dtype=np.uint8),
            )
        except Exception as exc:  # torchvision: RuntimeError when absent; network errors when offline
            why = " ".join(str(exc).split())[:80]
            raise UserError(
                f"GTSRB ({split}) not found under {root / 'gtsrb'}: put torchvision's GTSRB "
                f"files there or run once with network access ({why})"
            ) from None
        pairs = [ds[i] for i in range(len(ds))]
        if not pairs:
            raise UserError(f"GTSRB ({split}) under {root / 'gtsrb'} holds no images")
        out[f"{split}_x"] = np.stack([p[0] for p in pairs])
        out[f"{split}_y"] = np.asarray([p[1] for p in pairs], dtype=np.int64)
    return out


def load_task(
    spec: str, data_root: str | Path | None = None, device: str | torch.device = "cpu", download: bool = False
) -> ImageDataset:
    """One task: a dataset name, 'gtsrb', or 'embedded-mnist:A-B' (digits A..B of the stand-in)."""
    if spec.startswith("embedded-mnist:"):
        lo, _, hi = spec.split(":", 1)[1].partition("-")
        digits = list(range(int(lo), int(hi or lo) + 1))
        name = f"embedded-mnist-digits{lo}-{hi or lo}"
        return class_subset(load_dataset(None, device=device), digits, name)
    if spec == "gtsrb":
        root = Path(data_root) if data_root is not None else default_data_root()
        return load_gtsrb(root, device, download)
    return load_dataset(spec, data_root, device, download=download)


def load_sequence(
    name: str, data_root: str | Path | None = None, device: str | torch.device = "cpu", download: bool = False
) -> list[ImageDataset]:
    """The tasks of a named sequence (see SEQUENCES), all of the same image shape."""
    if name not in SEQUENCES:
        raise UserError(f"unknown task sequence '{name}'; choose one of: {', '.join(SEQUENCES)}")
    tasks = [load_task(s, data_root, device, download) for s in SEQUENCES[name]]
    shapes = {(t.channels, *t.image_size) for t in tasks}
    if len(shapes) != 1:
        raise UserError(f"the tasks of {name} have different image shapes {sorted(shapes)}")
    return tasks


def sequence_in_use(sequence: str, stand_in: str | None, profile: str) -> str:
    """'auto': the offline stand-in at profile smoke, the paper's sequence otherwise."""
    if stand_in == "auto":
        return STAND_IN if profile == "smoke" else sequence
    return stand_in or sequence
