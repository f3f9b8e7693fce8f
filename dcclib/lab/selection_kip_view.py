"""Notebook 11's outputs from a `SelectionKIP` (``dcclib.lab.selection_kip``): the comparison with
the paper's Table 2, KIP's own kernel-regression measure, and a picture of the sets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from torch import Tensor

from dcclib.data import ImageDataset
from dcclib.lab.cells import Cell
from dcclib.lab.paper_results import paper_value

if TYPE_CHECKING:  # for the hints only
    from matplotlib.figure import Figure

    from dcclib.lab.selection_kip import SelectionKIP


def with_notes(
    table: pd.DataFrame, cells: list[Cell], why_not: dict[tuple[str, str, int], str], eval_model: str
) -> pd.DataFrame:
    """`table` (``Lab.compare(cells)``, one row per cell) with each empty cell's reason
    (`why_not`, by paper dataset, method, ipc) in its note and, when the evaluation network is not
    ConvNet, the paper's ConvNet number for orientation (never a difference). Changes `table`."""
    for (d, m, ipc), why in why_not.items():
        hit = [(c.use.paper, c.method, c.ipc) == (d, m, ipc) for c in cells]
        table.loc[hit, "note"] = why
    if eval_model != "convnet":
        for i, c in enumerate(cells):
            paper = paper_value("table2", c.use.paper, c.ipc, c.method, "convnet")
            if paper is not None:
                table.loc[i, ["paper", "paper std", "difference"]] = [*paper, float("nan")]
                note = f"paper: ConvNet, ours: {eval_model}"
                table.loc[i, "note"] = "; ".join(filter(None, [table.loc[i, "note"], note]))
    return table


def kip_row(record: dict, accuracies: list[float], model: str) -> dict[str, str]:
    """The measures of one KIP run: kernel ridge regression test accuracy (its store `record`),
    the mean of the evaluation network's `accuracies` (percent) and the first and last KIP loss."""
    losses = record["result"]["losses"]
    return {
        "KRR test accuracy (%)": f"{100 * record['result']['krr_accuracy']:.1f}",
        f"{model} test accuracy (%)": f"{sum(accuracies) / len(accuracies):.1f}",
        "KIP loss, first step": f"{losses[0][1]:.4f}",
        "KIP loss, last step": f"{losses[-1][1]:.4f}",
    }


def kip_table(study: SelectionKIP, plan: dict, cells: list[Cell]) -> pd.DataFrame:
    """KIP's own measure next to the evaluation network's accuracy (`kip_row`): one row per KIP
    run of `plan` whose set is stored and whose cell in `cells` holds its networks."""
    lab, model, n = study.lab, study.settings.eval_model, study.lab.profile.num_nets
    rows = []
    for d in plan["datasets"]:
        for ipc in plan["ipcs"]:
            if "kip" not in plan["methods"] or study.data[d] is None:
                continue
            for r in range(lab.profile.num_runs):
                rec = lab.store.get(study.set_config(d, "kip", ipc, r))
                if rec is None:
                    continue
                ours = next(c for c in cells if c.use.paper == d and c.method == "kip" and c.ipc == ipc)
                if len(ours.accuracies) < (r + 1) * n:
                    continue
                where = {"dataset": d, "data used": study.uses[d].label, "ipc": ipc, "run": r}
                rows.append({**where, **kip_row(rec, ours.accuracies[r * n : (r + 1) * n], model)})
    return pd.DataFrame(rows)


def sets_figure(shown: list[tuple[str, Tensor]], data: ImageDataset, title: str) -> Figure:
    """One row of images per set (``SelectionKIP.shown_sets``: one image per class), under `title`."""
    import matplotlib.pyplot as plt

    from dcclib.lab.plots import image_grid

    fig, axes = plt.subplots(len(shown), 1, figsize=(0.9 * data.num_classes, 1.3 * len(shown)), squeeze=False)
    for ax, (m, images) in zip(axes[:, 0], shown):
        image_grid(ax, images, data, data.num_classes, m)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
