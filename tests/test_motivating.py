"""Section 3.2: the closed forms of Eqs. 6-9 agree with numerical optimisation of Eq. 4."""

import math

import numpy as np
import pytest
import torch

from dcclib.analyses import motivating as mv
from dcclib.errors import UserError


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_optimised_solutions_equal_the_closed_forms(beta):
    task = mv.Task(alpha=1.5, beta=beta, epsilon=0.1)
    x, y = mv.sample(task, 4000, seed=3)
    mu_p, mu_m = mv.class_means(x, y)
    cw = mv.optimise(task, x, y, "classwise")
    cc = mv.optimise(task, x, y, "collective")
    np.testing.assert_allclose(cw, mv.classwise_solution(mu_p, mu_m, task.epsilon), atol=1e-9)
    np.testing.assert_allclose(cc, mv.collective_solution(task.epsilon), atol=1e-9)
    assert mv.ratio(cc) == pytest.approx(1.0, abs=1e-9)  # Eq. 9
    assert mv.ratio(cw) <= mv.ratio_bound(task) + 1e-12  # Eq. 7 (sample version)


def test_classwise_ratio_falls_with_the_common_feature():
    values = [mv.classwise_ratio_closed_form(mv.Task(1.0, b)) for b in (0.0, 0.5, 1.0, 4.0)]
    assert values[0] == pytest.approx(1.0)  # equality of Eq. 7 at beta = 0
    assert all(a > b for a, b in zip(values, values[1:]))
    for b, v in zip((0.5, 1.0, 4.0), values[1:]):
        assert v < mv.ratio_bound(mv.Task(1.0, b))


def test_truncated_mean_matches_monte_carlo():
    rng = np.random.default_rng(0)
    for alpha in (1.0, 2.5):
        z = alpha + rng.standard_normal(2_000_000)
        assert mv.truncated_mean(alpha) == pytest.approx(z[z < 1].mean(), abs=3e-3)
    assert mv.truncated_mean(1.0) == pytest.approx(mv.EPSILON_MAX)  # 1 - sqrt(2/pi) at alpha = 1


def test_hinge_gradient_matches_autograd_and_mirror_symmetry():
    task = mv.Task(alpha=1.0, beta=2.0)
    x, y = mv.sample(task, 200, seed=1)
    w = torch.tensor(mv.PHI1, requires_grad=True)
    for xi, yi, gi in zip(x[:20], y[:20], mv.hinge_gradients(x[:20], y[:20])):
        loss = torch.clamp(1 - float(yi) * (torch.from_numpy(xi) @ w), min=0)
        (g,) = torch.autograd.grad(loss, w)
        np.testing.assert_allclose(g.numpy(), gi)
    mu_p, mu_m = mv.class_means(x, y)
    assert mu_p[0] == pytest.approx(-mu_m[0]) and mu_p[1] == pytest.approx(mu_m[1])


def test_ratio_curve_columns_and_bounds():
    df = mv.ratio_curve([0.0, 2.0], n=2000)
    assert list(df["beta/alpha"]) == [0.0, 2.0]
    assert (df["class-collective, optimised"] - 1).abs().max() < 1e-9
    exact = df["class-wise, closed form, sample means (Eq. 6)"]
    assert (df["class-wise, optimised"] - exact).abs().max() < 1e-9
    assert (df["class-wise, optimised"] <= df["bound alpha/(alpha+beta)"] + 1e-12).all()
    assert not math.isclose(df["class-wise, optimised"].iloc[1], 1.0)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        mv.Task(alpha=0.5)
    with pytest.raises(UserError):
        mv.Task(epsilon=0.5)
    with pytest.raises(UserError):
        mv.sample(mv.Task(), 3)
    with pytest.raises(UserError):
        mv.optimise(mv.Task(), *mv.sample(mv.Task(), 10), "pairwise")
