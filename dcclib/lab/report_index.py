"""reports/index.md: every executed notebook, table and figure, with its profile and status.

``write_index`` reads the JSON records under reports/meta/ (one per notebook run, table and
figure: ``dcclib.lab.reports`` and ``dcclib.lab.writers`` write them) and renders the index: the
profile each notebook ran at and why, the status of every table and figure (a figure drawn from
a compared table shares that table's status), the notebooks with their parameters, the cost of
each notebook at each profile (reports/meta/costs.json, ``update_costs``, kept by the runner),
and a section per table and figure. It holds no absolute path of the machine
(``dcclib.lab.portable``).
"""

from __future__ import annotations

import os
from pathlib import Path

from dcclib import io
from dcclib.lab.paper_claims import FIGURE_CLAIMS
from dcclib.lab.portable import portable_text
from dcclib.lab.profiles import PROFILES
from dcclib.lab.writers import BAND_TEXT, computed_status, figure_status, labels_line

COSTS_FILE = "costs.json"  # reports/meta/costs.json: notebook -> profile -> last cost
RECORD_SUFFIXES = (".run.json", ".table.json", ".figure.json")
FIGURE_OF = {table: figure for table, (figure, _) in FIGURE_CLAIMS.items()}  # table -> figure stem


# ------------------------------------------------------------------------------------- costs


def update_costs(costs: dict, notebook: str, profile: str, seconds: float, device: str, date: str) -> dict:
    """`costs` (notebook -> profile -> {seconds, device, date}) with this run's cost in: each
    profile keeps its best (fastest) run, so a re-render on a slower machine does not replace it."""
    out = {nb: dict(by) for nb, by in costs.items()}
    best = out.setdefault(notebook, {}).get(profile)
    if best is None or seconds < best["seconds"]:
        out[notebook][profile] = {"seconds": round(seconds, 1), "device": device, "date": date}
    return out


def format_seconds(seconds: float) -> str:
    """12 s, 14 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def costs_table(costs: dict) -> list[str]:
    """The Markdown table notebook x profile of `costs` (the best successful run of each)."""
    if not costs:
        return []
    seen = {p for by in costs.values() for p in by}
    profiles = [p for p in PROFILES if p in seen] + sorted(seen - set(PROFILES))
    lines = [f"| notebook | {' | '.join(profiles)} |", "|---" * (len(profiles) + 1) + "|"]
    for nb in sorted(costs):
        cells = []
        for p in profiles:
            c = costs[nb].get(p)
            cells.append(f"{format_seconds(c['seconds'])} ({c['device']}, {c['date']})" if c else "-")
        lines.append(f"| {nb} | {' | '.join(cells)} |")
    return lines


def read_costs(out: Path) -> dict:
    path = out / "meta" / COSTS_FILE
    return io.read_json(path) if path.is_file() else {}


def device_label(device: str) -> str:
    """The device of a run for the cost table: 'cuda: <GPU name>' or 'cpu: N cores'."""
    if device.startswith("cuda"):
        try:
            import torch

            return f"cuda: {torch.cuda.get_device_name()}"
        except Exception:  # no CUDA after all (the notebook failed): the type is enough
            return device
    return f"cpu: {os.cpu_count()} cores"


# ----------------------------------------------------------------------------------- the index
def _records(out: Path) -> list[dict]:
    paths = sorted(p for p in (out / "meta").glob("*.json") if p.name.endswith(RECORD_SUFFIXES))
    return [r for r in (io.read_json(p) for p in paths) if isinstance(r, dict) and "kind" in r]


def record_status(rec: dict, out: Path) -> dict:
    """A table's or figure's status: a status the notebook stated, as stated; a table's computed
    status again from its CSV (so a newer rule, e.g. the paper's claims, applies to every table);
    else its record's, or its data's."""
    given = rec.get("status")
    computed = isinstance(given, dict) and (  # made from the data at render time, not stated
        given.get("computed") or "cells" in given or str(given.get("text", "")).startswith("shown (profile")
    )
    if isinstance(given, dict) and "text" in given and not (computed and rec["kind"] == "table"):
        return given
    if rec["kind"] == "table":
        csv = next((out / f for f in rec.get("files", []) if f.endswith(".csv")), None)
        if csv is not None and csv.is_file():
            import pandas as pd

            try:
                df = pd.read_csv(csv)
            except (ValueError, OSError):
                df = pd.DataFrame()
            return computed_status(_stem(rec), df, rec.get("profile"), rec.get("notebook"), rec.get("data"))
    return figure_status(rec)


def _cell(text: str) -> str:
    """`text` for a Markdown table cell (its | escaped, on one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _stem(rec: dict) -> str:
    if rec.get("stem"):  # a record without files (``write_not_run``)
        return rec["stem"]
    return Path(rec["files"][0]).stem if rec.get("files") else ""


def write_index(out: Path) -> Path:
    """reports/index.md: every executed notebook, table and figure, with profile, data, device,
    status, and the cost of each notebook at each profile."""
    recs = _records(out)
    runs = [r for r in recs if r["kind"] == "run"]
    statuses = {id(r): record_status(r, out) for r in recs if r["kind"] != "run"}
    compared = {
        (r.get("notebook"), _stem(r)): statuses[id(r)]
        for r in recs
        if r["kind"] == "table"
        and statuses[id(r)].get("state") in ("reproduced", "differs", "contradicts", "consistent", "not run")
    }
    for r in recs:  # a figure of a compared table (same name, or its FIGURE_CLAIMS figure) has its status
        key = (r.get("notebook"), _stem(r))
        key = next(((nb, t) for (nb, t) in compared if nb == key[0] and FIGURE_OF.get(t) == key[1]), key)
        if r["kind"] == "figure" and key in compared:
            table = compared[key]
            statuses[id(r)] = {**table, "text": f"as its table: {table['text']}"}
    lines = [
        "# Reports",
        "",
        "Written by `python -m dcclib.lab.reports` (`make reports`). Each entry names the profile it ran",
        "at, the device and the data it used, and its status: **reproduced** (every compared cell within",
        "the paper's band), **differs** (by how much), **contradicts the paper's claim** (a contrastive",
        "method more than two standard errors below its class-wise twin, or a figure's qualitative claim",
        "not borne out; by how much), **consistent** with a figure's claim, **not run** (with the command",
        "that runs it), **not a reproduction** (stand-in data), or **shown** (no paper number to compare",
        "with). The band:",
        f"{BAND_TEXT}. Every profile but `paper` runs reduced settings, and its statuses say so. At",
        "profile `smoke` the data are stand-ins (the embedded MNIST digits) and the loops are tiny: those",
        "numbers show that the pipeline runs; they are not reproductions of the paper.",
        "",
        "## Profile",
        "",
    ]
    chosen: dict[tuple, list[str]] = {}
    for r in runs:
        key = (r["profile"], r.get("profile_reason"), r.get("data_root"))
        chosen.setdefault(key, []).append(r["notebook"][:2])
    for (profile, reason, data_root), nbs in chosen.items():
        settings = getattr(PROFILES.get(profile), "reductions", lambda: "")().removeprefix(
            f"profile {profile}: "
        )
        why = "; ".join(
            [reason or "how it was chosen is not recorded", *([f"data root {data_root}"] * bool(data_root))]
        )
        lines.append(
            f"- profile **{profile}** for notebooks {', '.join(nbs)}: {why}"
            + (f". Settings: {settings}" if settings else "")
        )
    lines += [
        "",
        "## Status of every table and figure",
        "",
        "| output | notebook | status |",
        "|---|---|---|",
    ]
    for r in recs:
        if r["kind"] in ("table", "figure"):
            status = statuses[id(r)]["text"]
            lines.append(
                f"| {_cell(r['kind'] + ': ' + r['title'])} | {r.get('notebook', '-')} | {_cell(status)} |"
            )
    lines += [
        "",
        "## Notebooks",
        "",
        "| notebook | profile | device | status | seconds | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items()) or "defaults"
        lines.append(
            f"| [{r['notebook']}]({r['files'][0]}) | {r['profile']} | {r['device']} | "
            f"{_cell(r['status'])} | {r['seconds']:.0f} | {_cell(params)} |"
        )
    costs = costs_table(read_costs(out))
    if costs:
        lines += [
            "",
            "## Cost per notebook and profile",
            "",
            f"Wall time of the last successful run of each notebook at each profile (meta/{COSTS_FILE}).",
            "",
            *costs,
        ]
    for kind, heading in (("table", "Tables"), ("figure", "Figures")):
        lines += ["", f"## {heading}", ""]
        for r in (r for r in recs if r["kind"] == kind):
            links = " · ".join(f"[{Path(f).suffix[1:]}]({f})" for f in r["files"]) or "not drawn"
            lines += [f"### {r['title']}", "", f"{labels_line(r)} · notebook {r['notebook']} · {links}", ""]
            lines += [f"status: {statuses[id(r)]['text']}", ""]
            if kind == "figure" and r["files"]:
                lines += [f"![{r['title']}]({r['files'][0]})", ""]
    others = sorted(p for p in out.rglob("*.md") if p.parent.name != "tables" and p.name != "index.md")
    if others:
        lines += ["", "## Other documents in this folder", ""]
        lines += [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in others]
    path = out / "index.md"
    io.write_text(path, portable_text("\n".join(lines).rstrip() + "\n"))
    return path
