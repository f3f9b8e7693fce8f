"""What the paper's own tables say about its claims, computed from ``paper_results`` (never typed).

The notebooks print these sentences instead of stating them in prose, so they cannot drift from
the numbers: how often DCC beats DC (and DSAC beats DSA) in Table 2, where it does not, the largest
gain; how the bi-level warm-up compares with none (Table 4) and with Simple (Table 5).
"""

from __future__ import annotations

import math

import pandas as pd

from dcclib.lab.paper_results import WARMUP_LABELS, dataset_label, paper_table
from dcclib.methods import CLASSWISE_TWIN

TWINS = tuple(CLASSWISE_TWIN.items())  # (contrastive method, its class-wise twin)


def twin_gaps(table: str = "table2") -> pd.DataFrame:
    """Per dataset, img/cls and pair: the paper's contrastive minus class-wise accuracy."""
    t = paper_table(table).dropna(subset=["ipc"])
    rows = []
    for (dataset, ipc), part in t.groupby(["dataset", "ipc"], sort=False):
        by = part.set_index("method")["mean"]
        for twin, base in TWINS:
            if twin in by.index and base in by.index:
                rows.append(
                    {
                        "dataset": dataset,
                        "ipc": int(ipc),
                        "twin": twin,
                        "base": base,
                        "ours_twin": float(by[twin]),
                        "ours_base": float(by[base]),
                        "gap": round(float(by[twin]) - float(by[base]), 2),
                    }
                )
    return pd.DataFrame(rows)


def _cell(r: pd.Series) -> str:
    return f"{dataset_label(r.dataset)} {r.ipc} img/cls ({r.ours_twin:g} vs {r.ours_base:g})"


def twin_claim_lines(table: str = "table2") -> list[str]:
    """One sentence per pair: in how many cells the contrastive method is above, level, below."""
    lines = []
    g = twin_gaps(table)
    for (twin, base), part in g.groupby(["twin", "base"], sort=False):
        above, level, below = part[part.gap > 0], part[part.gap == 0], part[part.gap < 0]
        best = part.loc[part.gap.idxmax()]
        text = (
            f"The paper's {table.replace('table', 'Table ')}: {twin.upper()} above {base.upper()} in "
            f"{len(above)} of {len(part)} cells (largest gain {best.gap:+.1f}: {_cell(best)})"
        )
        ones = part[part.ipc == 1]
        if len(ones):
            top = ones.loc[ones.gap.idxmax()]
            text += f"; at 1 img/cls most on {dataset_label(top.dataset)} ({top.gap:+.1f})"
        if len(level):
            text += "; level in " + ", ".join(_cell(r) for r in level.itertuples())
        if len(below):
            text += "; below in " + ", ".join(_cell(r) for r in below.itertuples())
        lines.append(text + ".")
    return lines


def versus_lines(table: str = "table2", first: str = "dcc", second: str = "dsa") -> list[str]:
    """Where `first` is below `second` in the paper (e.g. DCC below DSA: DCC has no augmentation)."""
    t = paper_table(table).dropna(subset=["ipc"])
    below = []
    for (dataset, ipc), part in t.groupby(["dataset", "ipc"], sort=False):
        by = part.set_index("method")["mean"]
        if first in by.index and second in by.index and by[first] < by[second]:
            below.append(f"{dataset_label(dataset)} {int(ipc)} img/cls ({by[first]:g} vs {by[second]:g})")
    if not below:
        return [f"The paper: {first.upper()} is never below {second.upper()}."]
    return [f"The paper: {first.upper()} below {second.upper()} in " + ", ".join(below) + "."]


def warmup_lines() -> list[str]:
    """Table 4 (bi-level warm-up against none) and Table 5 (None, Simple, Proposed) in sentences."""
    lines = []
    t4 = paper_table("table4")
    for method, part in t4.groupby("method", sort=False):
        cells = part.pivot_table(index=["dataset", "ipc"], columns="warmup", values="mean")
        gain = (cells["bilevel"] - cells["none"]).round(2)
        worse = [
            f"{dataset_label(d)} {int(i)} img/cls ({cells.loc[(d, i), 'bilevel']:g} with, "
            f"{cells.loc[(d, i), 'none']:g} without)"
            for (d, i), v in gain.items()
            if v < 0
        ]
        helps = int((gain > 0).sum())
        text = f"The paper's Table 4, {method.upper()}: the warm-up helps in {helps} of {len(gain)} cells"
        lines.append(text + (f"; it does not in {', '.join(worse)}." if worse else "."))
    t5 = paper_table("table5")
    for (method, dataset, ipc), part in t5.groupby(["method", "dataset", "ipc"], sort=False):
        row = part.set_index("warmup")["mean"].sort_values(ascending=False)
        order = ", ".join(f"{WARMUP_LABELS[w]} {v:g}" for w, v in row.items())
        lines.append(
            f"The paper's Table 5, {method.upper()} on {dataset_label(dataset)} {int(ipc)} img/cls: {order} "
            f"(best: {WARMUP_LABELS[row.index[0]]})."
        )
    return lines


def contradictions(df: pd.DataFrame) -> list[str]:
    """Where our table contradicts the paper's claim that a contrastive method beats its class-wise
    twin: per dataset and img/cls of a tidy comparison frame (columns method, ours, ours std, n),
    a twin more than two standard errors below its base. One phrase per such cell."""
    need = {"method", "ours", "ours std", "n", "dataset", "ipc"}
    if not need <= set(df.columns):
        return []
    out = []
    labels = {m.upper(): m for pair in TWINS for m in pair}
    frame = df.assign(key=df["method"].astype(str).str.upper().map(labels)).dropna(subset=["key", "ours"])
    for (dataset, ipc), part in frame.groupby(["dataset", "ipc"], sort=False):
        by = part.drop_duplicates("key").set_index("key")
        for twin, base in TWINS:
            if twin not in by.index or base not in by.index:
                continue
            t, b = by.loc[twin], by.loc[base]
            se = math.sqrt(
                float(t["ours std"]) ** 2 / float(t["n"]) + float(b["ours std"]) ** 2 / float(b["n"])
            )
            gap = float(t["ours"]) - float(b["ours"])
            if gap < -2 * se:
                out.append(
                    f"{twin.upper()} - {base.upper()} {gap:+.1f} +- {2 * se:.1f} on {dataset} {ipc} img/cls"
                )
    return out


# ------------------------------------------------------------------ the figures' qualitative claims
def _figure3(df: pd.DataFrame) -> tuple[bool, str]:
    """Figure 3: class-collective matching changes the images more where 3 and 8 differ (the left
    half; the right half once the 3s are flipped) than class-wise matching does."""
    parts, holds = [], True
    for setting, part in df.groupby("setting", sort=False):
        left = part.groupby("method")["left-half share of the change"].mean()
        side, share = ("right", 1 - left) if "flip" in str(setting) else ("left", left)
        if not {"DC", "DCC"} <= set(share.index):
            continue
        holds &= bool(share["DCC"] > share["DC"])
        parts.append(  # the side where the two classes differ
            f"{setting}: share of the change on the {side} half, "
            f"DCC {share['DCC']:.3f} vs DC {share['DC']:.3f}"
        )
    return holds, "; ".join(parts)


def _figure4(df: pd.DataFrame) -> tuple[bool, str]:
    """Figure 4: DCC's kernel-velocity peaks at re-initialisation are higher than DC's."""
    by = df.set_index("method")["mean_peak"]
    ratio = float(by["DCC"] / by["DC"])
    return ratio > 1, f"DCC's mean peak / DC's {ratio:.2f} (the paper: DCC's peaks much higher)"


# table stem -> (its figure's stem, the check); a check sees the table's tidy CSV
FIGURE_CLAIMS = {
    "02_figure3_half_shares": ("02_figure3", _figure3),
    "08_figure4_velocity": ("08_figure4", _figure4),
}


def figure_claim(stem: str, df: pd.DataFrame) -> tuple[bool, str] | None:
    """(whether ours support the paper's claim, the numbers) for a table that carries one, or None
    (no claim, or the columns it needs are missing)."""
    entry = FIGURE_CLAIMS.get(stem)
    if entry is None:
        return None
    try:
        return entry[1](df)
    except (KeyError, ValueError, ZeroDivisionError):
        return None
