"""Figure 4: the kernel velocity of the synthetic set during condensation (Fort et al., 2020).

The paper's kernel is "the Gram matrix of the Jacobian of the gradient matching loss with
respect to the synthetic data samples". The loss L(S) is a scalar, so its Jacobian with respect
to the N synthetic samples is the gradient dL/dS reshaped to J [N, D] (one row per sample), and
the kernel is K = J J^T [N, N]: K[n, m] says how much the update directions of samples n and m
overlap. Fort et al. define the kernel distance and the kernel velocity

    S(t, t') = 1 - <K_t, K_t'>_F / (||K_t||_F ||K_t'||_F),     v(t) = S(t, t + dt) / dt;

S is 0 when the kernel keeps its shape (scale does not count), 1 when it turns orthogonal. Time
is counted in image updates and dt is `lag` of them (1 by default: v = S of consecutive updates).

Our reading, stated because the paper gives no formula: "full" is the N x N kernel above. The
"classwise" variant keeps only same-class pairs (the block diagonal of K), i.e. one Gram per
class: DC's loss is a sum of per-class terms, each of which moves only its own class's samples,
so one may read "the kernel" per class. Both are offered; notebook 08 plots the one its
`kernel` parameter names ("full" by default).

Recording is an observer of `condense(..., observer=...)`: one small Gram and one scalar per
image update, computed on the device; nothing leaves the device until `trace()`.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from dcclib.condense import CondenseConfig, CondenseResult, StepInfo, condense
from dcclib.data import ImageDataset
from dcclib.errors import UserError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

KINDS = ("full", "classwise")


# ---------------------------------------------------------------------------------------------
# The math (pure functions)
# ---------------------------------------------------------------------------------------------
def gram(jacobian: Tensor) -> Tensor:
    """K = J J^T for J = jacobian.flatten(1) [N, D] (one row per synthetic sample).

    J is first divided by its Frobenius norm: the velocity ignores scale, and tiny gradients
    would otherwise underflow in the squares of float32.
    """
    j = jacobian.detach().flatten(1).float()
    j = j / j.norm().clamp_min(torch.finfo(j.dtype).tiny)
    return j @ j.T


def classwise_gram(jacobian: Tensor, labels: Tensor) -> Tensor:
    """The block-diagonal part of `gram(jacobian)`: entries of same-class pairs only."""
    if labels.shape != (jacobian.shape[0],):
        raise UserError(f"{labels.numel()} labels for {jacobian.shape[0]} synthetic samples")
    same = labels.view(-1, 1) == labels.view(1, -1)
    return gram(jacobian) * same


def kernel_velocity(k_a: Tensor, k_b: Tensor, dt: float = 1.0) -> Tensor:
    """S / dt with S = 1 - cosine of two kernels in the Frobenius inner product (batched).

    NaN where either kernel is zero (the direction, and so the velocity, is undefined).
    """
    if dt <= 0:
        raise UserError(f"dt must be positive, got {dt}")
    if k_a.shape != k_b.shape:
        raise UserError(f"kernels of different shapes {tuple(k_a.shape)} and {tuple(k_b.shape)}")
    a, b = k_a.flatten(-2).double(), k_b.flatten(-2).double()
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb)
    return torch.where((na > 0) & (nb > 0), (1 - cos) / dt, torch.full_like(cos, float("nan")))


def velocity_series(kernels: Tensor, lag: int = 1) -> Tensor:
    """v between kernels[t - lag] and kernels[t] (dt = lag) for t = lag..T-1: shape [T - lag]."""
    if lag < 1:
        raise UserError(f"lag must be at least 1, got {lag}")
    return kernel_velocity(kernels[:-lag], kernels[lag:], dt=lag)


# ---------------------------------------------------------------------------------------------
# Recording during condensation
# ---------------------------------------------------------------------------------------------
@dataclass
class VelocityTrace:
    """Per image update: its outer/inner index, the loss kind, and the velocity since `lag` ago.

    velocity[s] compares the kernel of update s with that of update s - lag (NaN for s < lag).
    """

    outer: np.ndarray
    inner: np.ndarray
    classwise: np.ndarray  # True where DC's class-wise loss was used
    velocity: np.ndarray
    kind: str
    lag: int

    @property
    def steps(self) -> np.ndarray:
        """The image-update index of each velocity: 0, 1, 2, ..."""
        return np.arange(len(self.velocity))

    def reinit_steps(self) -> np.ndarray:
        """Updates that are the first on a freshly initialised network (the first one excluded)."""
        return np.flatnonzero((self.inner == 0) & (self.steps > 0))

    def peaks(self) -> np.ndarray:
        """The velocity at each re-initialisation: the largest value of the first `lag` updates
        on the new network (these compare a kernel of the new network with one of the old)."""
        out = []
        for s in self.reinit_steps():
            window = self.velocity[s : s + self.lag]
            out.append(np.nanmax(window) if np.isfinite(window).any() else np.nan)
        return np.asarray(out, dtype=float)

    def within_network(self) -> np.ndarray:
        """Velocities whose two kernels come from the same network (no re-initialisation between)."""
        same = np.zeros(len(self.velocity), dtype=bool)
        same[self.lag :] = self.outer[self.lag :] == self.outer[: -self.lag]
        return self.velocity[same & np.isfinite(self.velocity)]

    def as_result(self) -> dict:
        """JSON-ready (NaN as None), for the results store."""
        return {
            "kind": self.kind,
            "lag": self.lag,
            "outer": self.outer.tolist(),
            "inner": self.inner.tolist(),
            "classwise": self.classwise.tolist(),
            "velocity": [None if not np.isfinite(v) else float(v) for v in self.velocity],
        }

    @classmethod
    def from_result(cls, r: dict) -> VelocityTrace:
        """The trace from its results-store form (as_result's dict; None as NaN)."""
        velocity = np.asarray([np.nan if v is None else v for v in r["velocity"]], dtype=float)
        return cls(
            np.asarray(r["outer"], dtype=np.int64),
            np.asarray(r["inner"], dtype=np.int64),
            np.asarray(r["classwise"], dtype=bool),
            velocity,
            r["kind"],
            int(r["lag"]),
        )

    def rows(self) -> list[dict]:
        """One row per image update (step, outer, inner, class-wise flag, velocity), for a table."""
        return [
            {
                "step": int(s),
                "outer": int(o),
                "inner": int(i),
                "classwise": bool(c),
                "velocity": None if not np.isfinite(v) else float(v),
            }
            for s, o, i, c, v in zip(self.steps, self.outer, self.inner, self.classwise, self.velocity)
        ]


class KernelRecorder:
    """Observer for `condense`: the kernel of every image update and its velocity, on device.

    Keeps only the last `lag` kernels (an N x N Gram each) plus one 0-d tensor per update, so a
    paper-length run (10^4 updates) costs a few kilobytes; `keep_kernels=True` keeps them all
    (for tests and small runs).
    """

    def __init__(
        self,
        kind: str = "full",
        labels: Tensor | None = None,
        lag: int = 1,
        keep_kernels: bool = False,
    ) -> None:
        if kind not in KINDS:
            raise UserError(f"unknown kernel kind '{kind}'; choose one of: {', '.join(KINDS)}")
        if kind == "classwise" and labels is None:
            raise UserError("the classwise kernel needs the synthetic labels")
        if lag < 1:
            raise UserError(f"lag must be at least 1, got {lag}")
        self.kind, self.labels, self.lag, self.keep_kernels = kind, labels, lag, keep_kernels
        self._recent: deque[Tensor] = deque(maxlen=lag)
        self._velocities: list[Tensor] = []
        self._meta: list[tuple[int, int, bool]] = []
        self.kernels: list[Tensor] = []

    def __call__(self, info: StepInfo) -> None:
        if self.kind == "full":
            k = gram(info.grad)
        else:
            k = classwise_gram(info.grad, self.labels.to(info.grad.device))
        if len(self._recent) == self.lag:
            self._velocities.append(kernel_velocity(self._recent[0], k, dt=self.lag))
        else:
            self._velocities.append(k.new_full((), float("nan"), dtype=torch.float64))
        self._recent.append(k)
        self._meta.append((info.outer, info.inner, info.classwise))
        if self.keep_kernels:
            self.kernels.append(k)

    def __len__(self) -> int:
        return len(self._meta)

    def trace(self) -> VelocityTrace:
        """Everything recorded so far, on the host (the one synchronisation)."""
        velocity = torch.stack(self._velocities).cpu().numpy() if self._velocities else np.zeros(0)
        meta = np.asarray(self._meta, dtype=np.int64).reshape(-1, 3)
        return VelocityTrace(
            outer=meta[:, 0],
            inner=meta[:, 1],
            classwise=meta[:, 2].astype(bool),
            velocity=velocity.astype(float),
            kind=self.kind,
            lag=self.lag,
        )


def track_velocity(
    cfg: CondenseConfig,
    data: ImageDataset,
    kind: str = "full",
    lag: int = 1,
    progress: bool = False,
) -> tuple[VelocityTrace, CondenseResult]:
    """Condense with a KernelRecorder attached; returns the trace and the condensation result."""
    labels = torch.arange(data.num_classes, device=data.device).repeat_interleave(cfg.ipc)
    recorder = KernelRecorder(kind, labels if kind == "classwise" else None, lag)
    result = condense(cfg, data, progress=progress, observer=recorder)
    return recorder.trace(), result


def summarise(trace: VelocityTrace) -> dict:
    """Numbers for a table: mean peak at re-initialisation vs the mean within a network."""
    peaks, within = trace.peaks(), trace.within_network()
    return {
        "updates": int(len(trace.velocity)),
        "reinitialisations": int(len(peaks)),
        "mean_peak": float(np.nanmean(peaks)) if len(peaks) else float("nan"),
        "max_peak": float(np.nanmax(peaks)) if len(peaks) else float("nan"),
        "mean_within_network": float(within.mean()) if len(within) else float("nan"),
    }


_VELOCITY_STYLES = (
    {"marker": "o", "linestyle": "-"},
    {"marker": "s", "linestyle": "--"},
    {"marker": "^", "linestyle": ":"},
    {"marker": "D", "linestyle": "-."},
)


def plot_velocity(
    traces: dict[str, VelocityTrace | list[VelocityTrace]], ax: Axes | None = None, mark_reinit: bool = True
) -> Axes:
    """Velocity against image-update step, one line per method (its own colour, line style and
    markers, so lines that coincide stay visible); dotted lines at re-inits. A list of traces (runs
    of one method) is drawn as their mean with a ± std band."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    first = None
    for i, (label, got) in enumerate(traces.items()):
        runs = got if isinstance(got, list) else [got]
        if not runs:
            continue
        first = runs[0] if first is None else first
        length = min(len(t.velocity) for t in runs)
        stacked = np.stack([t.velocity[:length] for t in runs])
        steps = runs[0].steps[:length]
        style = _VELOCITY_STYLES[i % len(_VELOCITY_STYLES)]
        with warnings.catch_warnings():  # steps before `lag` are NaN in every run
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stacked, axis=0)
            std = np.nanstd(stacked, axis=0)
        text = label if len(runs) == 1 else f"{label} (mean ± std, {len(runs)} runs)"
        (line,) = ax.plot(
            steps, mean, lw=1.2, ms=max(3.0, 5.5 - i), markevery=max(1, length // 40), label=text, **style
        )
        if len(runs) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    if mark_reinit and first is not None:
        for i, s in enumerate(first.reinit_steps()):
            ax.axvline(s, color="grey", ls=":", lw=0.8, label="network re-initialised" if i == 0 else None)
    ax.set_xlabel("image update")
    ax.set_ylabel("kernel velocity")
    ax.legend(fontsize=8)
    return ax
