"""Section 3.2's motivating example: why class-wise gradient matching keeps class-common features.

The task (Eq. 3): y uniform in {-1, +1}, x ~ N(y alpha phi_1 + beta phi_2, I) in R^2, with phi_1 the
class-discriminative and phi_2 the class-common direction (here the unit axes e_1, e_2). A linear
classifier w = phi_1 with the hinge loss L(x, y; w) = max(0, 1 - y w^T x) has the gradient
g_w(x, y) = -y x on the samples with y w^T x < 1 and 0 elsewhere. (The paper's text writes the
condition as -y w^T x < 1, a sign slip: only samples with y w^T x < 1 have a gradient, and only
that reading gives its |phi_1^T mu^+| < alpha.)

One synthetic point per class, S = {(s_1, +1), (s_2, -1)}, with ||s|| <= epsilon (the paper picks
lambda so that this bound holds; we enforce it as a constraint, with a small lambda < 1 kept in
the loss, which leaves the constrained solutions unchanged). Then:

- class-wise matching (Eq. 6): s_c = epsilon mu^c / ||mu^c||, the direction of the class's mean
  gradient-giving sample, so R(S) = |mu_1| / (|mu_1| + beta) <= alpha / (alpha + beta) (Eq. 7);
- class-collective matching (Eq. 8): (s_1, s_2) = (epsilon phi_1, -epsilon phi_1), so R(S) = 1
  (Eq. 9), whatever beta is.

Everything is float64 on the CPU and seeded, so the numbers are exact and repeatable. The sample
is mirrored: the class -1 points are the class +1 points reflected across the phi_2 axis (each
class is still exactly N(y alpha phi_1 + beta phi_2, I)), so the paper's "without loss of
generality" assumptions |X^+| = |X^-| and |phi_1^T mu^+| = |phi_1^T mu^-| hold exactly in the
sample, and the closed forms evaluated with the sample's means are the exact optima of Eq. 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dcclib.errors import UserError
from dcclib.runtime import derive_seed

PHI1 = np.array([1.0, 0.0])  # class-discriminative direction
PHI2 = np.array([0.0, 1.0])  # class-common direction
EPSILON_MAX = 1 - math.sqrt(2 / math.pi)  # the paper's bound on epsilon


@dataclass(frozen=True)
class Task:
    """The Gaussian task of Eq. 3 and the capacity of the synthetic set."""

    alpha: float = 1.0  # strength of the class-discriminative feature (>= 1)
    beta: float = 2.0  # strength of the class-common feature (>= 0)
    epsilon: float = 0.1  # bound on ||s||, at most 1 - sqrt(2/pi)
    lam: float = 0.1  # lambda of Eq. 4 (< 1, so the norm bound is what limits s)

    def __post_init__(self) -> None:
        if self.alpha < 1 or self.beta < 0:
            raise UserError(f"the task needs alpha >= 1 and beta >= 0, got {self.alpha}, {self.beta}")
        if not 0 < self.epsilon <= EPSILON_MAX:
            raise UserError(f"epsilon must be in (0, {EPSILON_MAX:.4f}], got {self.epsilon}")
        if not 0 <= self.lam < 1:
            raise UserError(f"lambda must be in [0, 1), got {self.lam}")


def sample(task: Task, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n mirrored samples of Eq. 3 (n/2 per class), x [n, 2] float64 and y [n] in {-1, +1}."""
    if n < 2 or n % 2:
        raise UserError(f"n must be a positive even number, got {n}")
    rng = np.random.default_rng(derive_seed("motivating", seed, task.alpha, task.beta, n))
    plus = task.alpha * PHI1 + task.beta * PHI2 + rng.standard_normal((n // 2, 2))
    minus = plus * np.array([-1.0, 1.0])  # reflection across the phi_2 axis
    return np.concatenate([plus, minus]), np.repeat([1.0, -1.0], n // 2)


def active(x: np.ndarray, y: np.ndarray, w: np.ndarray = PHI1) -> np.ndarray:
    """Samples with a non-zero hinge gradient: y w^T x < 1."""
    return y * (x @ w) < 1


def hinge_gradients(x: np.ndarray, y: np.ndarray, w: np.ndarray = PHI1) -> np.ndarray:
    """g_w(x, y) = d/dw max(0, 1 - y w^T x) = -y x where y w^T x < 1, else 0; [n, 2]."""
    return np.where(active(x, y, w)[:, None], -y[:, None] * x, 0.0)


def class_means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu^+ and mu^-: the means of the gradient-giving samples X^+ and X^- of each class."""
    a = active(x, y)
    return x[a & (y > 0)].mean(0), x[a & (y < 0)].mean(0)


def truncated_mean(alpha: float) -> float:
    """Population phi_1^T mu^+ = E[x_1 | x_1 < 1] for x_1 ~ N(alpha, 1) (truncated normal mean)."""
    z = 1.0 - alpha
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return alpha - pdf / cdf


def population_means(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """mu^+ = (m, beta), mu^- = (-m, beta) with m the truncated mean (infinite data)."""
    m = truncated_mean(task.alpha)
    return m * PHI1 + task.beta * PHI2, -m * PHI1 + task.beta * PHI2


def classwise_solution(mu_plus: np.ndarray, mu_minus: np.ndarray, epsilon: float) -> np.ndarray:
    """Eq. 6: S~ = {eps mu^+ / ||mu^+||, eps mu^- / ||mu^-||}, as [2, 2] (rows s_1, s_2)."""
    return np.stack(
        [epsilon * mu_plus / np.linalg.norm(mu_plus), epsilon * mu_minus / np.linalg.norm(mu_minus)]
    )


def collective_solution(epsilon: float) -> np.ndarray:
    """Eq. 8: S^ = {eps phi_1, -eps phi_1}."""
    return np.stack([epsilon * PHI1, -epsilon * PHI1])


def ratio(s: np.ndarray) -> float:
    """Eq. 5: R(S) = mean over s of |s^T phi_1| / (|s^T phi_1| + |s^T phi_2|)."""
    a, b = np.abs(s @ PHI1), np.abs(s @ PHI2)
    return float(np.mean(a / (a + b)))


def classwise_ratio_closed_form(task: Task) -> float:
    """Eq. 7 with infinite data: |m| / (|m| + beta), m the truncated mean."""
    m = abs(truncated_mean(task.alpha))
    return m / (m + task.beta)


def ratio_bound(task: Task) -> float:
    """Eq. 7's bound alpha / (alpha + beta)."""
    return task.alpha / (task.alpha + task.beta)


def mean_hinge_gradient(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """(1/|X|) sum g_w(x, y), by autograd of the mean hinge loss (a graph kept if asked)."""
    w = w.detach().requires_grad_(True)
    loss = torch.clamp(1 - y * (x @ w), min=0).mean()
    return torch.autograd.grad(loss, w, create_graph=create_graph)[0]


def matching_loss(
    g_real: torch.Tensor, s: torch.Tensor, t: torch.Tensor, lam: float, w: torch.Tensor
) -> torch.Tensor:
    """Eq. 4: lambda/|S| sum ||s|| + || mean_X g_w(x, y) - mean_S g_w(s, t) ||.

    g_w at the synthetic points is taken by autograd with a graph (the second-order step of
    gradient matching), so the optimiser sees what a DC-style implementation sees; the real
    side `g_real` does not depend on S and is computed once.
    """
    g_syn = mean_hinge_gradient(s, t, w, create_graph=True)
    return lam * s.norm(dim=1).mean() + (g_real - g_syn).norm()


def optimise(
    task: Task, x: np.ndarray, y: np.ndarray, strategy: str, steps: int = 300, lr: float = 0.05, seed: int = 0
) -> np.ndarray:
    """Minimise Eq. 4 over S by projected gradient descent (||s|| <= epsilon); returns [2, 2].

    strategy "classwise": L(X^+, S^+) + L(X^-, S^-) with X^c the class's gradient-giving
    samples; "collective": L(X^+ u X^-, S^+ u S^-). Starts from a seeded random point.
    """
    if strategy not in ("classwise", "collective"):
        raise UserError(f"unknown strategy '{strategy}'; choose classwise or collective")
    a = active(x, y)
    xs, ys = torch.from_numpy(x[a]), torch.from_numpy(y[a])
    w = torch.from_numpy(PHI1.copy())
    gen = torch.Generator().manual_seed(derive_seed("motivating-init", seed, strategy))
    s = (torch.rand(2, 2, generator=gen, dtype=torch.float64) - 0.5) * task.epsilon
    s.requires_grad_(True)
    t = torch.tensor([1.0, -1.0], dtype=torch.float64)
    if strategy == "classwise":
        g_real = [mean_hinge_gradient(xs[ys == c], ys[ys == c], w) for c in (1.0, -1.0)]
    else:
        g_real = mean_hinge_gradient(xs, ys, w)
    opt = torch.optim.SGD([s], lr=lr)
    for _ in range(steps):
        if strategy == "classwise":
            loss = sum(matching_loss(g_real[i], s[i : i + 1], t[i : i + 1], task.lam, w) for i in range(2))
        else:
            loss = matching_loss(g_real, s, t, task.lam, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():  # project back onto the ball ||s|| <= epsilon
            norms = s.norm(dim=1, keepdim=True).clamp(min=task.epsilon)
            s.mul_(task.epsilon / norms)
    return s.detach().numpy()


def solve(task: Task, n: int = 100_000, seed: int = 0, steps: int = 300) -> dict:
    """Closed forms (Eqs. 6-9) next to numerical optimisation of Eq. 4, for one task."""
    x, y = sample(task, n, seed)
    mu_p, mu_m = class_means(x, y)
    cw_closed = classwise_solution(mu_p, mu_m, task.epsilon)
    cc_closed = collective_solution(task.epsilon)
    cw_num = optimise(task, x, y, "classwise", steps=steps, seed=seed)
    cc_num = optimise(task, x, y, "collective", steps=steps, seed=seed)
    return {
        "task": task,
        "x": x,
        "y": y,
        "mu_plus": mu_p,
        "mu_minus": mu_m,
        "classwise_closed": cw_closed,
        "classwise_numeric": cw_num,
        "collective_closed": cc_closed,
        "collective_numeric": cc_num,
    }


def _point(v: np.ndarray, decimals: int) -> str:
    a, b = (round(float(c), decimals) + 0.0 for c in v)  # + 0.0: no "-0.0000"
    return f"({a:+.{decimals}f}, {b:+.{decimals}f})"


def solutions_frame(result: dict, decimals: int = 4) -> pd.DataFrame:
    """The four solutions (s_1, s_2 coordinates and R(S)) of `solve`, rounded for display."""
    rows = []
    for strategy in ("classwise", "collective"):
        for how in ("closed", "numeric"):
            s = result[f"{strategy}_{how}"]
            rows.append(
                {
                    "matching": "class-wise (Eq. 6)"
                    if strategy == "classwise"
                    else "class-collective (Eq. 8)",
                    "solution": "closed form" if how == "closed" else "optimised Eq. 4",
                    "s1": _point(s[0], decimals),
                    "s2": _point(s[1], decimals),
                    "R(S)": round(ratio(s), decimals),
                }
            )
    return pd.DataFrame(rows)


def ratio_curve(
    ratios: list[float],
    alpha: float = 1.0,
    epsilon: float = 0.1,
    n: int = 100_000,
    seed: int = 0,
    steps: int = 300,
) -> pd.DataFrame:
    """R(S) against beta/alpha: closed forms, the bound of Eq. 7, and the optimised solutions."""
    rows = []
    for r in ratios:
        task = Task(alpha=alpha, beta=r * alpha, epsilon=epsilon)
        res = solve(task, n=n, seed=seed, steps=steps)
        rows.append(
            {
                "beta/alpha": r,
                "class-wise, closed form, infinite data (Eq. 7)": classwise_ratio_closed_form(task),
                "class-wise, closed form, sample means (Eq. 6)": ratio(res["classwise_closed"]),
                "class-wise, optimised": ratio(res["classwise_numeric"]),
                "bound alpha/(alpha+beta)": ratio_bound(task),
                "class-collective, closed form (Eq. 9)": ratio(res["collective_closed"]),
                "class-collective, optimised": ratio(res["collective_numeric"]),
            }
        )
    return pd.DataFrame(rows)
