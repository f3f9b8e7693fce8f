"""The main job: execute every notebook headlessly into reports/, then write reports/index.md.

    python -m dcclib.lab.reports [--profile smoke|quick|paper] [--only 03,04] [--data-root DIR]

Each ``notebooks/NN_name.ipynb`` runs with papermill (its ``parameters`` cell gets the options
given here; defaults are left alone, so a smoke run injects nothing) and is saved executed as
``reports/NN_name.ipynb``. The notebooks write their tables (CSV + Markdown) and figures (PNG +
SVG) through ``Lab.save_table`` / ``Lab.save_figure``, which land in ``write_table`` /
``write_figure`` (``dcclib.lab.writers``), each with a small JSON record (title, profile, data, device) under
``reports/meta/``; ``write_index`` lists them all in ``reports/index.md``.

``--update-notebooks`` (profile smoke only) also writes the executed notebooks back into
notebooks/, as the reference outputs that nbval checks (tests/test_notebooks.py).

The output folder is passed to the kernels as $DCC_REPORTS_DIR, the results store as
$DCC_RESULTS_DIR, so that neither appears as an injected parameter.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

from dcclib import io
from dcclib.errors import UserError
from dcclib.lab.profiles import PROFILES
from dcclib.lab.store import RESULTS_ENV, allow_stale_results, repo_root
from dcclib.lab.writers import REPORTS_ENV, default_reports_dir, labels_line

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
RUNNER_PARAMETERS = ("profile", "device", "data_root")  # set by the runner's own options


def notebooks_dir() -> Path:
    """notebooks/ of the checkout (or of the working folder)."""
    return (repo_root() or Path.cwd()) / "notebooks"


# ----------------------------------------------------------------------------------- the index
def _records(out: Path) -> list[dict]:
    return [io.read_json(p) for p in sorted((out / "meta").glob("*.json"))]


def write_index(out: Path) -> Path:
    """reports/index.md: every executed notebook, table and figure, with profile, data, device."""
    recs = _records(out)
    runs = [r for r in recs if r["kind"] == "run"]
    lines = [
        "# Reports",
        "",
        "Written by `python -m dcclib.lab.reports` (`make reports`). Each entry names the profile it ran",
        "at, the device and the data it used. At profile `smoke` the data are stand-ins (the embedded",
        "MNIST digits) and the loops are tiny: those numbers show that the pipeline runs; they are",
        "not reproductions of the paper, and their difference to the paper is left empty.",
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
            f"{r['status']} | {r['seconds']:.0f} | {params} |"
        )
    for kind, heading in (("table", "Tables"), ("figure", "Figures")):
        lines += ["", f"## {heading}", ""]
        for r in (r for r in recs if r["kind"] == kind):
            links = " · ".join(f"[{Path(f).suffix[1:]}]({f})" for f in r["files"])
            lines += [f"### {r['title']}", "", f"{labels_line(r)} · notebook {r['notebook']} · {links}", ""]
            if kind == "figure":
                lines += [f"![{r['title']}]({r['files'][0]})", ""]
    others = sorted(p for p in out.rglob("*.md") if p.parent.name != "tables" and p.name != "index.md")
    if others:
        lines += ["", "## Other documents in this folder", ""]
        lines += [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in others]
    path = out / "index.md"
    io.write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


# ------------------------------------------------------------------------------------- running
def _clean(out: Path, notebook: str) -> None:
    """Remove what an earlier run of `notebook` wrote, so that no stale figure stays listed."""
    for path in sorted((out / "meta").glob("*.json")):
        rec = io.read_json(path)
        if rec.get("notebook") == notebook:
            for f in rec["files"]:
                if rec["kind"] != "run":
                    (out / f).unlink(missing_ok=True)
            path.unlink()


def _strip_execution_metadata(path: Path) -> None:
    """Drop papermill's timings from a reference notebook, so that reruns diff cleanly."""
    nb = json.loads(path.read_text())
    nb["metadata"].pop("papermill", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    io.write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """The notebooks that `only` names (numbers or stems, comma-separated); all when empty."""
    if not only:
        return notebooks
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    chosen = [nb for nb in notebooks if nb.name[:2] in wanted or nb.stem in wanted]
    unknown = wanted - {nb.name[:2] for nb in chosen} - {nb.stem for nb in chosen}
    if unknown:
        have = ", ".join(n.stem for n in notebooks)
        raise UserError(f"no notebook {', '.join(sorted(unknown))}; have {have}")
    return chosen


def notebook_parameters(notebook: Path) -> list[str]:
    """The names assigned in `notebook`'s cell tagged "parameters" (what papermill can set)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read notebook {notebook} ({exc})") from None
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        return []
    source = tagged[0]["source"]
    try:
        tree = ast.parse(source if isinstance(source, str) else "".join(source))
    except SyntaxError as exc:
        raise UserError(f"the parameters cell of {notebook} is not valid Python ({exc.msg})") from None
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def check_parameters(notebooks: list[Path], params: dict) -> None:
    """Every given parameter is one of each notebook's (papermill would only warn and run on
    with the default); the runner's own (profile, device, data_root) go wherever they are used."""
    for nb in notebooks:
        known = notebook_parameters(nb)
        unknown = sorted(set(params) - set(known) - set(RUNNER_PARAMETERS))
        if unknown:
            raise UserError(
                f"notebook {nb.stem} has no parameter {', '.join(map(repr, unknown))}; its parameters are "
                f"{', '.join(known) or 'none'} (choose notebooks with --only)"
            )


def run(
    profile: str = "smoke",
    only: str | None = None,
    parameters: dict | None = None,
    output: Path | None = None,
    results: Path | None = None,
    update_notebooks: bool = False,
    notebooks: Path | None = None,
) -> list[dict]:
    """Execute the notebooks; returns one record per notebook (status, seconds)."""
    import papermill

    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'; choose one of: {', '.join(PROFILES)}")
    if update_notebooks and (profile != "smoke" or parameters):
        raise UserError("--update-notebooks writes nbval references: only at profile smoke with defaults")
    src = notebooks or notebooks_dir()
    params = {**({"profile": profile} if profile != "smoke" else {}), **(parameters or {})}
    chosen = select(sorted(src.glob(NOTEBOOK_GLOB)), only)
    check_parameters(chosen, params)  # before the output folder exists: a refusal writes nothing
    out = (output or default_reports_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ[REPORTS_ENV] = str(out)
    if results is not None:
        os.environ[RESULTS_ENV] = str(Path(results).resolve())
    done = []
    for nb in chosen:
        _clean(out, nb.stem)
        target = out / nb.name
        print(f"[reports] {nb.stem} (profile {profile}) ...", flush=True)
        tic, status = time.perf_counter(), "ok"
        partial = out / f".{nb.stem}.partial.ipynb"  # papermill saves as it goes: rename at the end
        try:
            papermill.execute_notebook(
                str(nb),
                str(partial),
                parameters=params,
                kernel_name="python3",
                cwd=str(src),
                progress_bar=False,
            )
        except papermill.PapermillExecutionError as exc:
            status = f"failed: {exc.ename}: {exc.evalue}"[:200]
        if partial.exists():
            os.replace(partial, target)
        seconds = time.perf_counter() - tic
        if update_notebooks and status == "ok":
            io.write_text(nb, target.read_text())
            _strip_execution_metadata(nb)
        from dcclib.runtime import resolve_device

        rec = {
            "kind": "run",
            "notebook": nb.stem,
            "files": [target.name],
            "profile": profile,
            "device": params.get("device") or resolve_device(PROFILES[profile].device).type,
            "parameters": params,
            "status": status,
            "seconds": seconds,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        io.write_json(out / "meta" / f"{nb.stem}.run.json", rec)
        print(f"[reports] {nb.stem}: {status} in {seconds:.0f} s", flush=True)
        done.append(rec)
    write_index(out)
    return done


def parse_param(text: str) -> tuple[str, object]:
    """A --param KEY=VALUE as (key, value): VALUE read as JSON, else kept as a plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise UserError(f"--param wants KEY=VALUE (VALUE as JSON, or a plain string), got '{text}'")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks into the reports folder; 0 when all ran, 1 when one failed, 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m dcclib.lab.reports", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    ap.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 03,04")
    ap.add_argument("--data-root", help="folder with the datasets (passed as data_root)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the profile's)")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other notebook parameter (repeatable), e.g. --param 'ipcs=[1,10]'",
    )
    ap.add_argument("--output", type=Path, help=f"output folder (default reports/ or ${REPORTS_ENV})")
    ap.add_argument("--results", type=Path, help=f"results store (default results/ or ${RESULTS_ENV})")
    ap.add_argument(
        "--update-notebooks",
        action="store_true",
        help="also save the executed smoke notebooks into notebooks/ (nbval references)",
    )
    ap.add_argument(
        "--allow-stale",
        action="store_true",
        help="reuse results of older algorithm versions (every table built from them says so)",
    )
    args = ap.parse_args(argv)
    if args.allow_stale:
        allow_stale_results()
    try:
        params = dict(parse_param(p) for p in args.param)
        if args.data_root:
            params["data_root"] = str(Path(args.data_root).resolve())
        if args.device:
            params["device"] = args.device
        tic = time.perf_counter()
        done = run(args.profile, args.only, params, args.output, args.results, args.update_notebooks)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [d["notebook"] for d in done if d["status"] != "ok"]
    tail = f"; FAILED: {', '.join(failed)}" if failed else ""
    print(
        f"[reports] {len(done)} notebooks in {time.perf_counter() - tic:.0f} s; "
        f"index: {default_reports_dir() / 'index.md'}{tail}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
