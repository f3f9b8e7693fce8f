"""The matching losses against literal per-class oracles (the original code's structure).

The oracles below loop over classes exactly as the DC/DCC code does: per-class forward, per-class
autograd, per-class distance; DCC averages the per-class gradients before one distance. The
fast paths in dcclib.matching must give the same loss and the same gradient with respect to the
synthetic images, for DC and DCC, with and without DSA (with the augmentation draws fixed).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcclib.augment import apply_dsa, sample_dsa
from dcclib.errors import UserError
from dcclib.matching import dc_loss, dcc_loss, gradient_distance
from dcclib.models import ConvNet, create_model

STRATEGY = "color_crop_cutout_flip_scale_rotate"


# ------------------------------------------------------------------ literal oracles
def literal_distance_wb(gwr: torch.Tensor, gws: torch.Tensor) -> torch.Tensor:
    """DC's `distance_wb`, verbatim in structure."""
    shape = gwr.shape
    if len(shape) == 4:  # conv, out x in x h x w
        gwr = gwr.reshape(shape[0], shape[1] * shape[2] * shape[3])
        gws = gws.reshape(shape[0], shape[1] * shape[2] * shape[3])
    elif len(shape) == 3:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2])
        gws = gws.reshape(shape[0], shape[1] * shape[2])
    elif len(shape) == 1:  # batchnorm/instancenorm/bias
        return torch.tensor(0, dtype=gwr.dtype)
    return torch.sum(
        1 - torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 0.000001)
    )


def literal_match(gw_real, gw_syn, kind):
    """DC's `match_loss`."""
    if kind == "layerwise":
        return sum(literal_distance_wb(r, s) for r, s in zip(gw_real, gw_syn))
    r = torch.cat([g.reshape(-1) for g in gw_real])
    s = torch.cat([g.reshape(-1) for g in gw_syn])
    if kind == "mse":
        return torch.sum((s - r) ** 2)
    return 1 - torch.sum(r * s, dim=-1) / (torch.norm(r, dim=-1) * torch.norm(s, dim=-1) + 0.000001)


def per_class_grads(net, real_x, real_y, syn_x, syn_y, c, draws=None):
    params = list(net.parameters())
    xr, xs = real_x[real_y == c], syn_x[syn_y == c]
    if draws is not None:  # one draw for the class, shared by its real and synthetic images
        xr = apply_dsa(xr, draws.index(torch.full((len(xr),), c)), STRATEGY)
        xs = apply_dsa(xs, draws.index(torch.full((len(xs),), c)), STRATEGY)
    g_real = torch.autograd.grad(F.cross_entropy(net(xr), real_y[real_y == c]), params)
    g_syn = torch.autograd.grad(F.cross_entropy(net(xs), syn_y[syn_y == c]), params, create_graph=True)
    return [g.detach() for g in g_real], list(g_syn)


def literal_dc(net, real_x, real_y, syn_x, syn_y, num_classes, kind, draws=None):
    loss = 0.0
    for c in range(num_classes):
        g_real, g_syn = per_class_grads(net, real_x, real_y, syn_x, syn_y, c, draws)
        loss = loss + literal_match(g_real, g_syn, kind)
    return loss


def literal_dcc(net, real_x, real_y, syn_x, syn_y, num_classes, kind, draws=None):
    sums_real, sums_syn = None, None
    for c in range(num_classes):
        g_real, g_syn = per_class_grads(net, real_x, real_y, syn_x, syn_y, c, draws)
        sums_real = g_real if sums_real is None else [a + b for a, b in zip(sums_real, g_real)]
        sums_syn = g_syn if sums_syn is None else [a + b for a, b in zip(sums_syn, g_syn)]
    mean_real = [g / num_classes for g in sums_real]
    mean_syn = [g / num_classes for g in sums_syn]
    return literal_match(mean_real, mean_syn, kind)


# ------------------------------------------------------------------ fixtures
C, IPC, K = 4, 3, 6


def make_problem(seed: int = 0, counts=None):
    torch.manual_seed(seed)
    net = ConvNet(3, C, width=8, depth=2, image_size=16).double()
    counts = counts or [K] * C
    real_y = torch.cat([torch.full((k,), c) for c, k in enumerate(counts)])
    real_x = torch.randn(len(real_y), 3, 16, 16, dtype=torch.float64)
    syn_y = torch.arange(C).repeat_interleave(IPC)
    syn = torch.randn(C * IPC, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    return net, real_x, real_y, syn, syn_y, counts


def loss_and_grad(loss_fn, syn):
    loss = loss_fn()
    (g,) = torch.autograd.grad(loss, syn)
    return loss.detach(), g


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("kind", ["layerwise", "mse", "cos"])
@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_dc_matches_literal_per_class(kind, mode):
    net, rx, ry, syn, sy, counts = make_problem()
    fast = loss_and_grad(lambda: dc_loss(net, rx, ry, syn, sy, counts, [IPC] * C, kind, mode), syn)
    ref = loss_and_grad(lambda: literal_dc(net, rx, ry, syn, sy, C, kind), syn)
    torch.testing.assert_close(fast[0], ref[0].reshape(()), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["layerwise", "mse", "cos"])
def test_dcc_matches_literal_per_class(kind):
    net, rx, ry, syn, sy, counts = make_problem(1)
    fast = loss_and_grad(lambda: dcc_loss(net, rx, ry, syn, sy, counts, [IPC] * C, kind), syn)
    ref = loss_and_grad(lambda: literal_dcc(net, rx, ry, syn, sy, C, kind), syn)
    torch.testing.assert_close(fast[0], ref[0].reshape(()), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-7, atol=1e-9)


def test_dcc_with_unequal_class_counts_is_the_class_average():
    counts = [2, 5, 3, 6]
    net, rx, ry, syn, sy, counts = make_problem(2, counts)
    fast = loss_and_grad(lambda: dcc_loss(net, rx, ry, syn, sy, counts, [IPC] * C), syn)
    ref = loss_and_grad(lambda: literal_dcc(net, rx, ry, syn, sy, C, "layerwise"), syn)
    torch.testing.assert_close(fast[0], ref[0].reshape(()), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-7, atol=1e-9)


def test_dc_vmap_falls_back_to_loop_on_unequal_counts():
    counts = [2, 5, 3, 6]
    net, rx, ry, syn, sy, counts = make_problem(3, counts)
    fast = loss_and_grad(lambda: dc_loss(net, rx, ry, syn, sy, counts, [IPC] * C, mode="vmap"), syn)
    ref = loss_and_grad(lambda: literal_dc(net, rx, ry, syn, sy, C, "layerwise"), syn)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-7, atol=1e-9)


def test_dcc_real_chunks_give_the_same_loss():
    net, rx, ry, syn, sy, counts = make_problem(4)
    whole = dcc_loss(net, rx, ry, syn, sy, counts, [IPC] * C)
    chunked = dcc_loss(net, rx, ry, syn, sy, counts, [IPC] * C, real_chunk=5)
    torch.testing.assert_close(whole, chunked, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("collective", [False, True])
def test_siamese_dsa_fast_path_matches_literal(collective):
    """Vectorised Siamese DSA + batched loss == per-class augmentation + per-class loss."""
    net, rx, ry, syn, sy, counts = make_problem(5)
    draws = sample_dsa(
        C, STRATEGY, image_size=(16, 16), device="cpu", generator=torch.Generator().manual_seed(7)
    )

    def fast():
        real_aug = apply_dsa(rx, draws.index(ry), STRATEGY)
        syn_aug = apply_dsa(syn, draws.index(sy), STRATEGY)
        if collective:
            return dcc_loss(net, real_aug, ry, syn_aug, sy, counts, [IPC] * C)
        return dc_loss(net, real_aug, ry, syn_aug, sy, counts, [IPC] * C, mode="vmap")

    literal = literal_dcc if collective else literal_dc
    got = loss_and_grad(fast, syn)
    ref = loss_and_grad(lambda: literal(net, rx, ry, syn, sy, C, "layerwise", draws), syn)
    torch.testing.assert_close(got[0], ref[0].reshape(()), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("family", ["color", "crop", "cutout", "flip", "scale", "rotate"])
def test_siamese_augmentation_shares_a_draw_within_a_class_only(family, chunk):
    """What condense calls (siamese_augment, whole or chunked): a real image equal to its class's
    synthetic image stays equal to it after augmentation (one draw per class), and classes with
    identical images get different draws. Catches: independent draws for the real and the
    synthetic side, one draw for all classes, and chunks that redraw."""
    from dcclib.augment import DSAParams
    from dcclib.condense import siamese_augment

    torch.manual_seed(0)
    proto = torch.randn(1, 3, 16, 16)
    syn = proto.repeat(C, 1, 1, 1)  # every class: the same image
    sy = torch.arange(C)
    rx = proto.repeat(C * 4, 1, 1, 1)  # 4 real copies of it per class
    ry = torch.arange(C).repeat_interleave(4)
    differ = 0
    for seed in range(8):
        torch.manual_seed(seed)
        real, out = siamese_augment(rx, ry, syn, sy, C, family, DSAParams(), chunk)
        for c in range(C):
            for r in real[ry == c]:
                torch.testing.assert_close(r, out[c], rtol=0, atol=1e-6)
        differ += any(not torch.allclose(out[0], out[c], atol=1e-6) for c in range(1, C))
    assert differ >= 4  # flip leaves half the draws unchanged; the others differ almost surely


def test_layerwise_distance_ignores_one_dimensional_parameters():
    torch.manual_seed(0)
    real = [torch.randn(1, 4, 3, 3, 3), torch.randn(1, 4), torch.randn(1, 5, 8)]
    syn = [torch.randn(1, 4, 3, 3, 3), torch.randn(1, 4), torch.randn(1, 5, 8)]
    base = gradient_distance(real, syn, "layerwise")
    syn_changed = [syn[0], torch.randn(1, 4) * 100, syn[2]]
    assert gradient_distance(real, syn_changed, "layerwise") == base
    # and the value is the literal per-row sum over the 2-D and 4-D tensors
    expected = literal_distance_wb(real[0][0], syn[0][0]) + literal_distance_wb(real[2][0], syn[2][0])
    torch.testing.assert_close(base, expected)
    # identical gradients are at distance ~0; opposite ones at 2 per row (4 + 5 rows)
    assert float(gradient_distance(real, real, "layerwise")) == pytest.approx(0.0, abs=1e-5)
    neg = [-r for r in real]
    assert float(gradient_distance(real, neg, "layerwise")) == pytest.approx(2 * 9, rel=1e-5)


def test_mse_and_cos_include_every_parameter():
    real = [torch.ones(1, 2, 2), torch.ones(1, 3)]
    syn = [torch.ones(1, 2, 2), torch.zeros(1, 3)]
    assert float(gradient_distance(real, syn, "mse")) == pytest.approx(3.0)
    assert float(gradient_distance(real, syn, "cos")) == pytest.approx(1 - 4 / (7**0.5 * 2 + 1e-6))


def test_unknown_distance_is_a_user_error():
    with pytest.raises(UserError):
        gradient_distance([torch.ones(1, 2, 2)], [torch.ones(1, 2, 2)], "l1")


def test_default_convnet_fast_path_in_float32():
    """The real default network (128 wide, 32x32) agrees with the oracle in float32 too."""
    torch.manual_seed(0)
    net = create_model("convnet", 3, 3, 32)
    ry = torch.arange(3).repeat_interleave(4)
    rx = torch.randn(12, 3, 32, 32)
    sy = torch.arange(3).repeat_interleave(2)
    syn = torch.randn(6, 3, 32, 32, requires_grad=True)
    for fast_fn, literal in (
        (lambda: dcc_loss(net, rx, ry, syn, sy, [4] * 3, [2] * 3), literal_dcc),
        (lambda: dc_loss(net, rx, ry, syn, sy, [4] * 3, [2] * 3, mode="vmap"), literal_dc),
    ):
        got = loss_and_grad(fast_fn, syn)
        ref = loss_and_grad(lambda lit=literal: lit(net, rx, ry, syn, sy, 3, "layerwise"), syn)
        torch.testing.assert_close(got[0], ref[0].reshape(()), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("norm", ["layernorm", "instancenorm", "groupnorm"])
def test_dc_vmap_mode_gives_the_literal_image_gradient_for_every_norm(norm):
    """vmap(grad) through LayerNorm gets the second-order input gradient wrong in PyTorch (found
    by the cross-check against the original: 1.7e-2 relative); such networks take the loop."""
    net, rx, ry, syn, sy, counts = make_problem(8)
    torch.manual_seed(8)
    net = ConvNet(3, C, width=8, depth=2, norm=norm, image_size=16).double()
    fast = loss_and_grad(lambda: dc_loss(net, rx, ry, syn, sy, counts, [IPC] * C, "layerwise", "vmap"), syn)
    ref = loss_and_grad(lambda: literal_dc(net, rx, ry, syn, sy, C, "layerwise"), syn)
    torch.testing.assert_close(fast[0], ref[0].reshape(()), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-7, atol=1e-9)
