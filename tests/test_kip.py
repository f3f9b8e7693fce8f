"""KIP: ridge regression against a closed form, the FC ReLU kernels against known values and wide
random networks, and the KIP loss going down."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from tiny import tiny_dataset

from dcclib.analyses.kip import (
    KernelConfig,
    KIPConfig,
    arccos1,
    centered_one_hot,
    kernel,
    kip,
    kip_loss,
    krr_accuracy,
    krr_predict,
    relu_kernels,
)
from dcclib.errors import UserError


def test_krr_matches_a_numpy_closed_form():
    g = np.random.default_rng(0)
    a = g.normal(size=(6, 4))
    k_ss = a @ a.T + 0.1 * np.eye(6)
    k_ts = g.normal(size=(3, 6))
    y_s = g.normal(size=(6, 2))
    reg = 0.3
    expected = k_ts @ np.linalg.solve(k_ss + reg * np.trace(k_ss) / 6 * np.eye(6), y_s)
    got = krr_predict(*(torch.from_numpy(v) for v in (k_ts, k_ss, y_s)), reg)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_krr_with_a_tiny_ridge_interpolates_the_support():
    x = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = centered_one_hot(torch.tensor([0, 1, 2, 0, 1]), 3)
    k = kernel(x, x, KernelConfig())
    torch.testing.assert_close(krr_predict(k, k, y, 1e-12), y, rtol=1e-6, atol=1e-6)


def test_arc_cosine_kernel_of_order_one_at_known_angles():
    cos = torch.tensor([1.0, 0.5, 0.0, -1.0], dtype=torch.float64)
    # J_1(t)/pi = (sin t + (pi - t) cos t) / pi at t = 0, pi/3, pi/2, pi
    expected = [1.0, (math.sqrt(3) / 2 + (2 * math.pi / 3) * 0.5) / math.pi, 1 / math.pi, 0.0]
    np.testing.assert_allclose(arccos1(cos).numpy(), expected, atol=1e-6)


def test_kernel_gradients_are_exact_inside_and_finite_where_support_equals_target():
    cos = torch.tensor([-0.9, -0.2, 0.3, 0.95], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(arccos1, (cos,))
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x_s = x[:2].clone().requires_grad_(True)  # the support holds two of the targets exactly
    y_t = centered_one_hot(torch.tensor([0, 1, 0, 1]), 2)
    loss = kip_loss(x_s, y_t[:2], x, y_t, KernelConfig(depth=2), 1e-3)
    loss.backward()
    assert torch.isfinite(x_s.grad).all() and x_s.grad.abs().sum() > 0
    x_in = x[:2].clone().requires_grad_(True)  # away from coincident points: autograd = finite differences
    assert torch.autograd.gradcheck(
        lambda s: kip_loss(s + 0.1, y_t[:2], x, y_t, KernelConfig(depth=2), 1e-3), (x_in,)
    )


def test_one_layer_nngp_is_the_arc_cosine_kernel_in_closed_form():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=torch.float64)
    nngp, ntk = relu_kernels(x, x, depth=1, w_var=2.0, b_var=0.0)
    d, norms = 2, x.norm(dim=1)
    # K^0 = 2 <x, x'> / d; K^1 = 2 * sqrt(k k') / (2 pi) * J_1(angle between x and x')
    k0 = 2 * (x @ x.T) / d
    cos = (x @ x.T) / (norms[:, None] * norms[None, :])
    expected = 2 * torch.sqrt(torch.diag(k0)[:, None] * torch.diag(k0)[None, :]) * arccos1(cos) / 2
    torch.testing.assert_close(nngp, expected)
    # orthogonal inputs: J_1(pi/2) = 1; NTK adds K^0 * (pi - pi/2) / (2 pi) * 2 = 0 there
    assert nngp[0, 1].item() == pytest.approx(2 * math.sqrt(1.0 * 4.0) / (2 * math.pi), rel=1e-6)
    assert ntk[0, 1].item() == pytest.approx(nngp[0, 1].item(), rel=1e-6)
    # the diagonal keeps its scale with w_var = 2 (E[relu(u)^2] = var/2): K(x, x) = K^0(x, x)
    torch.testing.assert_close(torch.diag(nngp), torch.diag(k0))
    torch.testing.assert_close(torch.diag(ntk), 2 * torch.diag(k0))


def _finite_network(width, depth, d, w_var, b_var, seed):
    """Parameters and forward of an NTK-parameterised FC ReLU network (the neural-tangents convention)."""
    g = torch.Generator().manual_seed(seed)
    dims = [d] + [width] * depth + [1]
    params = {}
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        params[f"w{i}"] = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
        params[f"b{i}"] = torch.randn(n_out, generator=g, dtype=torch.float64)

    def forward(p, x, features=False):
        h = x
        for i in range(depth + 1):
            pre = h @ p[f"w{i}"].T * math.sqrt(w_var / h.shape[1]) + math.sqrt(b_var) * p[f"b{i}"]
            if i == depth:
                return h if features else pre[:, 0]
            h = torch.relu(pre)

    return params, forward


def test_nngp_and_ntk_match_wide_random_networks():
    d, depth, width, w_var, b_var = 12, 2, 2048, 2.0, 0.01
    x = torch.randn(3, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x[2] = x[0] + 0.3 * x[1]  # a correlated pair
    nngp, ntk = relu_kernels(x, x, depth, w_var, b_var)
    emp_nngp, emp_ntk = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    seeds = range(8)  # average 8 networks: the Monte-Carlo error is then about 1-2%
    for seed in seeds:
        params, forward = _finite_network(width, depth, d, w_var, b_var, seed)
        phi = forward(params, x, features=True)
        emp_nngp += w_var * phi @ phi.T / width + b_var
        jac = torch.func.jacrev(forward)(params, x)  # each [3, *param.shape]
        flat = torch.cat([j.reshape(3, -1) for j in jac.values()], dim=1)
        emp_ntk += flat @ flat.T
    emp_nngp, emp_ntk = emp_nngp / len(seeds), emp_ntk / len(seeds)
    scale_nngp, scale_ntk = nngp.abs().max(), ntk.abs().max()
    assert (emp_nngp - nngp).abs().max() < 0.04 * scale_nngp
    assert (emp_ntk - ntk).abs().max() < 0.05 * scale_ntk
    assert ((emp_ntk - ntk) / ntk).abs().max() < 0.05
    assert not torch.allclose(nngp, ntk)  # NTK adds the gradient terms of the hidden layers


def test_kernels_are_symmetric_positive_semidefinite_and_batch_consistent():
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for kind in ("ntk", "nngp"):
        cfg = KernelConfig(kind=kind, depth=3)
        k = kernel(x, x, cfg)
        torch.testing.assert_close(k, k.T)
        assert torch.linalg.eigvalsh(k).min() > -1e-9
        torch.testing.assert_close(kernel(x[:3], x, cfg), k[:3])


def test_kip_loss_decreases_and_the_run_is_seeded():
    data = tiny_dataset(per_class=8, size=6, channels=1)
    cfg = KIPConfig(ipc=1, steps=40, lr=0.05, target_batch=24, log_every=1, seed=3)
    result = kip(data, cfg)
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 40 and losses[-1] < 0.8 * losses[0]
    assert result.images.shape == (3, 1, 6, 6) and result.images.dtype == torch.float32
    assert result.labels.tolist() == [0, 1, 2]
    torch.testing.assert_close(result.targets, centered_one_hot(torch.tensor([0, 1, 2]), 3))
    again = kip(data, cfg)
    assert torch.equal(again.images, result.images)
    assert not torch.equal(kip(data, dataclasses.replace(cfg, seed=4)).images, result.images)
    # the learned support is a better KRR support for the target data than its real initialisation
    init = kip(data, dataclasses.replace(cfg, steps=0))
    x_t = data.train_images.flatten(1).double()
    y_t = centered_one_hot(data.train_labels, 3)

    def loss_of(r):
        return float(kip_loss(r.images.flatten(1).double(), r.targets, x_t, y_t, cfg.kernel, cfg.reg))

    assert loss_of(result) < loss_of(init)


def test_kip_can_learn_labels_and_its_support_classifies_by_krr():
    data = tiny_dataset(per_class=8, size=6, channels=1)
    cfg = KIPConfig(ipc=2, steps=10, lr=0.05, target_batch=24, learn_labels=True)
    result = kip(data, cfg)
    assert not torch.allclose(result.targets, centered_one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3))
    assert torch.equal(result.labels, result.targets.argmax(1))
    acc = krr_accuracy(result.images, result.targets, data, cfg.kernel, cfg.reg)
    assert 0.0 <= acc <= 1.0 and acc > 0.6  # well separated classes: far above chance (1/3)


def test_kip_config_errors_are_user_errors():
    data = tiny_dataset(per_class=4, size=6, channels=1)
    for bad in (
        dict(ipc=0),
        dict(ipc=5),
        dict(lr=0.0),
        dict(target_batch=2),
        dict(steps=-1),
        dict(kernel=KernelConfig(kind="rbf")),
        dict(kernel=KernelConfig(depth=-1)),
    ):
        with pytest.raises(UserError):
            kip(data, dataclasses.replace(KIPConfig(steps=1), **bad))
