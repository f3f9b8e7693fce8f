"""Where tables and figures go: CSV + Markdown, PNG + SVG, each with a JSON record under meta/.

``Lab.save_table`` / ``Lab.save_figure`` call these; ``dcclib.lab.report_index`` lists the
records in reports/index.md. The output folder is $DCC_REPORTS_DIR, else reports/local/
(git-ignored): the shipped reports/ are replaced only by `python -m dcclib.lab.reports --publish`.

Every record carries a status (``table_status`` / ``figure_status``), one of:

- ``reproduced``: every compared cell is within the paper's band (below);
- ``differs``: some compared cell is outside it (by how much: mean and max |ours - paper|);
- ``not run``: nothing was computed here (the data are missing), with the command that runs it;
- ``not a reproduction``: the cells ran on stand-in data (profile smoke's embedded digits);
- ``shown``: a table or figure without a paper number to compare with (and its profile).

A comparison at a reduced profile (every profile but ``paper``) says so ("differs at reduced
settings (profile cpu): ..."): such numbers are not expected to match the paper's.

The band, defined here only (``BAND_STDS``, ``BAND_NO_STD``): a compared cell is within the
paper's band when |ours - paper| <= 2 x the paper's std, or <= 1.0 point where the paper gives no
std. A cell is compared where the tidy comparison frame (``dcclib.lab.views.comparison_frame``)
has a ``difference`` (real data, the paper's setting); stand-in and missing cells have none.

Records hold no absolute path of the machine that wrote them (``dcclib.lab.portable``).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dcclib import io
from dcclib.lab.paper_claims import contradictions, figure_claim
from dcclib.lab.portable import portable, portable_text
from dcclib.lab.store import repo_root

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORTS_ENV = "DCC_REPORTS_DIR"
LOCAL_REPORTS = "local"  # reports/local/: ad-hoc and re-rendered reports (git-ignored)

# The paper's band: |ours - paper| <= BAND_STDS x the paper's std, or BAND_NO_STD points where
# the paper gives no std. The one definition (reports/index.md quotes BAND_TEXT).
BAND_STDS = 2.0
BAND_NO_STD = 1.0
BAND_TEXT = (
    f"a compared cell is within the paper's band when |ours − paper| ≤ {BAND_STDS:g} × the paper's "
    f"std ({BAND_NO_STD:.1f} point where the paper gives no std)"
)
FULL_PROFILE = "paper"  # every other profile runs reduced settings
RUNNER = "python -m dcclib.lab.reports"


def shipped_reports_dir() -> Path:
    """reports/ in the checkout (or the working folder): the reports the project ships."""
    return (repo_root() or Path.cwd()) / "reports"


def default_reports_dir() -> Path:
    """Where a run writes unless told: $DCC_REPORTS_DIR if set, else reports/local/ (git-ignored,
    beside the shipped reports, never over them; `python -m dcclib.lab.reports --publish` is
    the one way to replace a shipped report)."""
    env = os.environ.get(REPORTS_ENV)
    if env:
        return Path(env).expanduser()
    return shipped_reports_dir() / LOCAL_REPORTS


# -------------------------------------------------------------------------------- statuses
def reduced(profile: str | None) -> bool:
    """Whether `profile` runs reduced settings (every profile but the paper's)."""
    return profile != FULL_PROFILE


def band(paper_std: float | None) -> float:
    """The half-width of the paper's band for a cell whose paper std is `paper_std` (points)."""
    if paper_std is None or (isinstance(paper_std, float) and math.isnan(paper_std)):
        return BAND_NO_STD
    return BAND_STDS * float(paper_std)


def within_band(difference: float, paper_std: float | None) -> bool:
    """|ours - paper| = |difference| is inside the paper's band."""
    return abs(difference) <= band(paper_std) + 1e-9


def not_run_command(notebook: str | None, profile: str | None) -> str:
    """The command that runs `notebook` with real data (at `profile`; quick for smoke)."""
    chosen = profile if profile and profile != "smoke" else "quick"
    only = f" --only {notebook[:2]}" if notebook else ""
    return f"{RUNNER} --profile {chosen}{only} --data-root DIR"


def _at(profile: str | None) -> str:
    return f" at reduced settings (profile {profile})" if reduced(profile) else ""


def _isnan(v: Any) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _is_stand_in(row: dict) -> bool:
    return "stand-in" in str(row.get("data used", "")) or "stand-in" in str(row.get("note", ""))


def is_comparison(df: pd.DataFrame) -> bool:
    """Whether `df` is a tidy ours-vs-paper frame (columns ours, paper, difference)."""
    return {"ours", "paper", "difference"} <= set(df.columns)


def table_status(
    df: pd.DataFrame, profile: str | None, notebook: str | None = None, data: list[str] | None = None
) -> dict:
    """The status of a table from its tidy frame (see the module's docstring); a frame without
    the columns ours, paper and difference gets ``data_status`` of its `data` labels."""
    if not is_comparison(df):
        return data_status(data or [], profile, notebook)
    rows = df.to_dict("records")
    ran = [r for r in rows if not _isnan(r["ours"])]
    missing = [r for r in rows if _isnan(r["ours"])]
    compared = [r for r in ran if not _isnan(r["difference"])]
    stand_in = [r for r in ran if _isnan(r["difference"]) and _is_stand_in(r)]
    counts = {
        "cells": len(rows),
        "compared": len(compared),
        "not_run": len(missing),
        "stand_in": len(stand_in),
        "without_paper_number": len(ran) - len(compared) - len(stand_in),
    }
    cmd = not_run_command(notebook, profile)
    if compared:
        diffs = [abs(float(r["difference"])) for r in compared]
        inside = sum(within_band(float(r["difference"]), r.get("paper std")) for r in compared)
        mean, worst = sum(diffs) / len(diffs), max(diffs)
        counts |= {"within": inside, "mean_abs_diff": round(mean, 2), "max_abs_diff": round(worst, 2)}
        n = len(compared)
        if inside == n:
            state = "reproduced"
            text = (
                f"reproduced{_at(profile)}: all {n} compared cell{'s' * (n != 1)} within the paper's band "
                f"(mean |Δ| {mean:.1f} points)"
            )
            if any("jpeg" in str(r.get("data used", "")).lower() for r in compared):
                text += "; CIFAR-10 from a lossy JPEG copy (cifar10-jpeg), not the original files"
        else:
            state = "differs"
            text = (
                f"differs{_at(profile)}: mean |Δ| {mean:.1f} points over {n} cell{'s' * (n != 1)} "
                f"({inside} within the paper's band, max |Δ| {worst:.1f})"
            )
        if missing:
            text += f"; {len(missing)} cell{'s' * (len(missing) != 1)} not run: `{cmd}`"
        return _with_claims({"state": state, "text": text, **counts}, df, profile, stand_in)
    if stand_in:
        return {"state": "not a reproduction", "text": _stand_in_text(profile), **counts}
    if not ran:
        names = sorted({str(r.get("dataset", "")) for r in missing} - {""})
        where = f" (no data here for {', '.join(names)})" if names else ""
        return {"state": "not run", "text": f"not run{where}: `{cmd}`", "command": cmd, **counts}
    text = f"shown (profile {profile}; no paper number to compare at these settings)"
    if missing:
        text += f"; {len(missing)} cell{'s' * (len(missing) != 1)} not run: `{cmd}`"
    return _with_claims({"state": "shown", "text": text, **counts}, df, profile, stand_in)


def _with_claims(status: dict, df: pd.DataFrame, profile: str | None, stand_in: list) -> dict:
    """`status`, turned into "contradicts the paper's claim" where a contrastive method (DCC,
    DSAC) is more than two standard errors below its class-wise twin (DC, DSA) in our cells (the
    paper claims the opposite; ``paper_claims.contradictions``). Stand-in cells prove nothing."""
    if stand_in:
        return status
    found = contradictions(df)
    if not found:
        return status
    where = _at(profile) or " at the paper's settings"
    text = f"contradicts the paper's claim{where}: {'; '.join(found)}; besides, {status['text']}"
    return {**status, "state": "contradicts", "text": text, "contradictions": found}


def computed_status(
    stem: str,
    df: pd.DataFrame,
    profile: str | None,
    notebook: str | None = None,
    data: list[str] | None = None,
) -> dict:
    """The status of table `stem` computed from its data (``table_status``), checked against the
    qualitative claim of the paper's figure it draws where it has one (``claim_status``)."""
    return {**claim_status(stem, df, table_status(df, profile, notebook, data), profile), "computed": True}


def claim_status(stem: str, df: pd.DataFrame, status: dict, profile: str | None) -> dict:
    """`status` of table `stem`, checked against the qualitative claim of the paper's figure it
    draws, where it has one (``paper_claims.FIGURE_CLAIMS``); stand-in data prove nothing."""
    claim = figure_claim(stem, df)
    if claim is None or status.get("state") in ("not a reproduction", "not run"):
        return status
    holds, numbers = claim
    where = _at(profile)
    head = "consistent with the paper's claim" if holds else "contradicts the paper's claim"
    return {**status, "state": "consistent" if holds else "contradicts", "text": f"{head}{where}: {numbers}"}


def _stand_in_text(profile: str | None) -> str:
    return f"not a reproduction (stand-in data, profile {profile})"


def data_status(data: list[str], profile: str | None, notebook: str | None = None) -> dict:
    """The status of an output without paper numbers, from the labels of the data it used."""
    labels = [str(d) for d in data or []]
    if labels and all("not available here" in d for d in labels):
        cmd = not_run_command(notebook, profile)
        names = ", ".join(d.split(":")[0] for d in labels)
        return {"state": "not run", "text": f"not run (no data here for {names}): `{cmd}`", "command": cmd}
    if any("stand-in" in d for d in labels):
        return {"state": "not a reproduction", "text": _stand_in_text(profile)}
    return {"state": "shown", "text": f"shown (profile {profile}; no paper number to compare)"}


def figure_status(meta: dict) -> dict:
    """A figure's status: the one its record gives, else ``data_status`` of its data."""
    given = meta.get("status")
    if isinstance(given, dict) and "text" in given:
        return given
    if isinstance(given, str) and given:
        return {"state": given.split(" (")[0].split(":")[0], "text": given}
    return data_status(meta.get("data") or [], meta.get("profile"), meta.get("notebook"))


# ------------------------------------------------------------------------------------- writers
def _record(out: Path, stem: str, kind: str, title: str, files: list[Path], meta: dict) -> dict:
    rec = {
        "kind": kind,
        "title": title,
        "files": [f.relative_to(out).as_posix() for f in files],
        **{k: v for k, v in meta.items() if k != "output_dir"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    rec = portable(rec)
    io.write_json(out / "meta" / f"{stem}.{kind}.json", rec)
    return rec


def labels_line(meta: dict) -> str:
    """The line under a table's title: profile, device, the data used, and whether it shows stale results."""
    data = "; ".join(meta.get("data") or ["-"])
    line = f"profile {meta['profile']} · device {meta['device']} · data: {data}"
    if meta.get("settings"):  # the profile's reductions, for outputs made by condensing or evaluating
        line += f" · settings: {meta['settings']}"
    if meta.get("stale"):  # results of an older algorithm version, reused on purpose (--allow-stale)
        line += f" · STALE: reuses results of {', '.join(meta['stale'])} (now {meta.get('algorithm')})"
    return line


def write_table(df: pd.DataFrame, view: pd.DataFrame, stem: str, title: str, meta: dict) -> list[Path]:
    """tables/<stem>.csv (the tidy frame) and tables/<stem>.md (the view, with its labels and status)."""
    out = Path(meta["output_dir"])
    csv, md = out / "tables" / f"{stem}.csv", out / "tables" / f"{stem}.md"
    given = meta.get("status")  # the notebook's own statement (Lab.save_table(status=...)) comes first
    status = (
        figure_status(meta)
        if given
        else computed_status(stem, df, meta.get("profile"), meta.get("notebook"), meta.get("data"))
    )
    io.write_text(csv, df.to_csv(index=False))
    body = (view if isinstance(view.index, pd.RangeIndex) else view.reset_index()).to_markdown(index=False)
    head = f"# {title}\n\n{labels_line(meta)}\n\nstatus: {status['text']}\n\n"
    io.write_text(md, portable_text(head) + f"{body}\n")
    _record(out, stem, "table", title, [md, csv], {**meta, "status": status})
    return [md, csv]


def write_not_run(kind: str, stem: str, title: str, meta: dict) -> dict:
    """A record only, for a table or figure whose data are not here: nothing is drawn, and the
    index lists it as not run with the command that runs it (``data_status``)."""
    status = data_status(meta.get("data") or [], meta.get("profile"), meta.get("notebook"))
    return _record(Path(meta["output_dir"]), stem, kind, title, [], {**meta, "stem": stem, "status": status})


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
    _record(out, stem, "figure", title, paths, {**meta, "status": figure_status(meta)})
    return paths
