"""Notebook 13's reading: gaps between each contrastive method and its class-wise twin, what
explains them (image-gradient size, how far the images move), the status against the paper's
claim, and the figure. Display only: the numbers come from `dcclib.lab.convergence`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from dcclib.condense_config import PAPER_OUTER
from dcclib.lab.paper_results import dataset_label, paper_value
from dcclib.lab.profiles import Profile
from dcclib.methods import CLASSWISE_TWIN, CONDENSATION_METHODS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAIRS = tuple((base, twin) for twin, base in CLASSWISE_TWIN.items())  # (class-wise, contrastive twin)
# The paper's numbers at K_o = 1000, 1 img/cls: its Table 2 (CIFAR-10), else the DC/DSA papers'
# (MNIST; the DCC paper reports no MNIST row).
PAPER_SOURCES = ("table2", "dc_dsa_reference")


def paper_point(dataset: str, method: str) -> tuple[float, str] | None:
    """(accuracy, source) the paper's K_o = 1000 run reaches at 1 img/cls, or None."""
    for table in PAPER_SOURCES:
        hit = paper_value(table, dataset, 1, method)
        if hit is not None:
            return hit[0], "DCC paper, Table 2" if table == "table2" else "DC/DSA papers"
    return None


def gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Contrastive minus class-wise accuracy (DCC - DC, DSAC - DSA) at every point, with the
    standard error of that difference over the evaluation networks (one condensation run each)."""
    rows = []
    for (dataset, k), part in frame.groupby(["dataset", "K_o"], sort=True):
        by = part.set_index("method")
        for base, twin in PAIRS:
            if base not in by.index or twin not in by.index:
                continue
            b, t = by.loc[base], by.loc[twin]
            se = math.sqrt(b.acc_std**2 / b.networks + t.acc_std**2 / t.networks)
            rows.append(
                {
                    "dataset": dataset,
                    "pair": f"{twin.upper()} - {base.upper()}",
                    "K_o": int(k),
                    "gap": t.acc_mean - b.acc_mean,
                    "se": se,
                    "collective_updates": int(t.collective_updates),
                    "image_updates": int(t.image_updates),
                }
            )
    return pd.DataFrame(rows)


def explaining_ratios(paths: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and pair, over the networks where the contrastive run matched collectively:
    the mean image-gradient norm of the twin / the class-wise method's, and the ratio of the
    distances the two sets moved from their (identical) initialisation by the last network both
    runs have."""
    rows = []
    for dataset, part in paths.groupby("dataset", sort=True):
        for base, twin in PAIRS:
            b, t = part[part.method == base], part[part.method == twin]
            if b.empty or t.empty:
                continue
            nets = t.network[t.collective_steps > 0]
            if nets.empty:
                continue
            nets = nets[nets <= b.network.max()]  # networks both runs have (a run may be partly stored)
            if nets.empty:
                continue
            last = int(nets.max())
            grad_b = b.grad_norm[b.network.isin(nets)].mean()
            grad_t = t.grad_norm[t.network.isin(nets)].mean()
            moved_b = float(b.moved[b.network == last].iloc[0])
            moved_t = float(t.moved[t.network == last].iloc[0])
            rows.append(
                {
                    "dataset": dataset,
                    "pair": f"{twin.upper()} / {base.upper()}",
                    "networks": f"{int(nets.min())}-{int(nets.max())}",
                    "grad_norm_ratio": grad_t / grad_b,
                    "moved_ratio": moved_t / moved_b,
                    "moved_class_wise": moved_b,
                    "moved_contrastive": moved_t,
                }
            )
    return pd.DataFrame(rows)


def _verdict(gap: float, se: float) -> str:
    if gap < -2 * se:
        return "below"
    if gap > 2 * se:
        return "above"
    return "within noise of"


def reading_lines(frame: pd.DataFrame, paths: pd.DataFrame) -> list[str]:
    """The computed half of the Reading: gaps along K_o, what explains them, the paper's target."""
    lines = []
    g = gaps(frame)
    for (dataset, pair), part in g.groupby(["dataset", "pair"], sort=False):
        steps = ", ".join(f"{r.K_o}: {r.gap:+.1f}" for r in part.itertuples())
        last = part.iloc[-1]
        twin, base = pair.split(" - ")
        lines.append(
            f"{dataset_label(dataset)}, {pair} by K_o ({steps}); at K_o {last.K_o} {twin} is "
            f"{_verdict(last.gap, last.se)} {base} ({last.gap:+.1f} +- {2 * last.se:.1f}, two standard "
            f"errors over the evaluation networks; {last.collective_updates} of {last.image_updates} "
            f"image updates were class-collective)."
        )
        mark_twin, mark_base = paper_point(dataset, twin.lower()), paper_point(dataset, base.lower())
        if mark_twin and mark_base:
            lines.append(
                f"  the paper at K_o {PAPER_OUTER}: {twin} {mark_twin[0]:.1f} vs {base} {mark_base[0]:.1f} "
                f"({mark_twin[0] - mark_base[0]:+.1f}; {mark_twin[1]})."
            )
    for r in explaining_ratios(paths).itertuples():
        lines.append(
            f"{dataset_label(r.dataset)}, {r.pair} on networks {r.networks} (collective matching): "
            f"image-gradient norm x{r.grad_norm_ratio:.2f}; distance moved from the initial set by network "
            f"{r.networks.split('-')[1]} x{r.moved_ratio:.2f} "
            f"({r.moved_contrastive:.1f} vs {r.moved_class_wise:.1f}, L2)."
        )
    return lines


def study_status(frame: pd.DataFrame, reduced: bool) -> str:
    """The study's status against the paper's claim (DCC >= DC, DSAC >= DSA at 1 img/cls), from
    the longest point of each pair: 'contradicts the paper's claim' where a contrastive method is
    more than two standard errors below its twin there, 'no difference measurable' where every
    pair is within two, 'consistent with' where none is below and one is above; 'not a
    reproduction' on stand-in data."""
    g = gaps(frame)
    if g.empty:
        return "not run: no pair of a class-wise method and its contrastive twin in the store"
    last = g.sort_values("K_o").groupby(["dataset", "pair"], sort=True).tail(1)
    parts = [
        f"{r.pair} {r.gap:+.1f} +- {2 * r.se:.1f} on {dataset_label(r.dataset)} at K_o {r.K_o}"
        for r in last.itertuples()
    ]
    dcc, dc = paper_point("cifar10", "dcc"), paper_point("cifar10", "dc")
    paper = f"the paper: DCC - DC {dcc[0] - dc[0]:+.1f} on CIFAR-10 at K_o {PAPER_OUTER}"
    detail = f"({'; '.join(parts)}; {paper})"
    if frame["data"].str.contains("stand-in").any():
        return f"not a reproduction: stand-in data {detail}"
    verdicts = {_verdict(r.gap, r.se) for r in last.itertuples()}
    where = "at reduced settings" if reduced else "at the paper's settings"
    if "below" in verdicts:
        head = f"contradicts the paper's claim {where}"
    elif "above" in verdicts:
        head = f"consistent with the paper's claim {where}"
    else:
        head = f"no difference measurable {where}"
    return f"{head} {detail}"


def plot_study(frame: pd.DataFrame, paths: pd.DataFrame, title: str) -> Figure:
    """Accuracy against K_o (the paper's K_o = 1000 marked, with its numbers where it has them and
    the data are the paper's, not a stand-in), the image-gradient norm and the distance from the
    initial set per network, per dataset."""
    import textwrap

    import matplotlib.pyplot as plt

    show_paper = not frame["data"].str.contains("stand-in").any()
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(3, len(datasets), figsize=(max(6.5, 5.2 * len(datasets)), 10.5), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(CONDENSATION_METHODS)}
    for col, dataset in enumerate(datasets):
        acc, grad, moved = axes[0, col], axes[1, col], axes[2, col]
        for method, part in frame[frame.dataset == dataset].groupby("method", sort=False):
            style = {"color": colours.get(method), "label": method.upper()}
            acc.errorbar(part.K_o, part.acc_mean, yerr=part.acc_std, marker="o", capsize=3, **style)
            mark = paper_point(dataset, method)
            if mark is not None and show_paper:
                acc.plot(
                    [PAPER_OUTER], [mark[0]], marker="*", markersize=12, linestyle="", color=style["color"]
                )
            path = paths[(paths.dataset == dataset) & (paths.method == method)]
            grad.plot(path.network, path.grad_norm, **style)
            moved.plot(path.network, path.moved, **style)
        acc.axvline(PAPER_OUTER, color="grey", linestyle="--", linewidth=1)
        note = " paper's K_o\n (stars: its numbers)" if show_paper else " paper's K_o"
        acc.text(PAPER_OUTER, acc.get_ylim()[0], note, fontsize=8, va="bottom", ha="right")
        acc.set_xscale("log")
        acc.set(
            xlabel="outer iterations K_o (networks)", ylabel="test accuracy (%)", title=dataset_label(dataset)
        )
        grad.set(xlabel="network", ylabel="mean |d loss / d images| per update", yscale="log")
        moved.set(xlabel="network", ylabel="L2 distance from the initial set")
        # fixed places (loc="best" warns when it is slow, which depends on the machine's speed);
        # the accuracy panel has the same colours as the two below it
        for ax, loc in ((grad, "upper right"), (moved, "upper left")):
            ax.legend(fontsize=8, loc=loc)
    fig.suptitle("\n".join(textwrap.wrap(title, 60 * len(datasets))), fontsize=9)
    fig.tight_layout()
    return fig


def settings_line(profile: Profile, studies: tuple) -> str:
    """The settings of a study's outputs: the profile's per-step reductions, and K_o as the
    table's column (one run of the longest K_o per method, gamma_o a quarter of it)."""
    points = sorted({k for s in studies for k in s.points})
    longest = "; ".join(
        f"{max(s.points)} for {', '.join(dict.fromkeys(m.upper() for _, m in s.runs))}" for s in studies
    )
    base = profile.reductions().split(": ", 1)[1]
    per_step = ", ".join(p for p in base.split(", ") if not p.startswith(("K_o", "gamma_o")))
    return (
        f"profile {profile.name}: K_o {points[0]}-{points[-1]} of {PAPER_OUTER} (checkpoints of one run of "
        f"K_o {longest}; gamma_o a quarter of it), {per_step}"
    )
