"""The shipped reports are what the committed results store and the code give.

Two checks, so that a change of the code or of the store that alters a shipped number fails:

- everywhere (CI included, no data needed): every number of every shipped comparison table
  (reports/tables/*.csv: Tables 2, 3, 4, ...) is recomputed from the committed store through the
  same `Lab.cell` a notebook calls, on a machine without the data (the store's
  ``find_requested``), and must equal the shipped one;
- where the real data are present (a checkout with ./data, or $DCC_TEST_DATA_ROOT): nbval
  re-renders each shipped report notebook from a copy of the committed store with computing
  forbidden ($DCC_RENDER_ONLY) and compares every checked output with the shipped one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_notebooks import _run_nbval

from dcclib.lab.experiments import Lab
from dcclib.lab.paper_results import DATASET_LABELS, MODEL_LABELS, WARMUP_LABELS
from dcclib.lab.views import LABELS
from dcclib.lab.writers import is_comparison

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
# Shipped reports that only show stored results (or exact, seconds-long analyses): re-rendered
# with computing forbidden. 00 condenses inline; 11 scores its candidates into a cache, not the store.
INLINE = {"00_quickstart", "11_table2_selection_kip"}
CPU_DATA = ("mnist", "fashion-mnist", "cifar10-jpeg")  # what the cpu reports were made from
RELATIVE_DATA_PATHS = r"""
[relative-data-path]
regex: (?<![\w./-])data(/[\w.+@/-]*)?(?=[:\s),]|$)
replace: <PATH>

[relative-data-root]
regex: --out data\b
replace: --out <PATH>
"""
NO_DATA = {"01_motivating_example"}  # exact analyses: the same at every profile, without data


def _inverse(labels: dict) -> dict:
    return {v: k for k, v in labels.items()}


def _tables() -> list[Path]:
    out = []
    for record in sorted((REPORTS / "meta").glob("*.table.json")):
        rec = json.loads(record.read_text())
        csv = next((REPORTS / f for f in rec.get("files", []) if f.endswith(".csv")), None)
        if csv is None or rec.get("notebook") in INLINE:  # 11's cells are its own, not Lab.cell's
            continue
        df = pd.read_csv(csv)
        if is_comparison(df) and (df["n"] > 0).any():  # a table with numbers (not only "not run")
            out.append(csv)
    return out


@pytest.mark.parametrize("csv", _tables(), ids=lambda p: p.stem)
def test_every_shipped_table_number_is_the_committed_stores(csv, tmp_path, monkeypatch):
    df = pd.read_csv(csv, keep_default_na=False, na_values=[""])  # the warm-up "None" is a label
    monkeypatch.setenv("DCC_RESULTS_DIR", str(ROOT / "results"))
    monkeypatch.setenv("DCC_RENDER_ONLY", "1")  # read only: nothing may be computed
    meta = json.loads((REPORTS / "meta" / f"{csv.stem}.table.json").read_text())
    lab = Lab(meta["notebook"], profile=meta["profile"], data_root=tmp_path, stand_in="auto")
    datasets, methods, models = _inverse(DATASET_LABELS), _inverse(LABELS), _inverse(MODEL_LABELS)
    warmups = _inverse(WARMUP_LABELS)
    checked = 0
    for r in df.to_dict("records"):
        if not r["n"]:
            continue
        overrides = {} if r["warm-up"] == "-" else {"warmup": warmups[r["warm-up"]]}
        paper = datasets.get(r["dataset"], r["dataset"])
        cell = lab.cell(
            r["table"],
            paper,
            methods[r["method"]],
            int(r["ipc"]),
            models.get(r["model"], r["model"]),
            **overrides,
        )
        assert len(cell.accuracies) == r["n"], (csv.name, r)
        assert math.isclose(cell.mean, r["ours"], rel_tol=0, abs_tol=1e-9), (csv.name, r, cell.mean)
        checked += 1
    assert checked == int((df["n"] > 0).sum())


def _data_root() -> Path | None:
    for root in (os.environ.get("DCC_TEST_DATA_ROOT"), ROOT / "data", ROOT.parent / "shared" / "data"):
        if root and all((Path(root) / d).exists() for d in CPU_DATA):
            return Path(root)
    return None


def _shipped_notebooks() -> list[Path]:
    return [p for p in sorted(REPORTS.glob("[0-9][0-9]_*.ipynb")) if p.stem not in INLINE]


def _profile(nb: Path) -> str:
    return json.loads((REPORTS / "meta" / f"{nb.stem}.run.json").read_text())["profile"]


@pytest.mark.parametrize("nb", _shipped_notebooks(), ids=lambda p: p.stem[:2])
def test_a_shipped_report_rerenders_from_the_store_identically(nb, tmp_path):
    data = _data_root()
    if _profile(nb) != "smoke" and nb.stem not in NO_DATA and data is None:
        pytest.skip(f"the real data of profile {_profile(nb)} are not here ($DCC_TEST_DATA_ROOT)")
    pytest.importorskip("nbval")
    shutil.copytree(ROOT / "results", tmp_path / "results")  # a copy: the committed store stays as it is
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(nb, work / nb.name)
    # the shipped reports name data files relative to the checkout ("data/x.npz", the runner's
    # portable paths); a kernel run here names them absolutely: both stand for the same path
    sanitize = tmp_path / "sanitize.cfg"
    sanitize.write_text((ROOT / "nbval_sanitize.cfg").read_text() + RELATIVE_DATA_PATHS)
    env = {
        "DCC_RESULTS_DIR": str(tmp_path / "results"),
        "DCC_RENDER_ONLY": "1",
        "DCC_DATA_ROOT": str(data or tmp_path / "no-data"),
        "PYTHONPATH": str(ROOT),
    }
    # run where the runner executes the notebooks (relative paths resolve alike)
    result = _run_nbval([work / nb.name], tmp_path, env, sanitize, cwd=ROOT / "notebooks")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
