"""The computed half of a notebook's "Reading" cell: what the table's numbers say, in sentences.

`ordering_lines` states, per dataset and img/cls, the order of the methods by our mean and by the
paper's, and each contrastive method's gain over its class-wise counterpart (DCC over DC, DSAC
over DSA) next to the paper's gain, with the number of runs x networks behind it. The static
half (what the numbers cannot show) is the notebook's own Markdown.
"""

from __future__ import annotations

import math

import pandas as pd

PAIRS = (("DCC", "DC"), ("DSAC", "DSA"))  # (contrastive, its class-wise counterpart)


def _order(part: pd.DataFrame, column: str) -> str:
    ranked = part.dropna(subset=[column]).sort_values(column, ascending=False)
    return " > ".join(f"{r['method']} {r[column]:.1f}" for _, r in ranked.iterrows()) or "-"


def ordering_lines(
    table: pd.DataFrame, group: tuple[str, ...] = ("dataset", "data used", "ipc")
) -> list[str]:
    """One block of sentences per group of the tidy comparison table (views.comparison_frame)."""
    lines = []
    for key, part in table.groupby(list(group), sort=False):
        ran = part.dropna(subset=["ours"])
        head = ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        if ran.empty:
            lines.append(f"{head}: not run here.")
            continue
        n = ", ".join(
            sorted(
                {
                    f"{int(r['runs'])} run(s) x {int(r['n'] // max(r['runs'], 1))} networks"
                    for _, r in ran.iterrows()
                }
            )
        )
        lines.append(f"{head} ({n}):")
        lines.append(f"  ours:  {_order(ran, 'ours')}")
        if ran["paper"].notna().any():
            lines.append(f"  paper: {_order(ran, 'paper')}")
        means = dict(zip(ran["method"], ran["ours"]))
        paper = dict(zip(part["method"], part["paper"]))
        for new, old in PAIRS:
            if new in means and old in means:
                gain = means[new] - means[old]
                ref = paper.get(new, math.nan) - paper.get(old, math.nan)
                ref_text = f" (paper {ref:+.1f})" if not math.isnan(ref) else ""
                lines.append(f"  {new} - {old}: {gain:+.1f} points{ref_text}")
    return lines
