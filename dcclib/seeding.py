"""Seeds and devices: every random stream of a run is derived from one base seed."""

from __future__ import annotations

import hashlib

import torch

from dcclib.errors import UserError


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
