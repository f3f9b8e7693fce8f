"""Where tables and figures go: CSV + Markdown, PNG + SVG, each with a JSON record under meta/.

``Lab.save_table`` / ``Lab.save_figure`` call these; ``dcclib.lab.reports`` lists the records
in reports/index.md. The output folder is $DCC_REPORTS_DIR, else reports/ in the repository.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from dcclib import io
from dcclib.lab.store import repo_root

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORTS_ENV = "DCC_REPORTS_DIR"


def default_reports_dir() -> Path:
    """$DCC_REPORTS_DIR if set, else reports/ in the checkout (or the working folder)."""
    env = os.environ.get(REPORTS_ENV)
    if env:
        return Path(env).expanduser()
    return (repo_root() or Path.cwd()) / "reports"


# ------------------------------------------------------------------------------------- writers
def _record(out: Path, stem: str, kind: str, title: str, files: list[Path], meta: dict) -> None:
    rec = {
        "kind": kind,
        "title": title,
        "files": [str(f.relative_to(out)) for f in files],
        **{k: v for k, v in meta.items() if k != "output_dir"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    io.write_json(out / "meta" / f"{stem}.{kind}.json", rec)


def labels_line(meta: dict) -> str:
    """The line under a table's title: profile, device, the data used, and whether it shows stale results."""
    data = "; ".join(meta.get("data") or ["-"])
    line = f"profile {meta['profile']} · device {meta['device']} · data: {data}"
    if meta.get("stale"):  # results of an older algorithm version, reused on purpose (--allow-stale)
        line += f" · STALE: reuses results of {', '.join(meta['stale'])} (now {meta.get('algorithm')})"
    return line


def write_table(df: pd.DataFrame, view: pd.DataFrame, stem: str, title: str, meta: dict) -> list[Path]:
    """tables/<stem>.csv (the tidy frame) and tables/<stem>.md (the view, with its labels)."""
    out = Path(meta["output_dir"])
    csv, md = out / "tables" / f"{stem}.csv", out / "tables" / f"{stem}.md"
    io.write_text(csv, df.to_csv(index=False))
    body = (view if isinstance(view.index, pd.RangeIndex) else view.reset_index()).to_markdown(index=False)
    io.write_text(md, f"# {title}\n\n{labels_line(meta)}\n\n{body}\n")
    _record(out, stem, "table", title, [md, csv], meta)
    return [md, csv]


def write_figure(fig: Figure, stem: str, title: str, meta: dict) -> list[Path]:
    """figures/<stem>.png and .svg (written atomically)."""
    out = Path(meta["output_dir"])
    paths = []
    for fmt in ("png", "svg"):
        path = out / "figures" / f"{stem}.{fmt}"
        with io.atomic_path(path) as tmp:
            fig.savefig(
                tmp,
                format=fmt,
                dpi=150,
                bbox_inches="tight",
                metadata={"Date": None} if fmt == "svg" else None,
            )
        paths.append(path)
    _record(out, stem, "figure", title, paths, meta)
    return paths
