"""The main job: execute every notebook headlessly into reports/, then write reports/index.md.

    python -m dcclib.lab.reports [--profile auto|smoke|cpu|quick|paper] [--only 03,04] [--data-root DIR]

Profile ``auto`` (the default) takes the best profile this machine can run and prints which and
why, in one line (``choose_profile``): a CUDA device -> ``quick`` (``paper`` only when asked
for); else the real data of profile ``cpu`` (MNIST, Fashion-MNIST, CIFAR-10) under the data root
(--data-root, else $DCC_DATA_ROOT, else ./data), or reachable download hosts ($DCC_OFFLINE=1
skips that check) -> ``cpu`` (missing datasets are then downloaded into the data root); else
``smoke`` (offline, the embedded stand-in digits). ``--update-notebooks`` always runs ``smoke``.

Each ``notebooks/NN_name.ipynb`` runs with papermill (its ``parameters`` cell gets the options
given here; defaults are left alone, so a smoke run injects nothing) and is saved executed as
``reports/NN_name.ipynb``. The notebooks write their tables (CSV + Markdown) and figures (PNG +
SVG) through ``Lab.save_table`` / ``Lab.save_figure``, which land in ``write_table`` /
``write_figure`` (``dcclib.lab.writers``), each with a small JSON record (title, profile, data,
device, status) under ``reports/meta/``; ``write_index`` lists them all in ``reports/index.md``,
each with its status (reproduced / differs / not run / not a reproduction / shown, see
``dcclib.lab.writers``), and the cost of every notebook at every profile it ran at
(``reports/meta/costs.json``, updated by each run).

``--update-notebooks`` (profile smoke only) also writes the executed notebooks back into
notebooks/, as the reference outputs that nbval checks (tests/test_notebooks.py).

The output folder is passed to the kernels as $DCC_REPORTS_DIR, the results store as
$DCC_RESULTS_DIR and the data root as $DCC_DATA_ROOT, so that none appears as an injected
parameter (a ``--param data_root=...`` is injected as given). Nothing written holds an absolute
path of the machine: papermill's input and output paths are rewritten relative to the
repository root, and so is every path in the records and the index (``writers.portable``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from dcclib import io
from dcclib.errors import UserError
from dcclib.lab.profiles import PROFILES
from dcclib.lab.store import RESULTS_ENV, allow_stale_results, repo_root
from dcclib.lab.writers import (
    BAND_TEXT,
    REPORTS_ENV,
    default_reports_dir,
    figure_status,
    labels_line,
    portable,
    portable_path,
    portable_text,
    table_status,
)

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
RUNNER_PARAMETERS = ("profile", "device", "data_root")  # set by the runner's own options
AUTO = "auto"
DATA_ENV = "DCC_DATA_ROOT"  # read by dcclib.data.default_data_root (the notebooks' data_root=None)
OFFLINE_ENV = "DCC_OFFLINE"  # 1: auto does not check whether the download hosts are reachable
CPU_DATASETS = ("mnist", "fashionmnist", "cifar10")  # what profile cpu runs on
ONLINE_TIMEOUT_S = 3.0
COSTS_FILE = "costs.json"  # reports/meta/costs.json: notebook -> profile -> last cost
RECORD_SUFFIXES = (".run.json", ".table.json", ".figure.json")


def notebooks_dir() -> Path:
    """notebooks/ of the checkout (or of the working folder)."""
    return (repo_root() or Path.cwd()) / "notebooks"


# ------------------------------------------------------------------------------ profile choice
def choose_profile(
    cuda: bool,
    data_found: list[str],
    online: bool | None,
    asked: str = AUTO,
    where: str = "data",
    device: str | None = None,
) -> tuple[str, str]:
    """The profile to run and why, in words: `asked` when it names a profile; for ``auto``, a
    CUDA device -> quick; else the real data of profile cpu found under `where` (`data_found`)
    or the machine `online` (None: not checked, $DCC_OFFLINE) -> cpu; else smoke."""
    if asked != AUTO:
        if asked not in PROFILES:
            raise UserError(f"unknown profile '{asked}'; choose one of: {', '.join([AUTO, *PROFILES])}")
        return asked, f"asked for (--profile {asked})"
    found = [n for n in CPU_DATASETS if n in data_found]
    missing = [n for n in CPU_DATASETS if n not in found]
    if found:
        data = f"real data found in {where} ({', '.join(found)})"
        if missing:
            data += f"; missing there: {', '.join(missing)}" + (
                " (downloaded now: online)" if online else " (their cells are not run)"
            )
    else:
        data = f"no real data in {where} ({', '.join(CPU_DATASETS)})"
    if device is not None and device.startswith("cpu"):
        cuda, no_cuda = False, "--device cpu"
    else:
        no_cuda = "no CUDA device"
    if cuda:
        return "quick", f"CUDA device found (--profile paper for the paper's full settings); {data}"
    if found:
        return "cpu", f"{no_cuda}; {data}"
    if online:
        return "cpu", f"{no_cuda}; {data}, but online: they are downloaded into {where}"
    offline = f"offline (${OFFLINE_ENV}=1)" if online is None else "offline"
    return "smoke", f"{no_cuda}; {data}; {offline}: the embedded stand-in digits (not paper numbers)"


def _has_idx(dirs: list[Path]) -> bool:
    stems = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return any(all((d / s).is_file() or (d / f"{s}.gz").is_file() for s in stems) for d in dirs)


def probe_data(root: Path, names: tuple[str, ...] = CPU_DATASETS) -> list[str]:
    """Which of `names` (mnist, fashionmnist, cifar10) have their files under `root`, in the
    layouts their loaders read (dcclib.data.idx, dcclib.data.cifar): a cheap check of file names,
    nothing is read."""
    batches = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    jpeg = root / "cifar10-jpeg"
    checks = {
        "mnist": lambda: _has_idx([root / "MNIST" / "raw", root / "mnist", root / "MNIST", root]),
        "fashionmnist": lambda: _has_idx(
            [
                root / "FashionMNIST" / "raw",
                root / "fashion-mnist",
                root / "fashionmnist",
                root / "FashionMNIST",
                root,
            ]
        ),
        "cifar10": lambda: (
            any(all((d / f).is_file() for f in batches) for d in (root / "cifar-10-batches-py", root))
            or all((jpeg / s).is_dir() for s in ("train", "test"))
            or all((jpeg / f"{s}.tar.gz").is_file() for s in ("train", "test"))
        ),
    }
    return [n for n in names if n in checks and checks[n]()]


def download_urls(names: list[str]) -> list[str]:
    """The URLs torchvision downloads `names` from (the first mirror of each)."""
    urls = {
        "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "fashionmnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    }
    try:  # the installed torchvision's own mirrors, when it has them
        from torchvision.datasets import MNIST, FashionMNIST

        urls |= {"mnist": MNIST.mirrors[0], "fashionmnist": FashionMNIST.mirrors[0]}
    except (ImportError, AttributeError, IndexError):
        pass
    return [urls[n] for n in names if n in urls]


def offline_by_env() -> bool:
    """$DCC_OFFLINE is 1/true/yes: the machine is taken to be offline, nothing is checked."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def is_online(urls: list[str], timeout: float = ONLINE_TIMEOUT_S) -> bool | None:
    """Whether every host of `urls` accepts a connection within `timeout` seconds in all (name
    look-ups included); None when $DCC_OFFLINE is set (not checked)."""
    if offline_by_env():
        return None
    hosts = sorted(
        {(u.hostname, u.port or (443 if u.scheme == "https" else 80)) for u in map(urlsplit, urls)}
    )
    ok: dict = {}

    def connect(host: tuple) -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            ok[host] = True
        except OSError:
            ok[host] = False

    threads = [threading.Thread(target=connect, args=(h,), daemon=True) for h in hosts]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return bool(hosts) and all(ok.get(h) for h in hosts)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_profile(
    asked: str, data_root: Path, update_notebooks: bool = False, device: str | None = None
) -> tuple[str, str, list[str]]:
    """(profile, reason, datasets to download): `asked`, or what ``auto`` finds on this machine."""
    if update_notebooks and asked in (AUTO, "smoke"):
        return "smoke", "--update-notebooks writes the nbval references, which are smoke runs", []
    where = portable_path(data_root.resolve())
    if asked != AUTO:
        return (*choose_profile(False, [], False, asked, where), [])
    cuda = _cuda_available()
    found = probe_data(data_root)
    missing = [n for n in CPU_DATASETS if n not in found]
    use_cuda = cuda and not (device or "").startswith("cpu")
    if not missing or use_cuda:
        online: bool | None = False  # not needed: nothing to download, or quick on the GPU
    else:
        online = None if offline_by_env() else is_online(download_urls(missing))
    name, reason = choose_profile(cuda, found, online, asked, where, device)
    return name, reason, missing if name == "cpu" and online else []


def fetch_datasets(names: list[str], root: Path) -> None:
    """Download `names` into `root` (torchvision); a failure is reported, the run goes on."""
    from dcclib.data import load_dataset

    for name in names:
        print(f"[reports] downloading {name} into {portable_path(root.resolve())} ...", flush=True)
        try:
            load_dataset(name, root, "cpu", download=True)
        except UserError as exc:
            print(
                f"[reports] {name}: not downloaded ({portable_text(str(exc))}); its cells are not run",
                flush=True,
            )


# ------------------------------------------------------------------------ portable notebooks
def relative_to_root(text: str, root: Path) -> str:
    """`text` with the repository root's absolute path made relative (``<root>/x`` -> ``x``,
    ``<root>`` alone -> ``.``); nothing else in it changes."""
    pattern = re.escape(str(root)) + r"(?![\w.-])(/)?"
    return re.sub(pattern, lambda m: "" if m.group(1) else ".", text)


def portable_notebook(nb: dict, root: Path, input_path: Path, output_path: Path) -> dict:
    """An executed notebook without the build machine's absolute paths: papermill's input and
    output paths relative to `root` (the output path is the final file, not papermill's partial
    one), absolute paths among its recorded parameters made portable (also in the injected
    cell), and `root` made relative in every text output. Returns `nb`, changed in place."""
    pm = nb.get("metadata", {}).get("papermill")
    swaps: dict[str, str] = {}
    if isinstance(pm, dict):
        pm["input_path"] = portable_path(input_path, root)
        pm["output_path"] = portable_path(output_path, root)
        for key in ("parameters", "default_parameters"):
            if isinstance(pm.get(key), dict):
                for value in pm[key].values():
                    if isinstance(value, str) and portable_text(value, root) != value:
                        swaps[value] = portable_text(value, root)
                pm[key] = portable(pm[key], root)

    def fix(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return relative_to_root(text, root)

    def fix_lines(value: str | list) -> str | list:
        return fix(value) if isinstance(value, str) else [fix(v) if isinstance(v, str) else v for v in value]

    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = fix_lines(cell["source"])
        for out in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback"):
                if key in out:
                    out[key] = fix_lines(out[key])
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    out["data"][mime] = fix_lines(value)
    return nb


def _write_portable(target: Path, source: Path, root: Path) -> None:
    nb = json.loads(target.read_text())
    portable_notebook(nb, root, source, target)
    io.write_text(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------- costs
def update_costs(costs: dict, notebook: str, profile: str, seconds: float, device: str, date: str) -> dict:
    """`costs` (notebook -> profile -> {seconds, device, date}) with this run's cost in."""
    out = {nb: dict(by) for nb, by in costs.items()}
    out.setdefault(notebook, {})[profile] = {"seconds": round(seconds, 1), "device": device, "date": date}
    return out


def format_seconds(seconds: float) -> str:
    """12 s, 14 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def costs_table(costs: dict) -> list[str]:
    """The Markdown table notebook x profile of `costs` (the last successful run of each)."""
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
    """A table's or figure's status: from its record, else (an older record) from its CSV or data."""
    if isinstance(rec.get("status"), dict) and "text" in rec["status"]:
        return rec["status"]
    if rec["kind"] == "table":
        csv = next((out / f for f in rec.get("files", []) if f.endswith(".csv")), None)
        if csv is not None and csv.is_file():
            import pandas as pd

            try:
                df = pd.read_csv(csv)
            except (ValueError, OSError):
                df = pd.DataFrame()
            return table_status(df, rec.get("profile"), rec.get("notebook"), rec.get("data"))
    return figure_status(rec)


def _cell(text: str) -> str:
    """`text` for a Markdown table cell (its | escaped, on one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _stem(rec: dict) -> str:
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
        if r["kind"] == "table" and statuses[id(r)].get("state") in ("reproduced", "differs")
    }
    for r in recs:  # a figure of a compared table (same name) has that table's status
        if r["kind"] == "figure" and (r.get("notebook"), _stem(r)) in compared:
            table = compared[(r.get("notebook"), _stem(r))]
            statuses[id(r)] = {**table, "text": f"as its table: {table['text']}"}
    lines = [
        "# Reports",
        "",
        "Written by `python -m dcclib.lab.reports` (`make reports`). Each entry names the profile it ran",
        "at, the device and the data it used, and its status: **reproduced** (every compared cell within",
        "the paper's band), **differs** (by how much), **not run** (with the command that runs it), **not",
        "a reproduction** (stand-in data), or **shown** (no paper number to compare with). The band:",
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
            links = " · ".join(f"[{Path(f).suffix[1:]}]({f})" for f in r["files"])
            lines += [f"### {r['title']}", "", f"{labels_line(r)} · notebook {r['notebook']} · {links}", ""]
            lines += [f"status: {statuses[id(r)]['text']}", ""]
            if kind == "figure":
                lines += [f"![{r['title']}]({r['files'][0]})", ""]
    others = sorted(p for p in out.rglob("*.md") if p.parent.name != "tables" and p.name != "index.md")
    if others:
        lines += ["", "## Other documents in this folder", ""]
        lines += [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in others]
    path = out / "index.md"
    io.write_text(path, portable_text("\n".join(lines).rstrip() + "\n"))
    return path


# ------------------------------------------------------------------------------------- running
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
        return path.resolve()
    from dcclib.data import default_data_root

    return default_data_root().resolve()


def run(
    profile: str = "smoke",
    only: str | None = None,
    parameters: dict | None = None,
    output: Path | None = None,
    results: Path | None = None,
    update_notebooks: bool = False,
    notebooks: Path | None = None,
    data_root: str | Path | None = None,
) -> list[dict]:
    """Execute the notebooks; returns one record per notebook (status, seconds).

    `profile` "auto" chooses one (``resolve_profile``, printed in one line); `data_root` reaches
    the kernels as $DCC_DATA_ROOT (a ``data_root`` in `parameters` is injected as given)."""
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
    out = (output or default_reports_dir()).resolve()
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
        _write_portable(target, nb, root)
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


def parse_param(text: str) -> tuple[str, object]:
    """A --param KEY=VALUE as (key, value): VALUE read as JSON, else kept as a plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise UserError(f"--param wants KEY=VALUE (VALUE as JSON, or a plain string), got '{text}'")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


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
    ap.add_argument("--output", type=Path, help=f"output folder (default reports/ or ${REPORTS_ENV})")
    ap.add_argument("--results", type=Path, help=f"results store (default results/ or ${RESULTS_ENV})")
    ap.add_argument(
        "--update-notebooks",
        action="store_true",
        help="also save the executed smoke notebooks into notebooks/ (nbval references; profile smoke)",
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
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [d["notebook"] for d in done if d["status"] != "ok"]
    tail = f"; FAILED: {', '.join(failed)}" if failed else ""
    index = (args.output or default_reports_dir()) / "index.md"
    seconds = time.perf_counter() - tic
    print(f"[reports] {len(done)} notebooks in {seconds:.0f} s; index: {portable_path(index)}{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
