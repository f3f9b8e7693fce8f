"""Where and how a run computes: seeds, devices, precision contexts, activation-memory estimates.

Every random stream of a run is derived from one base seed (`derive_seed`); reduced precision
is opt-in (`precision_context`); `activation_bytes_per_image` sizes real-batch chunks and
groups of stacked networks deterministically (the same on every machine).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from dcclib.errors import UserError
from dcclib.models import create_model

PRECISIONS = ("fp32", "tf32", "bf16")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a base seed and a path of names/indices (stable across processes)."""
    text = ":".join(str(p) for p in ("dcc-companion", *parts))
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' picks CUDA when present; an unavailable device is a UserError."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for but no CUDA GPU is available; use --device cpu")
    return device


# ---------------------------------------------------------------------------------------------
# Precision: opt-in reduced precision (TF32 matmuls/convs, bf16 autocast); fp32 is the default.
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Set the run's float precision for the block; the global flags are restored on exit.

    fp32: strict float32: TF32 off for CUDA matmuls AND cuDNN convolutions (PyTorch allows
    TF32 in cuDNN convolutions by default on Ampere and later, so doing nothing would run the
    convolutions in TF32). tf32: both allowed (opt-in). bf16: autocast to bfloat16 on the
    device (for evaluation training; not for matching), TF32 flags left as they are.
    Wrap one forward pass (or one step) at a time: autocast caches its casts of the weights
    until the region ends. On CPU the TF32 flags have no effect.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}")
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    allow = precision == "tf32"
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# ---------------------------------------------------------------------------------------------
# Memory: activation estimates on the meta device
# ---------------------------------------------------------------------------------------------
def activation_bytes_per_image(
    model: str, channels: int, num_classes: int, image_size: tuple[int, int]
) -> int:
    """Rough float32 bytes one image keeps for backward: twice the sum of all leaf-module
    outputs, counted on the meta device (no memory, no compute). Used to size chunks/groups."""
    total = 0

    def count(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, Tensor):
            total += out.numel()

    with torch.device("meta"):
        net = create_model(model, channels, num_classes, image_size)
        hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
        net(torch.empty(1, channels, *image_size))
    for h in hooks:
        h.remove()
    return 2 * 4 * total
