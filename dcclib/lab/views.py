"""Tables and figures shared by the notebooks: ours next to the paper, image grids, bar charts.

`comparison_frame` is the tidy ours-vs-paper table (one row per cell, accuracies in percent, the
difference only where the comparison means something: the paper's data, the paper's img/cls);
`rounded` and `wide_view` are its display forms; the plots use seaborn's style.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
import torch

from dcclib.data import ImageDataset
from dcclib.lab.cells import Cell
from dcclib.lab.paper_results import MODEL_LABELS, WARMUP_LABELS, dataset_label, paper_value
from dcclib.methods import LABELS

if TYPE_CHECKING:  # for the hints only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def comparison_frame(cells: list[Cell], profile: str) -> pd.DataFrame:
    """The tidy ours-vs-paper table: one row per cell (accuracies in percent)."""
    rows = []
    for c in cells:
        paper = paper_value(c.table, c.use.paper, c.compared_ipc, c.method, c.model, c.warmup)
        p_mean, p_std = paper if paper is not None else (math.nan, math.nan)
        comparable = not c.use.stand_in and (c.use.available or bool(c.source)) and c.compared_ipc == c.ipc
        notes = []
        if c.use.stand_in:
            notes.append("stand-in data: not comparable with the paper")
        if c.compared_ipc != c.ipc:
            notes.append(f"paper's number is at {c.compared_ipc} img/cls")
        if not c.accuracies:
            notes.append("not run: data missing" if not c.use.available else "no result")
        if c.source:
            notes.append(c.source)
        rows.append(
            {
                "table": c.table,
                "profile": profile,
                "dataset": dataset_label(c.use.paper),
                "data used": c.use.label,
                "ipc": c.ipc,
                "method": LABELS[c.method],
                "model": MODEL_LABELS.get(c.model, c.model),
                "warm-up": WARMUP_LABELS[c.warmup],
                "ours": c.mean,
                "ours std": c.std,
                "runs": c.runs,
                "n": len(c.accuracies),
                "paper": p_mean,
                "paper std": p_std,
                "difference": c.mean - p_mean if comparable and c.accuracies else math.nan,
                "note": "; ".join(notes),
            }
        )
    return pd.DataFrame(rows)


def _fmt(v: float, decimals: int = 1, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.{decimals}f}" if sign else f"{v:.{decimals}f}"


def rounded(df: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """The tidy table for display: numbers as fixed-decimal strings, '-' where there is none."""
    out = df.drop(columns=["table", "profile", "runs"], errors="ignore").copy()
    for col in ("ours", "ours std"):
        out[col] = [_fmt(v, decimals) for v in out[col]]
    out["paper"] = [_fmt(v, 2 if round(v, 1) != v else 1) if not math.isnan(v) else "-" for v in df["paper"]]
    out["paper std"] = [_fmt(v, 1) for v in df["paper std"]]
    out["difference"] = [_fmt(v, decimals, sign=True) for v in df["difference"]]
    return out


def wide_view(df: pd.DataFrame, index: list[str], columns: str) -> pd.DataFrame:
    """A paper-shaped view: each cell 'ours ± std · paper P (Δ d)'; Δ only where comparable;
    '[stale]' where the result comes from an older algorithm version (--allow-stale)."""

    def cell(r: pd.Series) -> str:
        text = f"{_fmt(r['ours'])} ± {_fmt(r['ours std'])}" if not math.isnan(r["ours"]) else "-"
        if not math.isnan(r["paper"]):
            text += f" · paper {_fmt(r['paper'], 2 if round(r['paper'], 1) != r['paper'] else 1)}"
        if not math.isnan(r["difference"]):
            text += f" (Δ {_fmt(r['difference'], sign=True)})"
        if "stale:" in str(r.get("note", "")):
            text += " [stale]"  # an older algorithm version's result (--allow-stale)
        return text

    view = df.assign(value=[cell(r) for _, r in df.iterrows()])
    out = view.pivot_table(index=index, columns=columns, values="value", aggfunc="first", sort=False)
    out.columns.name = None
    return out.reset_index()


def image_grid(ax: Axes, images: torch.Tensor, data: ImageDataset, per_row: int, title: str = "") -> None:
    """Show class-blocked images on `ax`, one class per row (denormalised to pixels)."""
    from torchvision.utils import make_grid

    grid = make_grid(data.denormalise(images.detach().float().cpu()), nrow=per_row, padding=1, pad_value=1.0)
    ax.imshow(
        grid.permute(1, 2, 0).squeeze(-1).numpy(),
        cmap="gray" if grid.shape[0] == 1 else None,
        interpolation="nearest",
    )
    ax.set_title(title)
    ax.axis("off")


def half_shares(change: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class, the share of the summed |change| of its images that lies in the left half."""
    w = change.shape[-1]
    mag = change.abs().sum(dim=1)  # [N, H, W]
    out = []
    for c in range(num_classes):
        m = mag[labels == c]
        out.append(float(m[..., : w // 2].sum() / m.sum().clamp(min=1e-12)))
    return out


def plot_comparison(df: pd.DataFrame, x: str = "method", hue: str = "ipc", title: str = "") -> Figure:
    """Bars of our accuracies (one panel per paper dataset); the paper's number as a black
    marker only where the comparison is meaningful (not for stand-ins). Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    panels = list(dict.fromkeys(df["dataset"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1, 3.6), squeeze=False)
    for ax, name in zip(axes[0], panels):
        part = df[df["dataset"] == name].assign(**{hue: lambda d: d[hue].astype(str)})
        ran = part.dropna(subset=["ours"])
        if ran.empty:
            ax.text(0.5, 0.5, "not run (data missing)", ha="center", va="center", transform=ax.transAxes)
        else:
            hue_order = list(dict.fromkeys(ran[hue]))
            sns.barplot(
                data=ran, x=x, y="ours", hue=hue, hue_order=hue_order, ax=ax, palette="crest", errorbar=None
            )
            # the paper's number on top of the matching bar (bars sit around their category's index)
            paper = {(str(r[x]), r[hue]): r["paper"] for _, r in ran.dropna(subset=["difference"]).iterrows()}
            ticks = [t.get_text() for t in ax.get_xticklabels()]
            for level, container in zip(hue_order, ax.containers):
                for bar in container:
                    centre = bar.get_x() + bar.get_width() / 2
                    value = paper.get((ticks[round(centre)], level))
                    if value is not None:
                        ax.plot(centre, value, "k_", ms=14, mew=2)
            if paper:
                ax.plot([], [], "k_", ms=14, mew=2, label="paper")
            ax.legend(title=hue, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8, title_fontsize=8)
        used = "; ".join(dict.fromkeys(part["data used"]))
        ax.set_title(f"{name}\n{used}", fontsize=9)
        ax.set_ylabel("test accuracy (%)")
        ax.set_xlabel(x)
    fig.suptitle(title or f"profile {df['profile'].iloc[0]}", fontsize=10)
    fig.tight_layout()
    return fig
