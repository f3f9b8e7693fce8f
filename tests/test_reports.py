"""The reports runner and its parts without running a notebook: profile, paths, statuses, index, CLI."""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from dcclib.errors import UserError
from dcclib.lab import portable, profile_choice, report_index, reports, writers
from dcclib.lab.store import repo_root

ROOT = Path(__file__).resolve().parents[1]
IDX = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _absolute(text: str) -> list[str]:
    """Absolute paths in `text` (as JSON or Markdown holds them)."""
    return re.findall(r"(?<![\w.~/:-])/(?:[\w.+@-]+/)+[\w.+@-]*", text)


# ------------------------------------------------------------------------------ profile choice
def test_cuda_chooses_quick_and_paper_only_when_asked():
    name, reason = profile_choice.choose_profile(True, [], False)
    assert name == "quick" and "CUDA device found" in reason and "--profile paper" in reason
    assert profile_choice.choose_profile(True, ["mnist"], True, "paper") == (
        "paper",
        "asked for (--profile paper)",
    )
    assert profile_choice.choose_profile(False, [], False, "quick")[0] == "quick"


def test_real_data_chooses_cpu_and_says_where():
    found = ["mnist", "fashionmnist", "cifar10"]
    assert profile_choice.choose_profile(False, found, False, where="../shared/data") == (
        "cpu",
        "no CUDA device; real data found in ../shared/data (mnist, fashionmnist, cifar10)",
    )
    name, reason = profile_choice.choose_profile(False, ["mnist"], False, where="data")
    assert name == "cpu" and "missing there: fashionmnist, cifar10 (their cells are not run)" in reason
    name, reason = profile_choice.choose_profile(True, found, False, device="cpu")
    assert name == "cpu" and reason.startswith("--device cpu;")


def test_online_chooses_cpu_offline_smoke():
    name, reason = profile_choice.choose_profile(False, [], True, where="data")
    assert name == "cpu" and "online: they are downloaded into data" in reason
    name, reason = profile_choice.choose_profile(False, [], False, where="data")
    assert name == "smoke" and "no real data in data" in reason and "offline" in reason
    assert "stand-in" in reason
    assert "$DCC_OFFLINE=1" in profile_choice.choose_profile(False, [], None)[1]


def test_unknown_profile_is_refused():
    with pytest.raises(UserError, match="unknown profile 'fast'; choose one of: auto, smoke"):
        profile_choice.choose_profile(False, [], False, "fast")


def test_update_notebooks_makes_auto_smoke(tmp_path, monkeypatch):
    monkeypatch.setattr(profile_choice, "_cuda_available", lambda: pytest.fail("probed the machine"))
    name, reason, download = profile_choice.resolve_profile("auto", tmp_path, update_notebooks=True)
    assert name == "smoke" and "nbval references" in reason and download == []


def test_auto_on_this_machine_is_quick_and_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv(profile_choice.OFFLINE_ENV, "1")
    monkeypatch.setattr(profile_choice, "_cuda_available", lambda: False)
    assert profile_choice.resolve_profile("auto", tmp_path)[:2] == (
        "smoke",
        f"no CUDA device; no real data in {portable.portable_path(tmp_path)} (mnist, fashionmnist, cifar10); "
        "offline ($DCC_OFFLINE=1): the embedded stand-in digits (not paper numbers)",
    )


def test_probe_data_finds_the_loaders_layouts(tmp_path):
    assert profile_choice.probe_data(tmp_path) == []
    for name in IDX:
        (tmp_path / "mnist").mkdir(exist_ok=True)
        (tmp_path / "mnist" / f"{name}.gz").write_bytes(b"")
        (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (tmp_path / "FashionMNIST" / "raw" / name).write_bytes(b"")
    assert profile_choice.probe_data(tmp_path) == ["mnist", "fashionmnist"]
    (tmp_path / "cifar10-jpeg").mkdir()
    (tmp_path / "cifar10-jpeg" / "train.tar.gz").write_bytes(b"")
    assert "cifar10" not in profile_choice.probe_data(tmp_path)  # the test split is missing
    (tmp_path / "cifar10-jpeg" / "test.tar.gz").write_bytes(b"")
    assert profile_choice.probe_data(tmp_path) == ["mnist", "fashionmnist", "cifar10"]


def test_online_check_is_skippable_and_bounded(monkeypatch):
    monkeypatch.setenv(profile_choice.OFFLINE_ENV, "1")
    assert profile_choice.is_online(["https://www.cs.toronto.edu/x"]) is None
    monkeypatch.delenv(profile_choice.OFFLINE_ENV)
    assert profile_choice.is_online(["http://127.0.0.1:9/"], timeout=1.0) is False  # refused at once
    assert profile_choice.is_online([]) is False


# ------------------------------------------------------------------------------------ paths
def test_portable_paths():
    root = Path("/home/me/dcc")
    assert portable.portable_path("/home/me/dcc/reports/01.ipynb", root) == "reports/01.ipynb"
    assert portable.portable_path("/home/me/shared/data", root) == "../shared/data"
    assert portable.portable_path("/tmp/pytest-7/test0/out", root) == ".../test0/out"
    assert portable.portable_path("data", root) == "data"
    text = "store /home/me/dcc/results; see https://www.cs.toronto.edu/~kriz/a.tar.gz; ratio 3/8, β/α"
    assert portable.portable_text(text, root) == (
        "store results; see https://www.cs.toronto.edu/~kriz/a.tar.gz; ratio 3/8, β/α"
    )


def test_portable_notebook_rewrites_what_papermill_records():
    root = Path("/home/me/dcc")
    nb = {
        "metadata": {
            "papermill": {
                "input_path": "/home/me/dcc/notebooks/04_table2.ipynb",
                "output_path": "/home/me/dcc/reports/.04_table2.partial.ipynb",
                "parameters": {"profile": "cpu", "data_root": "/home/me/shared/data"},
                "default_parameters": {},
                "duration": 1.5,
            }
        },
        "cells": [
            {
                "cell_type": "code",
                "metadata": {"tags": ["injected-parameters"]},
                "source": ['profile = "cpu"\n', 'data_root = "/home/me/shared/data"\n'],
                "outputs": [],
            },
            {
                "cell_type": "code",
                "metadata": {},
                "source": "print(lab.environment())",
                "outputs": [
                    {
                        "output_type": "stream",
                        "name": "stdout",
                        "text": ["results store: /home/me/dcc/results\n"],
                    },
                    {"output_type": "execute_result", "data": {"text/plain": "'/home/me/dcc'"}},
                    {"output_type": "stream", "name": "stdout", "text": "/home/me/dcc2/x and 61.6 ± 0.4\n"},
                ],
            },
        ],
    }
    portable.portable_notebook(
        nb, root, root / "notebooks" / "04_table2.ipynb", root / "reports" / "04_table2.ipynb"
    )
    pm = nb["metadata"]["papermill"]
    assert pm["input_path"] == "notebooks/04_table2.ipynb"
    assert pm["output_path"] == "reports/04_table2.ipynb"  # the final file, not the partial one
    assert pm["parameters"] == {"profile": "cpu", "data_root": "../shared/data"}
    assert nb["cells"][0]["source"][1] == 'data_root = "../shared/data"\n'
    outs = nb["cells"][1]["outputs"]
    assert outs[0]["text"] == ["results store: results\n"] and outs[1]["data"]["text/plain"] == "'.'"
    # every other absolute path made portable (next to the checkout: relative); numbers untouched
    assert outs[2]["text"] == "../dcc2/x and 61.6 ± 0.4\n"


def test_a_table_record_holds_no_absolute_path(tmp_path):
    df = _frame([(60.0, 61.6, 0.4)], profile="paper")
    meta = {
        "notebook": "04_table2_benchmarks",
        "profile": "paper",
        "device": "cpu",
        "data": [f"CIFAR-10 [{tmp_path}/cifar10-jpeg]"],
        "output_dir": str(tmp_path / "out"),
    }
    files = writers.write_table(df, df, "04_table2", "Table 2", meta)
    assert [f.name for f in files] == ["04_table2.md", "04_table2.csv"]
    text = (tmp_path / "out" / "meta" / "04_table2.table.json").read_text()
    assert str(tmp_path) not in text and str(ROOT) not in text and _absolute(text) == []
    rec = json.loads(text)
    assert rec["files"] == ["tables/04_table2.md", "tables/04_table2.csv"] and "output_dir" not in rec
    assert rec["status"]["state"] == "differs" and rec["status"]["compared"] == 1
    md = (tmp_path / "out" / "tables" / "04_table2.md").read_text()
    assert "status: differs: mean |Δ| 1.6 points over 1 cell" in md and str(tmp_path) not in md


def test_a_status_the_notebook_states_is_kept(tmp_path):
    """Table 6 compares with the paper without numbers: the notebook states its status."""
    df = pd.DataFrame({"group": ["Fish"], "classes": [16]})
    meta = {"notebook": "12_table6", "profile": "smoke", "device": "cpu", "data": ["lists"]}
    meta |= {"output_dir": str(tmp_path), "status": "reproduced: all 6 groups hold the paper's classes"}
    writers.write_table(df, df, "12_table6", "Table 6", meta)
    rec = json.loads((tmp_path / "meta" / "12_table6.table.json").read_text())
    assert rec["status"] == {
        "state": "reproduced",
        "text": "reproduced: all 6 groups hold the paper's classes",
    }
    assert "status: reproduced: all 6 groups" in (tmp_path / "tables" / "12_table6.md").read_text()


# -------------------------------------------------------------------------------- statuses
def _frame(cells: list[tuple], profile: str = "cpu", data: str = "CIFAR-10 [cifar10-jpeg]") -> pd.DataFrame:
    """A comparison frame: one row per (ours, paper, paper std); ours None = not run."""
    rows = []
    for ours, paper, std in cells:
        ran = ours is not None
        stand_in = "stand-in" in data
        rows.append(
            {
                "table": "table2",
                "profile": profile,
                "dataset": "CIFAR-10",
                "data used": data if ran or stand_in else "CIFAR-10: not available here",
                "ours": ours if ran else math.nan,
                "paper": paper,
                "paper std": std,
                "difference": ours - paper if ran and not stand_in else math.nan,
                "note": "stand-in data: not comparable with the paper" if stand_in else "",
            }
        )
    return pd.DataFrame(rows)


def test_band_is_two_paper_stds_or_one_point():
    assert writers.band(0.4) == pytest.approx(0.8) and writers.band(math.nan) == writers.BAND_NO_STD == 1.0
    assert writers.within_band(-0.8, 0.4) and not writers.within_band(0.81, 0.4)
    assert writers.within_band(1.0, math.nan) and not writers.within_band(-1.1, None)
    assert "2 × the paper's std (1.0 point where the paper gives no std)" in writers.BAND_TEXT


def test_reproduced_at_the_paper_profile():
    status = writers.table_status(
        _frame([(61.0, 61.6, 0.4), (44.0, 44.5, math.nan)], "paper"), "paper", "04_x"
    )
    assert status["state"] == "reproduced" and status["within"] == 2
    assert status["text"] == (
        "reproduced: all 2 compared cells within the paper's band (mean |Δ| 0.6 points); "
        "CIFAR-10 from a lossy JPEG copy (cifar10-jpeg), not the original files"
    )
    original = _frame([(61.0, 61.6, 0.4)], "paper", data="CIFAR-10 [cifar-10-batches-py]")
    assert "JPEG" not in writers.table_status(original, "paper", "04_x")["text"]


def test_differs_at_reduced_settings_says_so():
    cells = [(50.0, 61.6, 0.4)] * 5 + [(61.6, 61.6, 0.4)]
    status = writers.table_status(_frame(cells, "cpu"), "cpu", "04_table2_benchmarks")
    assert status["state"] == "differs"
    assert status["text"] == (
        "differs at reduced settings (profile cpu): mean |Δ| 9.7 points over 6 cells "
        "(1 within the paper's band, max |Δ| 11.6)"
    )
    reproduced = writers.table_status(_frame([(61.6, 61.6, 0.4)], "quick"), "quick")
    assert reproduced["text"].startswith(
        "reproduced at reduced settings (profile quick): all 1 compared cell "
    )


def test_stand_in_data_is_not_a_reproduction():
    df = _frame(
        [(63.9, 14.4, 2.0), (57.2, 34.0, 0.7)], "smoke", data="embedded-mnist (stand-in for CIFAR-10)"
    )
    status = writers.table_status(df, "smoke", "04_table2_benchmarks")
    assert status["state"] == "not a reproduction" and status["stand_in"] == 2
    assert status["text"] == "not a reproduction (stand-in data, profile smoke)"


def test_not_run_gives_the_command():
    status = writers.table_status(
        _frame([(None, 12.2, math.nan)] * 3, "cpu"), "cpu", "03_table1_fine_grained"
    )
    assert status["state"] == "not run" and status["not_run"] == 3
    cmd = "python -m dcclib.lab.reports --profile cpu --only 03 --data-root DIR"
    assert status["command"] == cmd and status["text"] == f"not run (no data here for CIFAR-10): `{cmd}`"
    assert "--profile quick --only 03" in writers.not_run_command("03_table1", "smoke")
    part = writers.table_status(_frame([(61.0, 61.6, 0.4), (None, 12.0, 1.0)], "cpu"), "cpu", "04_t")
    assert part["state"] == "reproduced" and part["text"].endswith(
        "; 1 cell not run: `python -m dcclib.lab.reports --profile cpu --only 04 --data-root DIR`"
    )


def test_outputs_without_paper_numbers_are_shown():
    other = pd.DataFrame({"beta/alpha": [0.5], "R(S)": [0.3]})
    assert writers.table_status(other, "smoke", "01_x", ["Eq. 3 Gaussian task (exact, float64)"]) == {
        "state": "shown",
        "text": "shown (profile smoke; no paper number to compare)",
    }
    no_paper = writers.table_status(_frame([(61.0, math.nan, math.nan)], "paper"), "paper")
    assert no_paper["state"] == "shown" and "no paper number" in no_paper["text"]
    fig = {"profile": "cpu", "notebook": "07_figure5", "data": ["Automobile: not available here"]}
    assert writers.figure_status(fig)["state"] == "not run"
    assert writers.figure_status({**fig, "data": ["embedded-mnist (stand-in for MNIST)"]})["state"] == (
        "not a reproduction"
    )
    assert writers.figure_status({**fig, "status": "not run (no GPU)"}) == {
        "state": "not run",
        "text": "not run (no GPU)",
    }


def test_a_figure_whose_data_are_missing_has_an_index_row_and_no_picture(tmp_path):
    meta = {
        "notebook": "07_figure5_automobile",
        "profile": "cpu",
        "device": "cpu",
        "output_dir": str(tmp_path),
    }
    meta["data"] = ["Automobile: not available here"]
    writers.write_not_run("figure", "07_figure5", "Figure 5: synthetic images", meta)
    assert not (tmp_path / "figures").exists()
    index = report_index.write_index(tmp_path).read_text()
    cmd = "python -m dcclib.lab.reports --profile cpu --only 07 --data-root DIR"
    status = f"not run (no data here for Automobile): `{cmd}`"
    row = f"| figure: Figure 5: synthetic images | 07_figure5_automobile | {status} |"
    assert row in index
    assert "not drawn" in index and "![" not in index


# ------------------------------------------------------------------------------------- costs
def test_costs_table_notebook_by_profile():
    costs = report_index.update_costs({}, "04_table2", "smoke", 47.6, "cpu: 2 cores", "2026-11-29")
    costs = report_index.update_costs(costs, "04_table2", "cpu", 1230.0, "cpu: 2 cores", "2026-11-30")
    costs = report_index.update_costs(costs, "01_motivating", "smoke", 11.0, "cpu: 2 cores", "2026-11-29")
    assert costs["04_table2"]["smoke"] == {"seconds": 47.6, "device": "cpu: 2 cores", "date": "2026-11-29"}
    assert report_index.costs_table(costs) == [
        "| notebook | smoke | cpu |",
        "|---|---|---|",
        "| 01_motivating | 11 s (cpu: 2 cores, 2026-11-29) | - |",
        "| 04_table2 | 48 s (cpu: 2 cores, 2026-11-29) | 20 min (cpu: 2 cores, 2026-11-30) |",
    ]
    assert report_index.costs_table({}) == []
    assert report_index.format_seconds(9000) == "2.5 h"
    # each profile keeps its best run: a slower re-render does not replace it, a faster run does
    slower = report_index.update_costs(costs, "04_table2", "cpu", 4000.0, "cpu: 2 cores", "2026-12-01")
    assert slower["04_table2"]["cpu"]["seconds"] == 1230.0
    faster = report_index.update_costs(costs, "04_table2", "cpu", 600.0, "cpu: 8 cores", "2026-12-02")
    assert faster["04_table2"]["cpu"] == {"seconds": 600.0, "device": "cpu: 8 cores", "date": "2026-12-02"}


def test_a_rerun_writes_beside_the_shipped_reports_never_over_them(tmp_path, monkeypatch, capsys):
    from dcclib.lab import reports, writers

    monkeypatch.delenv(writers.REPORTS_ENV, raising=False)
    shipped = writers.shipped_reports_dir()
    assert writers.default_reports_dir() == shipped / "local"
    assert "/reports/local/" in (shipped.parent / ".gitignore").read_text().split()
    monkeypatch.setenv(writers.REPORTS_ENV, str(tmp_path / "mine"))
    assert writers.default_reports_dir() == tmp_path / "mine"
    # --publish replaces a shipped report only at the same or a higher profile, else one line, exit 2
    out = tmp_path / "shipped"
    (out / "meta").mkdir(parents=True)
    (out / "meta" / "01_motivating_example.run.json").write_text(json.dumps({"profile": "cpu"}))
    chosen = [Path("notebooks/01_motivating_example.ipynb")]
    with pytest.raises(
        UserError, match="would replace the shipped 01_motivating_example made at profile cpu"
    ):
        reports.check_publish(out, chosen, "smoke")
    reports.check_publish(out, chosen, "cpu")
    reports.check_publish(out, chosen, "quick")
    monkeypatch.setattr(reports, "shipped_reports_dir", lambda: out)
    before = sorted(p.name for p in out.rglob("*"))
    assert reports.main(["--profile", "smoke", "--only", "01", "--publish"]) == 2
    assert "would replace the shipped" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written
    assert reports.main(["--only", "01", "--publish", "--output", str(tmp_path / "x")]) == 2


def _write_records(out: Path) -> None:
    meta = out / "meta"
    meta.mkdir(parents=True)
    run = {
        "kind": "run",
        "notebook": "04_table2_benchmarks",
        "files": ["04_table2_benchmarks.ipynb"],
        "profile": "cpu",
        "profile_reason": "no CUDA device; real data found in ../shared/data (mnist, fashionmnist, cifar10)",
        "data_root": "../shared/data",
        "device": "cpu",
        "parameters": {"profile": "cpu"},
        "status": "ok",
        "seconds": 1230.0,
    }
    (meta / "04_table2_benchmarks.run.json").write_text(json.dumps(run))
    (out / "tables").mkdir()
    _frame([(50.0, 61.6, 0.4)], "cpu").to_csv(out / "tables" / "04_table2.csv", index=False)
    table = {  # an older record: no status, derived from its CSV
        "kind": "table",
        "notebook": "04_table2_benchmarks",
        "title": "Table 2",
        "files": ["tables/04_table2.md", "tables/04_table2.csv"],
        "profile": "cpu",
        "device": "cpu",
        "data": ["CIFAR-10 [cifar10-jpeg]"],
    }
    (meta / "04_table2.table.json").write_text(json.dumps(table))
    figure = {**table, "kind": "figure", "title": "Table 2 as bars", "files": ["figures/04_table2.png"]}
    (meta / "04_table2.figure.json").write_text(json.dumps(figure))
    costs = report_index.update_costs({}, "04_table2_benchmarks", "cpu", 1230.0, "cpu: 2 cores", "2026-11-30")
    (meta / report_index.COSTS_FILE).write_text(json.dumps(costs))


def test_index_shows_profile_reason_statuses_and_costs(tmp_path):
    out = tmp_path / "reports"
    _write_records(out)
    index = report_index.write_index(out).read_text()
    assert (
        "- profile **cpu** for notebooks 04: no CUDA device; real data found in ../shared/data "
        "(mnist, fashionmnist, cifar10); data root ../shared/data. Settings: K_o 20 of 1000" in index
    )
    differs = r"differs at reduced settings (profile cpu): mean \|Δ\| 11.6 points over 1 cell"
    assert f"| table: Table 2 | 04_table2_benchmarks | {differs}" in index  # | escaped in the table
    assert f"| figure: Table 2 as bars | 04_table2_benchmarks | as its table: {differs}" in index
    assert "| 04_table2_benchmarks | 20 min (cpu: 2 cores, 2026-11-30) |" in index
    assert (
        "[04_table2_benchmarks](04_table2_benchmarks.ipynb) | cpu | cpu | ok | 1230 | profile=cpu |" in index
    )
    assert "within the paper's band when |ours − paper| ≤ 2 × the paper's std" in index
    assert _absolute(index) == [] and str(tmp_path) not in index


# ---------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--profile", "fast"],
            "error: unknown profile 'fast'; choose one of: auto, smoke, cpu, quick, paper",
        ),
        (["--profiel", "cpu"], "error: unrecognized arguments: --profiel cpu"),
        (["--data-root", "no/such/folder"], "error: --data-root no/such/folder: no such folder"),
        (["--update-notebooks", "--profile", "quick"], "error: --update-notebooks writes nbval references"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    monkeypatch.chdir(tmp_path)
    code = reports.main([*argv, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_auto_run_passes_the_data_root_by_environment(tmp_path, monkeypatch, capsys):
    """The runner with a stand-in for papermill: what it records and what the kernels get."""
    import papermill

    data = tmp_path / "data"
    for sub in ("mnist", "fashion-mnist"):
        (data / sub).mkdir(parents=True)
        for name in IDX:
            (data / sub / f"{name}.gz").write_bytes(b"")
    (data / "cifar10-jpeg" / "train").mkdir(parents=True)
    (data / "cifar10-jpeg" / "test").mkdir()
    seen = {}

    def execute(src, dst, parameters, **kwargs):
        import os

        seen.update(parameters=parameters, data_root=os.environ.get(reports.DATA_ENV))
        nb = json.loads(Path(src).read_text())
        nb["metadata"]["papermill"] = {"input_path": src, "output_path": dst, "parameters": parameters}
        Path(dst).write_text(json.dumps(nb))

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(profile_choice, "_cuda_available", lambda: False)
    monkeypatch.setenv(profile_choice.OFFLINE_ENV, "1")
    monkeypatch.delenv(reports.DATA_ENV, raising=False)
    out = tmp_path / "out"
    code = reports.main(["--only", "01", "--data-root", str(data), "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.splitlines()[0] == (
        f"[reports] profile cpu: no CUDA device; real data found in {portable.portable_path(data)} "
        "(mnist, fashionmnist, cifar10)"
    )
    assert seen == {"parameters": {"profile": "cpu"}, "data_root": str(data.resolve())}
    assert reports.DATA_ENV not in __import__("os").environ  # set for the kernels only
    executed = json.loads((out / "01_motivating_example.ipynb").read_text())
    assert executed["metadata"]["papermill"]["input_path"] == "notebooks/01_motivating_example.ipynb"
    assert not executed["metadata"]["papermill"]["output_path"].startswith("/")
    record = (out / "meta" / "01_motivating_example.run.json").read_text()
    assert _absolute(record) == [] and str(tmp_path) not in record
    rec = json.loads(record)
    assert rec["profile"] == "cpu" and rec["profile_reason"].startswith("no CUDA device; real data found")
    costs = json.loads((out / "meta" / report_index.COSTS_FILE).read_text())
    assert list(costs["01_motivating_example"]) == ["cpu"]
    index = (out / "index.md").read_text()
    assert "profile **cpu** for notebooks 01: no CUDA device; real data found in" in index
    assert _absolute(index) == []
    assert repo_root() is not None


# ------------------------------------------------------------------------------ nbval sanitizer
def test_nbval_sanitizer_hides_paths_and_times_not_numbers():
    from nbval.plugin import get_sanitize_patterns

    assert "--nbval-sanitize-with nbval_sanitize.cfg" in (ROOT / "pyproject.toml").read_text()
    patterns = get_sanitize_patterns((ROOT / "nbval_sanitize.cfg").read_text())  # as nbval reads it
    assert len(patterns) == 3

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert sanitize("results store: /tmp/dcc-nbval-x1/results\noutputs: .../pytest-3/reports") == (
        "results store: <PATH>\noutputs: <PATH>"
    )
    assert sanitize("computed set 37f8 (dc, ipc 10) in 2.1 s; took 4 min") == (
        "computed set 37f8 (dc, ipc 10) in <TIME>; took <TIME>"
    )
    kept = [
        "R bound alpha/(alpha+beta) = 0.3333",
        "DCC 61.6 ± 0.4 · paper 62.1 (Δ -0.5) in 10 sets",
        "loss 0.125 after 20 outer iterations, 3/8 img/cls",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "| CIFAR-10 | 1 | DSAC | 34.0 | 0.7 |",
    ]
    assert [sanitize(t) for t in kept] == kept


def test_committed_reports_hold_no_machine_paths():
    """What reports/ holds (executed notebooks, tables, index, performance.md) names files
    relative to the repository, never the folders of the machine that made it."""
    root = repo_root() or Path(__file__).resolve().parents[1]
    reports_dir = root / "reports"
    if not reports_dir.is_dir():
        pytest.skip("no reports/ folder")
    pattern = re.compile(r"(?<![\w.])/(?:home|root|tmp|work|Users|mnt|scratch)/")
    offenders = []
    for path in sorted(reports_dir.rglob("*")):
        if (reports_dir / "local") in path.parents:
            continue  # reports/local/: a reader's own reruns, git-ignored, never shipped
        if path.suffix in {".md", ".ipynb", ".json", ".csv", ".jsonl"} and path.is_file():
            text = path.read_text(errors="replace")
            if str(root) in text or pattern.search(text):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_outputs_of_condensing_say_the_profiles_reductions(tmp_path):
    """A table made from condensed sets carries the profile's reductions next to its numbers."""
    from dcclib.lab.experiments import Lab

    lab = Lab(
        "04_table2_benchmarks", profile="cpu", output_dir=str(tmp_path), results_dir=str(tmp_path / "r")
    )
    assert "settings" not in lab._meta(None)  # nothing condensed or evaluated yet
    lab.set_config(lab.use("mnist"), "dc", 1, 0)
    line = writers.labels_line(lab._meta(["MNIST"]))
    assert "settings: profile cpu: K_o 20 of 1000, gamma_o 5 (paper 250), K_i <= 5, gamma_i scaled" in line
    assert "T <= 5, 32 real/class" in line


def test_the_environment_line_names_the_dcclib_a_notebook_imported(monkeypatch):
    from dcclib import fingerprint
    from dcclib.lab.experiments import Lab

    text = Lab("99_test", "smoke").environment()
    assert text.startswith(f"dcclib imported from: dcclib (algorithm {fingerprint.ALGORITHM_VERSION}, ")
    assert f"numeric source {fingerprint.source_hash()[:12]}: as released" in text
    monkeypatch.setattr(fingerprint, "SOURCE_HASH", "0" * 64)  # a checkout whose numerics were edited
    assert "EDITED since the version was set" in Lab("99_test", "smoke").environment()
