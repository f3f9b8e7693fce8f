"""Tables shared by the notebooks: ours next to the paper.

`comparison_frame` is the tidy ours-vs-paper table (one row per cell, accuracies in percent, the
difference only where the comparison means something: the paper's data, the paper's img/cls);
`rounded` and `wide_view` are its display forms; `half_shares` is Figure 3's per-class left-half
share. The figures (bar charts, image grids, line plots) are in `dcclib.lab.plots`, re-exported
here so the notebooks' imports from this module keep working.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from dcclib.lab.cells import Cell
from dcclib.lab.paper_results import MODEL_LABELS, WARMUP_LABELS, dataset_label, paper_value
from dcclib.lab.plots import (  # noqa: F401  re-exported: notebooks and experiments import them from here
    OURS_LABEL,
    PAPER_LABEL,
    REFERENCE_LABEL,
    SERIES_STYLES,
    image_grid,
    paper_marker,
    plot_comparison,
    plot_series,
    series_style,
)
from dcclib.methods import LABELS

# Where the DCC paper has no number for a dataset (MNIST, Fashion-MNIST: not in its Table 2),
# a Table 2 cell is compared with the DC/DSA papers' published number (paper_results).
REFERENCE_NOTE = "reference: the DC/DSA papers (the DCC paper has no number for this dataset)"


def reference_value(c: Cell) -> tuple[tuple[float, float] | None, str]:
    """(mean, std) the cell is compared with, and where it comes from ('' for the DCC paper)."""
    value = paper_value(c.table, c.use.paper, c.compared_ipc, c.method, c.model, c.warmup)
    if value is None and c.table == "table2":
        other = paper_value("dc_dsa_reference", c.use.paper, c.compared_ipc, c.method, c.model, c.warmup)
        if other is not None:
            return other, REFERENCE_NOTE
    return value, ""


def comparison_frame(cells: list[Cell], profile: str) -> pd.DataFrame:
    """The tidy ours-vs-paper table: one row per cell (accuracies in percent)."""
    rows = []
    for c in cells:
        paper, source = reference_value(c)
        p_mean, p_std = paper if paper is not None else (math.nan, math.nan)
        comparable = not c.use.stand_in and (c.use.available or bool(c.source)) and c.compared_ipc == c.ipc
        notes = [source] if source and paper is not None else []
        if profile != "paper" and c.accuracies:
            notes.append(f"reduced settings (profile {profile})")
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
    """A paper-shaped view: each cell 'ours ± std (runs×networks) · paper P ± s (Δ d)'; the paper's
    number only beside ours on the paper's data (never beside a stand-in), Δ only where comparable;
    '[stale]' where the result comes from an older algorithm version
    (--allow-stale). The rows' notes travel with the view (a 'notes' column), so the Markdown
    table says what the numbers are (stand-in data, reduced settings, another source)."""

    def cell(r: pd.Series) -> str:
        if math.isnan(r["ours"]):
            text = "-"
        else:
            nets = r["n"] // r["runs"] if r.get("runs") else r["n"]
            text = f"{_fmt(r['ours'])} ± {_fmt(r['ours std'])} ({r['runs']}×{nets})"
        stand_in = "stand-in" in str(r.get("data used", "")) or "stand-in" in str(r.get("note", ""))
        if not math.isnan(r["paper"]) and not stand_in:  # a stand-in's number never sits beside the paper's
            digits = 2 if round(r["paper"], 1) != r["paper"] else 1
            text += f" · paper {_fmt(r['paper'], digits)}"
            if not math.isnan(r.get("paper std", math.nan)):
                text += f" ± {_fmt(r['paper std'])}"
        if not math.isnan(r["difference"]):
            text += f" (Δ {_fmt(r['difference'], sign=True)})"
        if "stale:" in str(r.get("note", "")):
            text += " [stale]"  # an older algorithm version's result (--allow-stale)
        return text

    view = df.assign(value=[cell(r) for _, r in df.iterrows()])
    out = view.pivot_table(index=index, columns=columns, values="value", aggfunc="first", sort=False)
    out.columns.name = None
    out = out.reset_index()
    if "note" in df.columns:
        notes = view.groupby(index, sort=False)["note"].agg(_joined_notes).reset_index()
        out = out.merge(notes.rename(columns={"note": "notes"}), on=index, how="left")
    return out


def _joined_notes(notes: pd.Series) -> str:
    """The distinct notes of a view row, each once (the parts of 'a; b' counted separately)."""
    parts = [p.strip() for n in notes for p in str(n).split(";") if p.strip()]
    return "; ".join(dict.fromkeys(parts))


def half_shares(change: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class, the share of the summed |change| of its images that lies in the left half."""
    w = change.shape[-1]
    mag = change.abs().sum(dim=1)  # [N, H, W]
    out = []
    for c in range(num_classes):
        m = mag[labels == c]
        out.append(float(m[..., : w // 2].sum() / m.sum().clamp(min=1e-12)))
    return out
