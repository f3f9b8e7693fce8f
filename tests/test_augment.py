"""DSA and DC augmentation: parameter ranges, exactness against literal references, Siamese
sharing, determinism and gradients."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from dcclib.augment import (
    DSA_FAMILIES,
    DSA_FULL,
    DSA_NO_FLIP,
    DSADraw,
    DSAParams,
    apply_dsa,
    dc_augment,
    default_dsa_strategy,
    dsa_augment,
    dsa_siamese,
    parse_strategy,
    sample_dsa,
)
from dcclib.errors import UserError

H = W = 32


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(n: int, seed: int = 0, strategy: str = DSA_FULL, **kw: object) -> DSADraw:
    return sample_dsa(n, strategy, image_size=(H, W), device="cpu", generator=gen(seed), **kw)


def with_family(d: DSADraw, name: str, strategy: str = DSA_FULL, **fields: object) -> DSADraw:
    idx = parse_strategy(strategy).index(name)
    return dataclasses.replace(d, family=torch.full_like(d.family, idx), **fields)


@pytest.fixture(scope="module")
def big() -> DSADraw:
    return draw(20000, seed=1)


# ---------------------------------------------------------------- strategies and ranges


def test_strategy_parsing_and_defaults() -> None:
    assert parse_strategy(DSA_FULL) == DSA_FAMILIES
    assert parse_strategy("none") == ()
    with pytest.raises(UserError):
        parse_strategy("color_blur")
    # the DCC code's strategy on every dataset, digits included (flip too)
    for name in (
        "mnist",
        "MNIST",
        "embedded-mnist",
        "svhn",
        "fashionmnist",
        "cifar10",
        "cifar100",
        "imagenet32-fish",
    ):
        assert default_dsa_strategy(name) == DSA_FULL
        assert "flip" in parse_strategy(default_dsa_strategy(name))
    assert "flip" not in parse_strategy(DSA_NO_FLIP)  # the variant reachable with --dsa-strategy


def test_parameter_ranges(big: DSADraw) -> None:
    n = len(big)
    assert big.crop.dtype == torch.long
    assert set(big.crop.unique().tolist()) == set(range(-4, 5))
    assert set(big.cutout.unique().tolist()) == set(range(0, 33))  # [0, 32 + 1 - 16 % 2)
    lo, hi = 1 / 1.2, 1.2
    assert big.scale.min() >= lo and big.scale.max() <= hi
    assert big.scale.min() < lo + 0.01 and big.scale.max() > hi - 0.01
    assert big.rotate.abs().max() <= 15.0 and big.rotate.abs().max() > 14.9
    assert abs(big.flip.float().mean().item() - 0.5) < 0.02
    assert big.brightness.abs().max() <= 0.5
    assert 0 <= big.saturation.min() and big.saturation.max() <= 2.0
    assert 0.5 <= big.contrast.min() and big.contrast.max() <= 1.5
    freq = torch.bincount(big.family, minlength=6).float() / n
    assert torch.all((freq - 1 / 6).abs() < 0.02), freq
    # x and y parameters are independent draws
    assert (big.crop[:, 0] != big.crop[:, 1]).float().mean() > 0.8
    assert (big.scale[:, 0] != big.scale[:, 1]).all()


def test_no_flip_strategy_and_shared_family() -> None:
    d = draw(6000, strategy=DSA_NO_FLIP)
    assert set(d.family.unique().tolist()) == set(range(5))
    shared = draw(100, shared_family=True)
    assert (shared.family == shared.family[0]).all()
    assert len(draw(100).index(torch.tensor([3, 3, 0]))) == 3


# ---------------------------------------------------------------- exactness per family


def test_crop_is_exact_zero_fill_translation() -> None:
    x = torch.randn(16, 3, H, W)
    d = with_family(draw(16), "crop")
    y = apply_dsa(x, d, DSA_FULL)
    for i in range(16):
        dy, dx = d.crop[i].tolist()
        ref = torch.zeros_like(x[i])
        # out[h, w] = x[h + dy, w + dx] where inside
        hs, he = max(0, -dy), min(H, H - dy)
        ws, we = max(0, -dx), min(W, W - dx)
        ref[:, hs:he, ws:we] = x[i, :, hs + dy : he + dy, ws + dx : we + dx]
        assert torch.equal(y[i], ref)


def test_cutout_matches_loop_mask() -> None:
    x = torch.randn(64, 3, H, W)
    d = with_family(draw(64, seed=3), "cutout")
    d.cutout[:4] = torch.tensor([[0, 0], [32, 32], [0, 32], [16, 5]])  # corners: cut squares
    y = apply_dsa(x, d, DSA_FULL)
    side = 16
    for i in range(64):
        mask = torch.ones(H, W)
        oy, ox = d.cutout[i].tolist()
        for a in range(side):
            for b in range(side):
                r = min(max(a + oy - side // 2, 0), H - 1)
                c = min(max(b + ox - side // 2, 0), W - 1)
                mask[r, c] = 0
        assert torch.equal(y[i], x[i] * mask)


def test_flip_matches_reference() -> None:
    x = torch.randn(32, 3, H, W)
    d = with_family(draw(32), "flip")
    y = apply_dsa(x, d, DSA_FULL)
    for i in range(32):
        assert torch.equal(y[i], x[i].flip(2) if d.flip[i] else x[i])


def test_color_matches_formulas() -> None:
    x = torch.randn(16, 3, H, W)
    d = with_family(draw(16), "color")
    y = apply_dsa(x, d, DSA_FULL)
    for i in range(16):
        z = x[i] + d.brightness[i]
        m = z.mean(dim=0, keepdim=True)
        z = (z - m) * d.saturation[i] + m
        m = z.mean()
        z = (z - m) * d.contrast[i] + m
        torch.testing.assert_close(y[i], z, rtol=1e-5, atol=1e-5)


def test_scale_and_rotate_identities_and_references() -> None:
    x = torch.randn(8, 3, H, W)
    base = draw(8)
    ident = apply_dsa(x, with_family(base, "scale", scale=torch.ones(8, 2)), DSA_FULL)
    torch.testing.assert_close(ident, x, rtol=0, atol=1e-4)
    ident = apply_dsa(x, with_family(base, "rotate", rotate=torch.zeros(8)), DSA_FULL)
    torch.testing.assert_close(ident, x, rtol=0, atol=1e-4)
    # +90 degrees with theta [[cos, sin], [-sin, cos]] is torch.rot90(k=-1) on square images
    r90 = apply_dsa(x, with_family(base, "rotate", rotate=torch.full((8,), 90.0)), DSA_FULL)
    torch.testing.assert_close(r90, x.rot90(-1, dims=(2, 3)), rtol=0, atol=1e-4)
    for name in ("scale", "rotate"):
        d = with_family(base, name)
        y = apply_dsa(x, d, DSA_FULL)
        for i in range(8):
            if name == "scale":
                theta = [[d.scale[i, 0].item(), 0, 0], [0, d.scale[i, 1].item(), 0]]
            else:
                a = math.radians(d.rotate[i].item())
                theta = [[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0]]
            grid = F.affine_grid(torch.tensor([theta]), [1, 3, H, W], align_corners=True)
            ref = F.grid_sample(x[i : i + 1], grid, align_corners=True)[0]
            torch.testing.assert_close(y[i], ref, rtol=1e-5, atol=1e-5)


def test_mixed_families_equal_single_family_calls() -> None:
    """Per-sample families in one call == each sample alone; other families pass unchanged."""
    x = torch.randn(60, 3, H, W)
    d = draw(60, seed=5)
    y = apply_dsa(x, d, DSA_FULL)
    for i in range(60):
        alone = apply_dsa(x[i : i + 1], d.index(torch.tensor([i])), DSA_FULL)
        torch.testing.assert_close(y[i : i + 1], alone, rtol=1e-6, atol=1e-6)


def test_unknown_family_is_user_error() -> None:
    with pytest.raises(UserError):
        dsa_augment(torch.zeros(2, 1, 8, 8), "crop_warp")


# ---------------------------------------------------------------- Siamese, determinism, grads


def test_siamese_same_class_shares_draw_and_equals_per_class_loop() -> None:
    classes, per_real, per_syn = 10, 6, 2
    proto = torch.randn(classes, 3, H, W)
    y_real = torch.arange(classes).repeat_interleave(per_real)
    y_syn = torch.arange(classes).repeat_interleave(per_syn)
    real = proto[y_real] + 0.0
    syn = proto[y_syn].clone().requires_grad_(True)
    out_real, out_syn = dsa_siamese([real, syn], [y_real, y_syn], classes, DSA_FULL, generator=gen(7))
    # identical content in one class -> identical output, real and synthetic alike
    for c in range(classes):
        ref = out_syn[c * per_syn]
        assert torch.equal(out_real[y_real == c], ref.expand(per_real, -1, -1, -1))
        assert torch.equal(out_syn[y_syn == c], ref.expand(per_syn, -1, -1, -1))
    # literal loop: one class at a time with the same draw entries
    d = sample_dsa(classes, DSA_FULL, image_size=(H, W), device="cpu", generator=gen(7))
    for c in range(classes):
        xc = torch.cat([real[y_real == c], syn[y_syn == c]])
        yc = apply_dsa(xc, d.index(torch.full((len(xc),), c)), DSA_FULL)
        torch.testing.assert_close(
            torch.cat([out_real[y_real == c], out_syn[y_syn == c]]), yc, rtol=1e-6, atol=1e-6
        )
    out_syn.sum().backward()
    assert syn.grad is not None and torch.isfinite(syn.grad).all()


def test_siamese_different_classes_get_different_draws() -> None:
    classes = 10
    x = torch.randn(1, 3, H, W).expand(classes, -1, -1, -1).contiguous()
    differ, total = 0, 0
    for seed in range(5):
        (y,) = dsa_siamese([x], [torch.arange(classes)], classes, DSA_FULL, generator=gen(seed))
        for a in range(classes):
            for b in range(a + 1, classes):
                differ += int(not torch.equal(y[a], y[b]))
                total += 1
    assert differ / total > 0.7


def test_determinism() -> None:
    x = torch.randn(16, 3, H, W)
    assert torch.equal(dsa_augment(x, DSA_FULL, generator=gen(3)), dsa_augment(x, DSA_FULL, generator=gen(3)))
    a = dsa_siamese([x], [torch.arange(16) % 4], 4, DSA_FULL, generator=gen(3))[0]
    b = dsa_siamese([x], [torch.arange(16) % 4], 4, DSA_FULL, generator=gen(3))[0]
    assert torch.equal(a, b)
    m = (0.1, 0.2, 0.3)
    assert torch.equal(
        dc_augment(x, "crop_scale_rotate", m, gen(4)), dc_augment(x, "crop_scale_rotate", m, gen(4))
    )


def test_dsa_augment_uses_one_family_per_call() -> None:
    x = torch.randn(64, 3, H, W)
    seen = set()
    for seed in range(40):
        y = dsa_augment(x, "crop_flip", DSAParams(), generator=gen(seed))
        flipped = [torch.equal(y[i], x[i].flip(2)) for i in range(64)]
        unchanged = [torch.equal(y[i], x[i]) for i in range(64)]
        if any(f and not u for f, u in zip(flipped, unchanged, strict=True)):
            # a flip call: every sample is flipped or unchanged, none translated
            assert all(f or u for f, u in zip(flipped, unchanged, strict=True))
            seen.add("flip")
        else:
            seen.add("crop")
    assert seen == {"crop", "flip"}


@pytest.mark.parametrize("family", DSA_FAMILIES)
def test_gradients_flow_for_every_family(family: str) -> None:
    x = torch.randn(8, 3, H, W, requires_grad=True)
    d = with_family(draw(8, seed=2), family, flip=torch.ones(8, dtype=torch.bool))
    y = apply_dsa(x, d, DSA_FULL)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- DC evaluation augmentation


def test_dc_augment_shapes_and_choices() -> None:
    x = torch.randn(32, 1, 28, 28)
    for strategy in ("crop_scale_rotate", "crop_noise", "none"):
        assert dc_augment(x, strategy, [0.0], gen()).shape == x.shape
    with pytest.raises(UserError):
        dc_augment(x, "crop_flip", [0.0])
    y = dc_augment(x, "noise", [0.0], gen())
    assert 0.0008 < (y - x).std().item() < 0.0012


def test_dc_crop_is_a_window_of_the_mean_padded_input() -> None:
    x = torch.randn(200, 3, 16, 16)
    mean = [0.5, -1.0, 2.0]
    y = dc_augment(x, "crop", mean, gen(9))
    padded = torch.tensor(mean).view(1, 3, 1, 1).repeat(200, 1, 24, 24)
    padded[:, :, 4:20, 4:20] = x
    offsets = set()
    for i in range(200):
        hits = [
            (r, c)
            for r in range(9)
            for c in range(9)
            if torch.equal(y[i], padded[i, :, r : r + 16, c : c + 16])
        ]
        assert len(hits) == 1
        offsets.add(hits[0][0])
    assert offsets == set(range(8))  # offsets 0..7, as np.random.permutation(8)[0]


def test_dc_rotate_fills_with_mean_of_means() -> None:
    x = torch.zeros(64, 3, 28, 28)
    mean = [0.3, 0.6, 0.9]
    y = dc_augment(x, "rotate", mean, gen(2))
    corner = y[:, :, 0, 0]
    assert ((corner - 0.6).abs() < 1e-5).float().mean() > 0.8  # all but near-zero angles
    assert y.min() >= -1e-6 and y.max() <= 0.6 + 1e-6
    s = dc_augment(x + 1.0, "scale", mean, gen(2))
    assert s.min() >= -1e-6 and s.max() <= 1.0 + 1e-5  # zero fill where shrunk
