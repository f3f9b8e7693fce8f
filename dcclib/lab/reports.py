"""The main job: execute every notebook headlessly into a reports folder, then write its index.md.

    python -m dcclib.lab.reports [--profile auto|smoke|cpu|quick|paper] [--only 03,04] [--data-root DIR]
                                 [--publish] [--render-only]

Where: reports/local/ (git-ignored) unless told otherwise ($DCC_REPORTS_DIR or --output), so a rerun
never overwrites the reports the project ships in reports/; ``--publish`` writes there, and is
refused for a notebook whose shipped report was made at a higher profile.

Profile ``auto`` (the default) takes the best profile this machine can run and prints which and
why, in one line (``dcclib.lab.profile_choice``): a CUDA device -> ``quick`` (``paper`` only when asked
for); else the real data of profile ``cpu`` (MNIST, Fashion-MNIST, CIFAR-10) under the data root
(--data-root, else $DCC_DATA_ROOT, else ./data), or reachable download hosts ($DCC_OFFLINE=1
skips that check) -> ``cpu`` (missing datasets are then downloaded into the data root); else
``smoke`` (offline, the embedded stand-in digits). ``--update-notebooks`` always runs ``smoke``.

Each ``notebooks/NN_name.ipynb`` runs with papermill (its ``parameters`` cell gets the options
given here; defaults are left alone, so a smoke run injects nothing) and is saved executed as
``reports/NN_name.ipynb``. The notebooks write their tables (CSV + Markdown) and figures (PNG +
SVG) through ``Lab.save_table`` / ``Lab.save_figure``, which land in ``write_table`` /
``write_figure`` (``dcclib.lab.writers``), each with a small JSON record (title, profile, data,
device, status) under ``reports/meta/``; ``write_index`` (``dcclib.lab.report_index``) lists
them all in ``reports/index.md``, each with its status (reproduced / differs / not run / not a
reproduction / shown, see ``dcclib.lab.writers``), and the cost of every notebook at every
profile it ran at (``reports/meta/costs.json``, updated by each run).

``--update-notebooks`` (profile smoke only) also writes the executed notebooks back into
notebooks/, as the reference outputs that nbval checks (tests/test_notebooks.py).

The output folder is passed to the kernels as $DCC_REPORTS_DIR, the results store as
$DCC_RESULTS_DIR and the data root as $DCC_DATA_ROOT, so that none appears as an injected
parameter (a ``--param data_root=...`` is injected as given). Nothing written holds an absolute
path of the machine: papermill's input and output paths are rewritten relative to the
repository root, and so is every path in the records and the index (``dcclib.lab.portable``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from dcclib import io
from dcclib.errors import UserError
from dcclib.lab.parameters import check, notebook_declared
from dcclib.lab.portable import portable, portable_path, portable_text, write_portable_notebook
from dcclib.lab.profile_choice import AUTO, fetch_datasets, resolve_profile
from dcclib.lab.profiles import PROFILES
from dcclib.lab.report_index import (
    COSTS_FILE,
    RECORD_SUFFIXES,
    device_label,
    read_costs,
    update_costs,
    write_index,
)
from dcclib.lab.store import RENDER_ONLY_ENV, RESULTS_ENV, allow_stale_results, repo_root
from dcclib.lab.writers import REPORTS_ENV, default_reports_dir, shipped_reports_dir

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
RUNNER_PARAMETERS = ("profile", "device", "data_root")  # set by the runner's own options
DATA_ENV = "DCC_DATA_ROOT"  # read by dcclib.data.default_data_root (the notebooks' data_root=None)


# -------------------------------------------------------------------- notebooks and parameters
def notebooks_dir() -> Path:
    """notebooks/ of the checkout (or of the working folder)."""
    return (repo_root() or Path.cwd()) / "notebooks"


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
    """The names declared in `notebook`'s cell tagged "parameters" (what papermill can set)."""
    return list(notebook_declared(notebook))


def check_parameters(notebooks: list[Path], params: dict) -> dict[str, dict]:
    """Every given parameter is one of each notebook's (papermill would only warn and run on
    with the default), of its declared type and in its range (``dcclib.lab.parameters``, the
    check each notebook also runs itself); the runner's own (profile, device, data_root) go
    wherever they are declared. Returns each notebook's values as they read."""
    out = {}
    for nb in notebooks:
        declared = notebook_declared(nb)
        unknown = sorted(set(params) - set(declared) - set(RUNNER_PARAMETERS))
        if unknown:
            raise UserError(
                f"notebook {nb.stem} has no parameter {', '.join(map(repr, unknown))}; its parameters are "
                f"{', '.join(declared) or 'none'} (choose notebooks with --only)"
            )
        out[nb.stem] = check(
            {k: v for k, v in params.items() if k in declared}, declared, f"notebook {nb.stem}"
        )
    return out


def parse_param(text: str) -> tuple[str, object]:
    """A --param KEY=VALUE as (key, value): VALUE read as JSON, else kept as a plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise UserError(f"--param wants KEY=VALUE (VALUE as JSON, or a plain string), got '{text}'")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# ------------------------------------------------------------------------------------- running
def run(
    profile: str = "smoke",
    only: str | None = None,
    parameters: dict | None = None,
    output: Path | None = None,
    results: Path | None = None,
    update_notebooks: bool = False,
    notebooks: Path | None = None,
    data_root: str | Path | None = None,
    publish: bool = False,
) -> list[dict]:
    """Execute the notebooks; returns one record per notebook (status, seconds).

    `profile` "auto" chooses one (``resolve_profile``, printed in one line); `data_root` reaches
    the kernels as $DCC_DATA_ROOT (a ``data_root`` in `parameters` is injected as given). The
    output is `output`, else reports/ with `publish` (refused where it would replace a shipped
    report of a higher profile), else reports/local/ (``default_reports_dir``)."""
    import papermill

    if profile != AUTO and profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'; choose one of: {', '.join([AUTO, *PROFILES])}")
    if update_notebooks and (profile not in (AUTO, "smoke") or parameters):
        raise UserError("--update-notebooks writes nbval references: only at profile smoke with defaults")
    src = notebooks or notebooks_dir()
    given = dict(parameters or {})
    chosen = select(sorted(src.glob(NOTEBOOK_GLOB)), only)
    check_parameters(chosen, given)  # before the output folder exists: a refusal writes nothing
    root_of_data = data_root_of(data_root)
    name, reason, download = resolve_profile(profile, root_of_data, update_notebooks, given.get("device"))
    print(f"[reports] profile {name}: {reason}", flush=True)
    params = {**({"profile": name} if name != "smoke" else {}), **given}
    if publish and output is not None:
        raise UserError("--publish writes into the shipped reports/: give it or --output, not both")
    out = (output or (shipped_reports_dir() if publish else default_reports_dir())).resolve()
    if publish:
        check_publish(out, chosen, name)
    print(f"[reports] writing into {portable_path(out)}" + ("" if publish else _local_note(out)), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    if download:
        fetch_datasets(download, root_of_data)
    env = {REPORTS_ENV: str(out), DATA_ENV: str(root_of_data)}
    if results is not None:
        env[RESULTS_ENV] = str(Path(results).resolve())
    root = (repo_root() or Path.cwd()).resolve()
    done = []
    with _environment(env):
        for nb in chosen:
            done.append(_run_one(papermill, nb, src, out, root, name, reason, params, update_notebooks))
            done[-1]["data_root"] = portable_path(root_of_data, root)
            io.write_json(out / "meta" / f"{nb.stem}.run.json", done[-1])
    write_index(out)
    return done


PROFILE_RANK = {name: i for i, name in enumerate(PROFILES)}  # smoke < cpu < quick < paper


def check_publish(out: Path, chosen: list[Path], profile: str) -> None:
    """Refuse (one line, before any work) to replace a shipped report made at a higher profile."""
    for nb in chosen:
        record = out / "meta" / f"{nb.stem}.run.json"
        try:
            shipped = json.loads(record.read_text()).get("profile")
        except (OSError, ValueError):
            continue  # nothing shipped (or unreadable): nothing to protect
        if PROFILE_RANK.get(shipped, -1) > PROFILE_RANK[profile]:
            raise UserError(
                f"--publish at profile {profile} would replace the shipped {nb.stem} made at profile "
                f"{shipped}; run without --publish (it writes into reports/local/) or at {shipped} or higher"
            )


def _local_note(out: Path) -> str:
    shipped = shipped_reports_dir().resolve()
    if out.parent == shipped:
        return " (beside the shipped reports/; --publish replaces them)"
    return ""


def _run_one(
    papermill,
    nb: Path,
    src: Path,
    out: Path,
    root: Path,
    profile: str,
    reason: str,
    params: dict,
    update: bool,
) -> dict:
    from dcclib.runtime import resolve_device

    _clean(out, nb.stem)
    target = out / nb.name
    print(f"[reports] {nb.stem} (profile {profile}) ...", flush=True)
    tic, status = time.perf_counter(), "ok"
    partial = out / f".{nb.stem}.partial.ipynb"  # papermill saves as it goes: rename at the end
    try:
        papermill.execute_notebook(
            str(nb), str(partial), parameters=params, kernel_name="python3", cwd=str(src), progress_bar=False
        )
    except papermill.PapermillExecutionError as exc:
        status = portable_text(f"failed: {exc.ename}: {exc.evalue}"[:200], root)
    if partial.exists():
        os.replace(partial, target)
    seconds = time.perf_counter() - tic
    if target.exists():
        write_portable_notebook(target, nb, root)
    if update and status == "ok":
        io.write_text(nb, target.read_text())
        _strip_execution_metadata(nb)
    device = params.get("device") or resolve_device(PROFILES[profile].device).type
    if status == "ok":
        date = time.strftime("%Y-%m-%d", time.gmtime())
        costs = update_costs(read_costs(out), nb.stem, profile, seconds, device_label(device), date)
        io.write_json(out / "meta" / COSTS_FILE, costs)
    print(f"[reports] {nb.stem}: {status} in {seconds:.0f} s", flush=True)
    return {
        "kind": "run",
        "notebook": nb.stem,
        "files": [target.name],
        "profile": profile,
        "profile_reason": reason,
        "device": device,
        "parameters": portable(params, root),
        "status": status,
        "seconds": seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in os.environ (papermill's kernels inherit it), the old ones back after."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def data_root_of(data_root: str | Path | None) -> Path:
    """The data root: `data_root` (which must be a folder), else $DCC_DATA_ROOT, else ./data."""
    if data_root is not None:
        path = Path(data_root).expanduser()
        if not path.is_dir():
            raise UserError(f"--data-root {data_root}: no such folder")
        return path.absolute()  # a link (data -> elsewhere) keeps its name in every record
    from dcclib.data import default_data_root

    return default_data_root().absolute()


def _clean(out: Path, notebook: str) -> None:
    """Remove what an earlier run of `notebook` wrote, so that no stale figure stays listed."""
    for path in sorted(p for p in (out / "meta").glob("*.json") if p.name.endswith(RECORD_SUFFIXES)):
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


# -------------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as a UserError (one line on stderr, exit 2), not a usage text."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks into the reports folder; 0 when all ran, 1 when one failed, 2 on bad input."""
    ap = _Parser(prog="python -m dcclib.lab.reports", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile",
        default=AUTO,
        help=f"{', '.join([AUTO, *PROFILES])} (default auto: quick with CUDA, else cpu with real data "
        "or a network, else smoke; paper only when asked for)",
    )
    ap.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 03,04")
    ap.add_argument(
        "--data-root",
        help=f"folder with the datasets (default ${DATA_ENV}, else ./data; kernels get ${DATA_ENV})",
    )
    ap.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the profile's)")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other notebook parameter (repeatable), e.g. --param 'ipcs=[1,10]'",
    )
    ap.add_argument(
        "--output",
        type=Path,
        help=f"output folder (default ${REPORTS_ENV}, else reports/local/, git-ignored)",
    )
    ap.add_argument(
        "--publish",
        action="store_true",
        help="write into the shipped reports/ (refused over a report of a higher profile)",
    )
    ap.add_argument("--results", type=Path, help=f"results store (default results/ or ${RESULTS_ENV})")
    ap.add_argument(
        "--update-notebooks",
        action="store_true",
        help="also save the executed smoke notebooks into notebooks/ (nbval references; profile smoke)",
    )
    ap.add_argument(
        "--render-only",
        action="store_true",
        help=f"compute nothing: show what the results store holds; a missing result stops that "
        f"notebook with one line (${RENDER_ONLY_ENV}=1 for the kernels)",
    )
    ap.add_argument(
        "--allow-stale",
        action="store_true",
        help="reuse results of older algorithm versions (every table built from them says so)",
    )
    try:
        args = ap.parse_args(argv)
        if args.allow_stale:
            allow_stale_results()
        if args.render_only:
            os.environ[RENDER_ONLY_ENV] = "1"
        params = dict(parse_param(p) for p in args.param)
        if args.device:
            params["device"] = args.device
        tic = time.perf_counter()
        done = run(
            args.profile,
            args.only,
            params,
            args.output,
            args.results,
            args.update_notebooks,
            data_root=args.data_root,
            publish=args.publish,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [d["notebook"] for d in done if d["status"] != "ok"]
    tail = f"; FAILED: {', '.join(failed)}" if failed else ""
    index = (args.output or (shipped_reports_dir() if args.publish else default_reports_dir())) / "index.md"
    seconds = time.perf_counter() - tic
    print(f"[reports] {len(done)} notebooks in {seconds:.0f} s; index: {portable_path(index)}{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
