"""The notebooks: structure and conventions, and proof that nbval fails on a changed number.

nbval itself runs every notebook in notebooks/ at profile smoke as part of `make test`
(pyproject: testpaths include notebooks/, addopts --nbval --nbval-current-env) and compares the
outputs of every cell not tagged nbval-ignore-output with the ones committed in the notebooks.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IGNORE = "nbval-ignore-output"


def _cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_the_paper_notebooks_are_there():
    assert [p.name[:2] for p in NOTEBOOKS][:8] == [f"{i:02d}" for i in range(8)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_conventions(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    cells = _cells(path)
    first = cells[0]
    assert "parameters" in _tags(first), "the first code cell must be papermill's parameters cell"
    assert re.search(r'^profile: str = "smoke"', "".join(first["source"]), re.M)
    assert not first.get("outputs")
    for cell in cells:
        outputs = cell.get("outputs", [])
        assert not [o for o in outputs if o["output_type"] == "error"], "committed with an error"
        if IGNORE in _tags(cell):
            continue
        text = json.dumps([o.get("text", o.get("data", {}).get("text/plain", "")) for o in outputs])
        # checked outputs must not depend on the machine (paths, timings, progress bars)
        assert "/tmp/" not in text and "/work/" not in text and str(ROOT) not in text
        assert not re.search(r"\d+(\.\d+)? ?s\b.*it/s|[0-9]+%\|", text)
    # nbval checks only cells that were executed in the reference: all of them must have been
    assert all(c.get("execution_count") is not None for c in cells), "commit the executed smoke run"
    assert any(c.get("outputs") for c in cells), "the committed notebook holds its smoke outputs"


def _run_nbval(
    paths: list[Path],
    tmp: Path,
    env: dict | None = None,
    sanitize: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """nbval on `paths` in a pytest of its own (results and reports under `tmp`, unless `env` says)."""
    env = {
        **os.environ,
        "DCC_RESULTS_DIR": str(tmp / "results"),
        "DCC_REPORTS_DIR": str(tmp / "out"),
        **(env or {}),
    }
    (tmp / "pytest.ini").write_text("[pytest]\n")  # not the project's settings, nor any found above tmp
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval",
            "--nbval-current-env",
            *(["--nbval-sanitize-with", str(sanitize)] if sanitize else []),
            "-c",
            str(tmp / "pytest.ini"),
            "--rootdir",
            str(tmp),
            *map(str, paths),
        ],
        cwd=cwd or tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_nbval_fails_when_a_checked_number_changes(tmp_path):
    """Edit one stored number of the motivating example (R's bound, 4 decimals) in a copy."""
    src = ROOT / "notebooks" / "01_motivating_example.ipynb"
    nb = json.loads(src.read_text())
    edited = False
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", []))
            if "R bound alpha/(alpha+beta) = " in text and IGNORE not in _tags(cell):
                new = re.sub(
                    r"(R bound alpha/\(alpha\+beta\) = )(\d\.\d{4})",
                    lambda m: m[1] + f"{float(m[2]) + 0.0001:.4f}",
                    text,
                )
                assert new != text
                out["text"] = new.splitlines(keepends=True)
                edited = True
    assert edited, "the checked line to edit was not found in notebook 01"
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(src, work / "intact.ipynb")
    (work / "edited.ipynb").write_text(json.dumps(nb))
    result = _run_nbval([work / "intact.ipynb", work / "edited.ipynb"], tmp_path)
    report = result.stdout + result.stderr
    failed = re.findall(r"FAILED (\S+)", report)
    assert result.returncode == 1, report[-3000:]
    assert failed and all(f.startswith("nb/edited.ipynb") for f in failed), report[-3000:]
    assert "R bound alpha/(alpha+beta)" in report


def test_reports_runs_a_notebook_and_indexes_its_outputs(tmp_path, monkeypatch):
    from dcclib.errors import UserError
    from dcclib.lab import reports

    monkeypatch.setenv(reports.REPORTS_ENV, str(tmp_path / "unused"))
    monkeypatch.setenv("DCC_RESULTS_DIR", str(tmp_path / "unused"))
    with pytest.raises(UserError):
        reports.run(only="99", output=tmp_path / "out")
    with pytest.raises(UserError):
        reports.run(profile="quick", update_notebooks=True, output=tmp_path / "out")
    done = reports.run(only="01", output=tmp_path / "out", results=tmp_path / "results")
    assert [d["status"] for d in done] == ["ok"]
    out = tmp_path / "out"
    assert (out / "01_motivating_example.ipynb").is_file()
    for stem in ("01_motivating_ratio", "01_motivating_solutions"):
        assert (out / "tables" / f"{stem}.csv").is_file() and (out / "tables" / f"{stem}.md").is_file()
    for ext in ("png", "svg"):
        assert (out / "figures" / f"01_motivating_ratio.{ext}").is_file()
    index = (out / "index.md").read_text()
    assert "[01_motivating_example](01_motivating_example.ipynb) | smoke | cpu | ok" in index
    assert "figures/01_motivating_ratio.png" in index and "tables/01_motivating_ratio.csv" in index
    assert "profile smoke · device cpu · data: Eq. 3 Gaussian task" in index
    # a rerun replaces the notebook's outputs instead of piling them up
    (out / "figures" / "01_stale.png").write_text("x")
    stale = {
        "kind": "figure",
        "notebook": "01_motivating_example",
        "title": "stale",
        "files": ["figures/01_stale.png"],
        "profile": "smoke",
        "device": "cpu",
        "data": [],
    }
    (out / "meta" / "01_stale.figure.json").write_text(json.dumps(stale))
    reports.run(only="01", output=out, results=tmp_path / "results")
    assert not (out / "figures" / "01_stale.png").exists() and "stale" not in (out / "index.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_its_type_and_help(path):
    """`papermill --help-notebook` shows what the parameters cell assigns (device included),
    each with a type and a help text: one '=' per line, typed, no '=' inside a comment."""
    from papermill.inspection import inspect_notebook

    from dcclib.lab.reports import notebook_parameters

    shown = inspect_notebook(str(path))
    assert list(shown) == notebook_parameters(path)
    if "device" in notebook_parameters(path.parent / "04_table2_benchmarks.ipynb"):
        assert path.name.startswith(("01", "12")) or "device" in shown
    for name, p in shown.items():
        assert p["inferred_type_name"] not in ("None", ""), f"{name} has no type papermill can read"
        assert p["help"], f"{name} has no help"


def test_nbval_fails_when_the_condenser_changes(tmp_path):
    """The committed notebook 00, unchanged, run by nbval with the CONDENSER changed: the
    gradient distance scaled by 1.001 (a sitecustomize on PYTHONPATH patches dcclib.matching in
    the kernel before anything imports it). nbval must fail on the loss trajectory that notebook
    00 prints at the paper's inner-loop shape (K_i = 10, T = 5), not only on a closed form."""
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work / "quickstart.ipynb")
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(
        "import dcclib.matching as m\n"
        "_original = m.gradient_distance\n"
        "m.gradient_distance = lambda *a, **k: 1.001 * _original(*a, **k)\n"
    )
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(patch), old]))
    try:
        result = _run_nbval([work / "quickstart.ipynb"], tmp_path)
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report[-3000:]
    assert "network 1: loss" in report and "collective updates" in report, report[-3000:]


def test_no_paragraph_is_repeated_across_notebooks():
    """Shared text lives in the README; each notebook's Markdown is its own (pointers are short)."""
    seen: dict[str, str] = {}
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for para in "".join(cell["source"]).split("\n\n"):
                text = " ".join(para.split())
                if len(text) > 160:
                    assert seen.setdefault(text, path.stem) == path.stem, (
                        f"{path.stem} repeats {seen[text]}: {text[:80]}"
                    )
