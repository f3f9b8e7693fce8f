"""DSA (differentiable Siamese augmentation) and DC's evaluation augmentation, vectorised.

The original code loops over images in Python and re-seeds a global RNG to make two calls
share a draw. Here a draw is data (`DSADraw`, one entry per sample), so one call can give
every class its own transformation, real and synthetic images of a class share theirs, and
tests can fix the draw. Each sample may use a different family: every family present in the
strategy is computed on the whole batch and kept per sample with `torch.where` (no host
synchronisation, no per-sample loops). Non-selected samples pass through bit-for-bit.

Length (about 430 lines): the six DSA families, their sampling and their vectorised
application share the `DSADraw` layout and are read together; DC's evaluation augmentation
(`dc_augment`) reuses those same transforms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from dcclib.errors import UserError

DSA_FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DSA_FULL = "color_crop_cutout_flip_scale_rotate"
DSA_NO_FLIP = "color_crop_cutout_scale_rotate"
DC_CHOICES = ("crop", "scale", "rotate", "noise")


@dataclass(frozen=True)
class DSAParams:
    """The ranges of the original `ParamDiffAug` (see reference-details.md, DSA augmentation)."""

    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop_ratio: float = 0.125
    cutout_ratio: float = 0.5
    scale: float = 1.2
    rotate_degrees: float = 15.0
    flip_prob: float = 0.5


@dataclass
class DSADraw:
    """One DSA draw per sample: the family index and every family's parameters.

    All fields have leading dimension N. Values are the applied quantities, not raw uniforms.
    """

    family: Tensor  # [N] long: index into the strategy's families
    brightness: Tensor  # [N] additive shift, (U - 0.5) * brightness
    saturation: Tensor  # [N] factor, U * saturation
    contrast: Tensor  # [N] factor, U + contrast
    crop: Tensor  # [N, 2] long: (row, col) shift; out[h, w] = x[h + row, w + col]
    cutout: Tensor  # [N, 2] long: (row, col) centre offset, in [0, H + 1 - side % 2)
    flip: Tensor  # [N] bool: mirror the last dimension
    scale: Tensor  # [N, 2]: (sx, sy) in [1/scale, scale]
    rotate: Tensor  # [N]: angle in degrees, in [-rotate_degrees, rotate_degrees]

    def __len__(self) -> int:
        return self.family.shape[0]

    def index(self, ids: Tensor) -> DSADraw:
        """Gather entries, e.g. expand per-class draws to per-sample draws with the labels."""
        return DSADraw(**{f.name: getattr(self, f.name)[ids] for f in fields(self)})

    def to(self, device: torch.device | str) -> DSADraw:
        """The same draw with every tensor on `device`."""
        return DSADraw(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def parse_strategy(strategy: str, known: Sequence[str] = DSA_FAMILIES) -> tuple[str, ...]:
    """Split 'a_b_c' into families; '' / 'none' means no augmentation; unknown -> UserError."""
    if strategy.strip().lower() in ("", "none"):
        return ()
    families = tuple(strategy.split("_"))
    bad = [f for f in families if f not in known]
    if bad:
        raise UserError(
            f"unknown augmentation '{bad[0]}' in strategy '{strategy}'; "
            f"use families from {', '.join(known)} joined by '_'"
        )
    return families


def default_dsa_strategy(dataset_name: str) -> str:
    """DSA's families for `dataset_name`: the DCC code's `color_crop_cutout_flip_scale_rotate`.

    The code behind the paper's DSA and DSAC numbers uses it on every dataset, digits included;
    the no-flip variant for digits and SVHN (`DSA_NO_FLIP`) stays reachable with --dsa-strategy.
    """
    del dataset_name  # one strategy for every dataset, as the DCC code runs it
    return DSA_FULL


# ---------------------------------------------------------------------------- random helpers


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _draw(
    fn: Callable[..., Tensor], *args: object, device: torch.device, gen: torch.Generator | None
) -> Tensor:
    """fn(*args) on `device`; a generator on another device draws there, then it is copied.

    Pass a generator on the data's device to avoid the copy (and its synchronisation).
    """
    if gen is None or _same_device(gen.device, device):
        return fn(*args, generator=gen, device=device)
    return fn(*args, generator=gen, device=gen.device).to(device)


def _rand(shape: tuple[int, ...], device: torch.device, gen: torch.Generator | None) -> Tensor:
    return _draw(torch.rand, shape, device=device, gen=gen)


def _randint(
    low: int, high: int, shape: tuple[int, ...], device: torch.device, gen: torch.Generator | None
) -> Tensor:
    """Integers in [low, high)."""
    return _draw(torch.randint, low, high, shape, device=device, gen=gen)


def _select(index: Tensor, names: Sequence[str], name: str) -> Tensor:
    """[N] bool: which entries of `index` (into `names`) pick `name` (no host sync)."""
    mask = torch.zeros_like(index, dtype=torch.bool)
    for i, f in enumerate(names):
        if f == name:
            mask = mask | (index == i)
    return mask


def _window(padded: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """out[n, :, i, j] = padded[n, :, rows[n, i], cols[n, j]] via two gathers."""
    n, c, _, wp = padded.shape
    h, w = rows.shape[1], cols.shape[1]
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, wp))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _sizes(h: int, w: int, params: DSAParams) -> tuple[int, int, int, int]:
    """Crop shift and cutout side per axis, rounded as the original: int(size * ratio + 0.5)."""
    return (
        int(h * params.crop_ratio + 0.5),
        int(w * params.crop_ratio + 0.5),
        int(h * params.cutout_ratio + 0.5),
        int(w * params.cutout_ratio + 0.5),
    )


# ---------------------------------------------------------------------------- DSA sampling


def sample_dsa(
    n: int,
    strategy: str,
    params: DSAParams = DSAParams(),  # noqa: B008 (frozen, immutable)
    *,
    image_size: tuple[int, int],
    device: torch.device | str,
    generator: torch.Generator | None = None,
    shared_family: bool = False,
) -> DSADraw:
    """Draw n entries; each has a uniform family (one for all if shared_family) and all params.

    The draw order is fixed, so a seeded generator reproduces the draw exactly.
    """
    k = max(len(parse_strategy(strategy)), 1)
    dev = torch.device(device)
    h, w = image_size
    shift_h, shift_w, side_h, side_w = _sizes(h, w, params)
    if shared_family:
        family = _randint(0, k, (1,), dev, generator).expand(n).clone()
    else:
        family = _randint(0, k, (n,), dev, generator)
    brightness = (_rand((n,), dev, generator) - 0.5) * params.brightness
    saturation = _rand((n,), dev, generator) * params.saturation
    contrast = _rand((n,), dev, generator) + params.contrast
    crop = torch.stack(
        [
            _randint(-shift_h, shift_h + 1, (n,), dev, generator),
            _randint(-shift_w, shift_w + 1, (n,), dev, generator),
        ],
        dim=1,
    )
    cutout = torch.stack(
        [
            _randint(0, h + (1 - side_h % 2), (n,), dev, generator),
            _randint(0, w + (1 - side_w % 2), (n,), dev, generator),
        ],
        dim=1,
    )
    flip = _rand((n,), dev, generator) < params.flip_prob
    lo = 1.0 / params.scale
    scale = _rand((n, 2), dev, generator) * (params.scale - lo) + lo
    rotate = (_rand((n,), dev, generator) - 0.5) * 2 * params.rotate_degrees
    return DSADraw(family, brightness, saturation, contrast, crop, cutout, flip, scale, rotate)


# ---------------------------------------------------------------------------- DSA families
# Each takes `sel`: a [N] bool mask of the samples to transform, or None for all of them.


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def _color(x: Tensor, d: DSADraw, sel: Tensor | None) -> Tensor:
    y = x + _bcast(d.brightness, x)
    m = y.mean(dim=1, keepdim=True)
    y = (y - m) * _bcast(d.saturation, x) + m
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - m) * _bcast(d.contrast, x) + m
    return y if sel is None else torch.where(sel.view(-1, 1, 1, 1), y, x)


def translate(x: Tensor, shift: Tensor) -> Tensor:
    """Exact integer translation with zero fill: out[n, :, h, w] = x[n, :, h + dy, w + dx].

    Pad by one zero pixel and clamp indices into it (the original's trick), then gather.
    """
    _, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] + shift[:, 0:1] + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, :] + shift[:, 1:2] + 1).clamp(0, w + 1)
    return _window(F.pad(x, (1, 1, 1, 1)), rows, cols)


def _crop(x: Tensor, d: DSADraw, sel: Tensor | None) -> Tensor:
    shift = d.crop if sel is None else torch.where(sel[:, None], d.crop, 0)
    return translate(x, shift)  # shift 0 is an exact identity


def _cutout(x: Tensor, d: DSADraw, sel: Tensor | None, params: DSAParams) -> Tensor:
    """Zero the square; rows clamp(arange(side) + off - side//2, 0, H-1) as the original.

    The clamped index set is the interval [clamp(lo), clamp(hi)], so a comparison suffices.
    """
    _, _, h, w = x.shape
    _, _, side_h, side_w = _sizes(h, w, params)

    def band(off: Tensor, size: int, side: int) -> Tensor:
        lo = (off - side // 2).clamp(0, size - 1)
        hi = (off - side // 2 + side - 1).clamp(0, size - 1)
        ar = torch.arange(size, device=x.device)[None, :]
        return (ar >= lo[:, None]) & (ar <= hi[:, None])

    mask = band(d.cutout[:, 0], h, side_h)[:, :, None] & band(d.cutout[:, 1], w, side_w)[:, None]
    if sel is not None:
        mask = mask & sel[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


def _flip(x: Tensor, d: DSADraw, sel: Tensor | None) -> Tensor:
    do = d.flip if sel is None else d.flip & sel
    return torch.where(do.view(-1, 1, 1, 1), x.flip(3), x)


def _affine(x: Tensor, d: DSADraw, is_scale: Tensor, is_rot: Tensor, restore: bool) -> Tensor:
    """Scale and rotate merged into one grid_sample (align_corners=True as old PyTorch).

    theta: scale [[sx, 0, 0], [0, sy, 0]]; rotate [[cos, sin, 0], [-sin, cos, 0]]. Samples of
    neither family get the identity theta and (if `restore`) are kept exactly by `torch.where`.
    """
    one, zero = x.new_ones(x.shape[0]), x.new_zeros(x.shape[0])
    a = torch.deg2rad(d.rotate.to(x.dtype))
    cos, sin = torch.cos(a), torch.where(is_rot, torch.sin(a), zero)
    sx, sy = d.scale[:, 0].to(x.dtype), d.scale[:, 1].to(x.dtype)
    d0 = torch.where(is_scale, sx, torch.where(is_rot, cos, one))
    d1 = torch.where(is_scale, sy, torch.where(is_rot, cos, one))
    theta = torch.stack([torch.stack([d0, sin, zero], 1), torch.stack([-sin, d1, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return torch.where((is_scale | is_rot).view(-1, 1, 1, 1), y, x) if restore else y


def apply_dsa(
    x: Tensor,
    draw: DSADraw,
    strategy: str,
    params: DSAParams = DSAParams(),  # noqa: B008
) -> Tensor:
    """Apply draw entry i to image i ([N, C, H, W], normalised); differentiable w.r.t. x."""
    families = parse_strategy(strategy)
    if not families:
        return x
    if len(draw) != x.shape[0]:
        raise UserError(f"DSA draw has {len(draw)} entries for a batch of {x.shape[0]} images")
    return _apply(x, draw, families, params, only=None)


def _apply(x: Tensor, d: DSADraw, families: tuple[str, ...], params: DSAParams, only: str | None) -> Tensor:
    """`only` names the single family of the whole batch (known on the host): no masks needed."""

    def sel(name: str) -> Tensor | None:
        return None if only is not None else _select(d.family, families, name)

    present = {only} if only is not None else set(families)
    if "color" in present:
        x = _color(x, d, sel("color"))
    if "crop" in present:
        x = _crop(x, d, sel("crop"))
    if "cutout" in present:
        x = _cutout(x, d, sel("cutout"), params)
    if "flip" in present:
        x = _flip(x, d, sel("flip"))
    if "scale" in present or "rotate" in present:
        if only is None:
            masks = _select(d.family, families, "scale"), _select(d.family, families, "rotate")
        else:
            yes, no = torch.ones_like(d.family, dtype=torch.bool), torch.zeros_like(d.family).bool()
            masks = (yes, no) if only == "scale" else (no, yes)
        x = _affine(x, d, *masks, restore=only is None)
    return x


def dsa_augment(
    x: Tensor,
    strategy: str,
    params: DSAParams = DSAParams(),  # noqa: B008
    generator: torch.Generator | None = None,
) -> Tensor:
    """Non-Siamese DSA (training evaluation networks): one family per call, params per sample.

    With a CPU generator (or None) the family is drawn on the host, so only that family is
    computed; with a generator on the GPU it stays a tensor and every family is computed.
    """
    families = parse_strategy(strategy)
    if not families:
        return x
    n, _, h, w = x.shape
    host_family = generator is None or generator.device.type == "cpu"
    draw = sample_dsa(
        n, strategy, params, image_size=(h, w), device=x.device,
        generator=generator, shared_family=not host_family,
    )  # fmt: skip
    if not host_family:
        return _apply(x, draw, families, params, only=None)
    k = int(torch.randint(len(families), (1,), generator=generator))  # CPU draw: no device sync
    return _apply(x, draw, families, params, only=families[k])


def dsa_siamese(
    xs: list[Tensor],
    groups: list[Tensor],
    num_groups: int,
    strategy: str,
    params: DSAParams = DSAParams(),  # noqa: B008
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Siamese DSA across groups in one vectorised call.

    Draws `sample_dsa(num_groups, ...)` (each group its own family and params); sample i of
    xs[k] uses entry groups[k][i]. With groups = class labels and xs = [real, synthetic], a
    class's real and synthetic images share one transformation, other classes get others.
    """
    if not parse_strategy(strategy):
        return list(xs)
    if len(xs) != len(groups) or not xs:
        raise UserError("dsa_siamese needs one group tensor per image batch")
    x = torch.cat(xs) if len(xs) > 1 else xs[0]
    g = torch.cat(groups) if len(groups) > 1 else groups[0]
    h, w = x.shape[-2:]
    draw = sample_dsa(num_groups, strategy, params, image_size=(h, w), device=x.device, generator=generator)
    out = apply_dsa(x, draw.index(g.to(x.device)), strategy, params)
    return list(out.split([xi.shape[0] for xi in xs]))


# ---------------------------------------------------------------------------- DC evaluation aug


def dc_augment(
    x: Tensor,
    strategy: str,
    mean: Sequence[float] | Tensor | None,
    generator: torch.Generator | None = None,
    *,
    crop: int = 4,
    scale: float = 0.2,
    rotate: int = 45,
    noise: float = 0.001,
) -> Tensor:
    """DC's per-image evaluation augmentation ('crop_scale_rotate' MNIST, 'crop_noise' BN).

    Each image gets one choice uniformly. crop: pad `crop` px with the channel values `mean`,
    take a window at offsets in [0, 2*crop) (0..7, as np.random.permutation(8)[0]). scale:
    s_h, s_w ~ U[-0.2, 0.2], implemented per sample as affine_grid with factors 1/(1+s),
    align_corners=True, bilinear, zero padding (the original resized with nearest
    interpolation to int((1+s)*H) and centre-cropped/padded). rotate: integer angle in
    [-45, 45), corners filled with the mean of `mean` (the original used scipy's cubic
    spline; here bilinear about the centre). noise: + N(0, 0.001^2). `mean=None` uses the
    batch's per-channel means, as the original did. Not meant for gradients.
    """
    choices = parse_strategy(strategy, DC_CHOICES)
    if not choices:
        return x
    n, c, h, w = x.shape
    dev = x.device
    if mean is None:
        fill = x.mean(dim=(0, 2, 3))
    else:
        fill = torch.as_tensor(mean, dtype=x.dtype, device=dev).reshape(-1).expand(c)
    fill = fill.to(x.dtype)
    choice = _randint(0, len(choices), (n,), dev, generator)

    sel = lambda name: _select(choice, choices, name).view(-1, 1, 1, 1)

    out = x
    if "crop" in choices:
        padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * crop, w + 2 * crop).clone()
        padded[:, :, crop : crop + h, crop : crop + w] = x
        off = _randint(0, 2 * crop, (n, 2), dev, generator)
        rows = torch.arange(h, device=dev)[None, :] + off[:, 0:1]
        win = _window(padded, rows, torch.arange(w, device=dev)[None, :] + off[:, 1:2])
        out = torch.where(sel("crop"), win, out)
    if "scale" in choices or "rotate" in choices:
        s = _rand((n, 2), dev, generator).to(x.dtype) * (2 * scale) - scale  # (s_h, s_w)
        ang = _randint(-rotate, rotate, (n,), dev, generator).to(x.dtype) * (math.pi / 180)
        is_rot = sel("rotate").view(-1)
        zero = x.new_zeros(n)
        a = torch.where(is_rot, torch.cos(ang), 1.0 / (1.0 + s[:, 1]))
        b = torch.where(is_rot, -torch.sin(ang), zero)
        cc = torch.where(is_rot, torch.sin(ang), zero)
        e = torch.where(is_rot, torch.cos(ang), 1.0 / (1.0 + s[:, 0]))
        theta = torch.stack([torch.stack([a, b, zero], 1), torch.stack([cc, e, zero], 1)], 1)
        # Constant fill under bilinear sampling: sample (x - v) with zero padding, add v back.
        v = torch.where(is_rot, fill.mean(), zero).view(-1, 1, 1, 1)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=True)
        warped = F.grid_sample(x - v, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        out = torch.where(sel("scale") | sel("rotate"), warped + v, out)
    if "noise" in choices:
        eps = _draw(torch.randn, tuple(x.shape), device=dev, gen=generator).to(x.dtype)
        out = torch.where(sel("noise"), x + noise * eps, out)
    return out
