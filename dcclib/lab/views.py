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
    """A paper-shaped view: each cell 'ours ± std (runs×networks) · paper P ± s (Δ d)'; Δ only
    where comparable; '[stale]' where the result comes from an older algorithm version
    (--allow-stale). The rows' notes travel with the view (a 'notes' column), so the Markdown
    table says what the numbers are (stand-in data, reduced settings, another source)."""

    def cell(r: pd.Series) -> str:
        if math.isnan(r["ours"]):
            text = "-"
        else:
            nets = r["n"] // r["runs"] if r.get("runs") else r["n"]
            text = f"{_fmt(r['ours'])} ± {_fmt(r['ours std'])} ({r['runs']}×{nets})"
        if not math.isnan(r["paper"]):
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


def image_grid(
    ax: Axes,
    images: torch.Tensor,
    data: ImageDataset,
    per_row: int,
    title: str = "",
    labels: torch.Tensor | list[int] | None = None,
) -> None:
    """Show images on `ax`, `per_row` to a row (denormalised to pixels), labelled with class names.

    `labels`: the images' classes; None: the images are class-blocked, an equal number per class
    (as condensed sets and `sample_real` give them). Where every grid row holds one class (one
    class per row, per_row = img/cls) its name is written left of the row; where every column
    holds one class (one image per class in a row) the names go under the columns; else each row
    lists its classes. No names where the classes cannot be told (a count that does not split
    evenly into the classes)."""
    from torchvision.utils import make_grid

    pixels = data.denormalise(images.detach().float().cpu())
    grid = make_grid(pixels, nrow=per_row, padding=1, pad_value=1.0)
    ax.imshow(
        grid.permute(1, 2, 0).squeeze(-1).numpy(),
        cmap="gray" if grid.shape[0] == 1 else None,
        interpolation="nearest",
    )
    ax.set_title(title)
    ax.axis("off")
    classes = _image_classes(len(images), data.num_classes, labels)
    if classes:
        _label_grid(ax, classes, per_row, list(data.class_names), tuple(images.shape[-2:]))


def _image_classes(n: int, num_classes: int, labels: torch.Tensor | list[int] | None) -> list[int] | None:
    """Each image's class: `labels`, or class-blocked equal counts; None where neither fits."""
    if labels is not None:
        out = [int(v) for v in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
        return out if len(out) == n else None
    if n == 0 or num_classes <= 0 or n % num_classes:
        return None
    per_class = n // num_classes
    return [i // per_class for i in range(n)]


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _label_grid(ax: Axes, classes: list[int], per_row: int, names: list[str], size: tuple[int, int]) -> None:
    """Class names beside make_grid's rows (or under its columns), in the image's pixel coordinates."""
    n = len(classes)
    cols = min(per_row, n)
    nrows = math.ceil(n / cols)
    pad = 1 if n > 1 else 0  # make_grid returns a single image as it is, unpadded
    h, w = size
    rows = [classes[r * cols : (r + 1) * cols] for r in range(nrows)]
    columns = [classes[c::cols] for c in range(cols)]

    def name(c: int) -> str:
        return _short(names[c]) if 0 <= c < len(names) else str(c)

    if all(len(set(r)) == 1 for r in rows):
        for r, row in enumerate(rows):
            y = pad + r * (h + pad) + (h - 1) / 2
            ax.text(-1.5, y, name(row[0]), ha="right", va="center", fontsize=7)
    elif all(len(set(c)) == 1 for c in columns):
        bottom = pad + nrows * (h + pad) - 0.5
        long = max(len(name(c[0])) for c in columns) > 10
        for i, col in enumerate(columns):
            x = pad + i * (w + pad) + (w - 1) / 2
            ax.text(
                x,
                bottom + 1,
                name(col[0]),
                ha="right" if long else "center",
                va="top",
                fontsize=6,
                rotation=45 if long else 0,
                rotation_mode="anchor",
            )
    else:
        for r, row in enumerate(rows):
            y = pad + r * (h + pad) + (h - 1) / 2
            text = ", ".join(name(c) for c in dict.fromkeys(row))
            ax.text(-1.5, y, _short(text, 40), ha="right", va="center", fontsize=6)


def half_shares(change: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class, the share of the summed |change| of its images that lies in the left half."""
    w = change.shape[-1]
    mag = change.abs().sum(dim=1)  # [N, H, W]
    out = []
    for c in range(num_classes):
        m = mag[labels == c]
        out.append(float(m[..., : w // 2].sum() / m.sum().clamp(min=1e-12)))
    return out


OURS_LABEL = "ours (mean ± std)"
PAPER_LABEL = "paper (mean ± std)"
REFERENCE_LABEL = "reference, DC/DSA papers (mean ± std)"


def _isnan(v: object) -> bool:
    try:
        return v is None or math.isnan(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def paper_marker(row: pd.Series) -> str | None:
    """How a row's paper number is drawn beside its bar: 'paper' (the DCC paper, where the row is
    comparable: a difference), 'reference' (another paper's number, the note says 'reference:'),
    or None: never beside stand-in data, nor at another img/cls than ours, nor without a number."""
    note = row.get("note")
    note = note if isinstance(note, str) else ""
    if _isnan(row.get("paper")) or "stand-in" in note or "paper's number is at" in note:
        return None
    if "reference:" in note:
        return "reference"
    return None if _isnan(row.get("difference")) else "paper"


def plot_comparison(df: pd.DataFrame, x: str = "method", hue: str = "ipc", title: str = "") -> Figure:
    """Bars of our accuracies with error bars (std over runs × networks; one panel per paper
    dataset) and the paper's number as a black diamond with its std, only where the comparison
    is meaningful (`paper_marker`: never beside stand-in data); another paper's reference number
    as an open diamond. n (runs × networks) is in the panel title, or on each bar where it
    differs; 'reduced settings' notes go to the panel title. Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    panels = list(dict.fromkeys(df["dataset"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1.5, 3.9), squeeze=False)
    for ax, name in zip(axes[0], panels):
        part = df[df["dataset"] == name]
        ran = part[part["ours"].notna()]
        lines = [
            str(name),
            "; ".join(dict.fromkeys(str(u) for u in part.get("data used", pd.Series(dtype=str)))),
        ]
        notes = [
            p.strip() for n in part.get("note", pd.Series(dtype=str)).dropna() for p in str(n).split(";")
        ]
        lines += list(dict.fromkeys(p for p in notes if p.startswith("reduced settings")))
        if ran.empty:
            ax.text(0.5, 0.5, "not run (data missing)", ha="center", va="center", transform=ax.transAxes)
        else:
            counts = _comparison_bars(ax, ran, x, hue)
            if counts:
                lines.append(counts)
        ax.set_title("\n".join(line for line in lines if line), fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_xlabel(x)
    profile = df["profile"].iloc[0] if "profile" in df and len(df) else ""
    fig.suptitle(title or f"profile {profile}", fontsize=10)
    fig.tight_layout()
    return fig


def _comparison_bars(ax: Axes, ran: pd.DataFrame, x: str, hue: str) -> str:
    """One panel's bars, error bars, paper markers and legend; returns the 'n = ...' title line
    ('' where n differs between bars: then each bar carries its own)."""
    import matplotlib.transforms as mtransforms
    import numpy as np
    import seaborn as sns
    from matplotlib.patches import Patch

    nan = pd.Series(math.nan, index=ran.index)
    # a column that differs between rows sharing (x, hue) joins the hue, so no two rows share a bar
    # (a column that only follows x, like the warm-up of DCC next to DC's, does not)
    pairs = ran.assign(_x=ran[x].astype(str), _h=ran[hue].astype(str)).groupby(["_x", "_h"])
    extra = [
        c
        for c in ("ipc", "method", "model", "warm-up", "data used")
        if c not in (x, hue) and c in ran and pairs[c].nunique().max() > 1
    ]
    keys = [str(r[hue]) + "".join(f", {c} {r[c]}" for c in extra) for _, r in ran.iterrows()]
    cats = list(dict.fromkeys(str(v) for v in ran[x]))
    levels = list(dict.fromkeys(keys))
    width = 0.8 / len(levels)
    colours = sns.color_palette("crest", len(levels))
    pos = np.array([cats.index(str(v)) - 0.4 + width * (levels.index(k) + 0.5) for v, k in zip(ran[x], keys)])
    colour = [colours[levels.index(k)] for k in keys]
    means = ran["ours"].to_numpy(float)
    stds = ran.get("ours std", nan).to_numpy(float)
    ns = ran.get("n", pd.Series(pd.NA, index=ran.index)).tolist()
    ax.bar(pos, means, width * 0.92, color=colour, zorder=2)
    handles: list = [Patch(color=colours[i], label=lv) for i, lv in enumerate(levels)]
    has = np.isfinite(stds)
    if has.any():
        ours = ax.errorbar(
            pos[has],
            means[has],
            yerr=stds[has],
            fmt="none",
            ecolor="0.15",
            elinewidth=1,
            capsize=3,
            zorder=3,
            label=OURS_LABEL,
        )
        handles.append(ours)
    markers = [paper_marker(r) for _, r in ran.iterrows()]
    for kind, label, face in (("paper", PAPER_LABEL, "black"), ("reference", REFERENCE_LABEL, "white")):
        mine = np.array([m == kind for m in markers])
        if not mine.any():
            continue
        values = ran["paper"].to_numpy(float)[mine]
        errors = ran.get("paper std", nan).to_numpy(float)[mine]
        drawn = ax.errorbar(
            pos[mine],
            values,
            yerr=errors,  # NaN: no bar (the paper gives no std)
            fmt="D",
            color="black",
            mfc=face,
            mec="black",
            ms=5,
            elinewidth=1.2,
            capsize=3,
            zorder=4,
            label=label,
        )
        handles.append(drawn)
    ax.set_xticks(range(len(cats)), cats)
    ax.set_xlim(-0.5, len(cats) - 0.5)
    ax.set_ylim(bottom=0)
    title = f"{hue}" + "".join(f", {c}" for c in extra)
    ax.legend(
        handles=handles, title=title, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7, title_fontsize=7
    )
    known = [int(n) for n in ns if not pd.isna(n)]
    if not known:
        return ""
    if len(set(known)) == 1:
        return f"n = {known[0]} (runs × networks) per bar"
    base = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for p, n in zip(pos, ns):
        if not pd.isna(n):
            ax.text(
                p,
                0.015,
                f"n={int(n)}",
                transform=base,
                ha="center",
                va="bottom",
                rotation=90,
                fontsize=6,
                color="white",
                zorder=5,
            )
    return ""


# Line plots: each series its own colour, marker and line style, so series that coincide stay
# visible (a marker of one inside another's), plus a small sideways offset of their points.
SERIES_STYLES = (
    {"marker": "o", "linestyle": "-"},
    {"marker": "s", "linestyle": "--"},
    {"marker": "^", "linestyle": ":"},
    {"marker": "D", "linestyle": "-."},
    {"marker": "v", "linestyle": (0, (5, 1))},
    {"marker": "P", "linestyle": (0, (3, 1, 1, 1, 1, 1))},
)


def series_style(i: int) -> dict:
    """Colour, marker and line style of the i-th series (markers shrink, lines thin, down the list,
    so a series drawn later on top of an earlier one leaves the earlier one's edge visible)."""
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    style = SERIES_STYLES[i % len(SERIES_STYLES)]
    return {
        **style,
        "color": colours[i % len(colours)],
        "markersize": max(4.0, 7.5 - 1.0 * i),
        "linewidth": 1.6,
    }


def plot_series(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    series: str,
    err: str | None = None,
    label: str = "{series}",
    dodge: float = 0.08,
) -> Axes:
    """One line per value of `series` (in order of appearance): y against x, the mean over the
    frame's rows sharing (series, x) with their std as error bars (`err`: a column with the std
    instead, for a frame already aggregated). Non-numeric x are categories in order of appearance.
    Points are offset sideways by `dodge` (a share of the x spacing) so series that coincide
    stay visible. The legend says 'mean ± std over n' where several rows were averaged."""
    import numpy as np

    if frame.empty:
        return ax
    numeric = pd.api.types.is_numeric_dtype(frame[x])
    cats = list(dict.fromkeys(frame[x])) if not numeric else None
    names = list(dict.fromkeys(frame[series]))
    values = sorted(set(frame[x])) if numeric else list(range(len(cats)))
    gap = float(np.min(np.diff(values))) if len(values) > 1 else 1.0
    for i, name in enumerate(names):
        g = frame[frame[series] == name]
        stats = g.groupby(x, sort=numeric)[y].agg(["mean", "std", "count"])
        if err is not None:
            stats["std"] = g.groupby(x, sort=numeric)[err].first()
        pos = np.asarray(stats.index if numeric else [cats.index(v) for v in stats.index], dtype=float)
        pos = pos + dodge * gap * (i - (len(names) - 1) / 2)
        n = int(stats["count"].max())
        text = label.format(series=name)
        if err is None and n > 1:
            text += f" (mean ± std, n={n})"
        elif err is not None:
            text += " (mean ± std)"
        yerr = stats["std"].to_numpy(float)
        ax.errorbar(
            pos,
            stats["mean"].to_numpy(float),
            yerr=yerr if np.isfinite(yerr).any() else None,  # NaN: one row, no bar
            capsize=3,
            elinewidth=1,
            label=text,
            **series_style(i),
        )
    if not numeric:
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return ax
