"""What the paper's own tables say about its claims, computed from ``paper_results`` (never typed).

The notebooks print these sentences instead of stating them in prose, so they cannot drift from
the numbers: how often DCC beats DC (and DSAC beats DSA) in Table 2, where it does not, the largest
gain; how the bi-level warm-up compares with none (Table 4) and with Simple (Table 5).
"""

from __future__ import annotations

import pandas as pd

from dcclib.lab.paper_results import WARMUP_LABELS, dataset_label, paper_table

TWINS = (("dcc", "dc"), ("dsac", "dsa"))  # (contrastive method, its class-wise twin)


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
