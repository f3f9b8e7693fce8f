"""Figures shared by the notebooks: ours-vs-paper bar charts, image grids, line plots.

`plot_comparison` draws `comparison_frame`'s table as bars with the paper's number beside them
(only where `paper_marker` says the comparison means something); `image_grid` shows a set of
images with their class names; `plot_series` draws lines that stay visible where they coincide
(`series_style`). The plots use seaborn's style; matplotlib is imported where a figure is drawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
import torch

from dcclib.data import ImageDataset

if TYPE_CHECKING:  # for the hints only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
        if not np.isfinite(errors).any():  # no std given: the legend promises none
            label = label.replace(" (mean ± std)", " (mean; no std given)")
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
    crowded = len(cats) > 3  # long method names would run together
    ax.set_xticks(range(len(cats)), cats, rotation=30 if crowded else 0, ha="right" if crowded else "center")
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
