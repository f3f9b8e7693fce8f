"""Notebook parameters: one check of names, types and ranges, run by the notebook and the runner."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dcclib.errors import UserError
from dcclib.lab.parameters import (
    Parameter,
    check,
    check_notebook_parameters,
    declared_in,
    notebook_declared,
)
from dcclib.lab.reports import check_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NB12 = ROOT / "notebooks" / "12_table6_fine_grained_groups.ipynb"
NB04 = ROOT / "notebooks" / "04_table2_benchmarks.ipynb"

CELL = """
profile: str = "smoke"
device: "Optional[str]" = None
seed: int = 0
threads: "Optional[int]" = None
ipcs: "Optional[list[int]]" = None
groups: "Optional[list[str]]" = None
image_size: "Literal[8, 16, 32, 64]" = 32
lr: float = 0.01
flag: bool = False
schedule: "Optional[dict]" = None
steps: "int | dict[str, int]" = {"smoke": 20}
model: "Union[str, dict[str, str]]" = "convnet"
"""
DECLARED = declared_in(CELL)


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def _defaults(nb: Path) -> dict:
    """The values the parameters cell of `nb` assigns (literals)."""
    source = "".join(next(c for c in _cells(nb) if "parameters" in c["metadata"].get("tags", []))["source"])
    return {
        n.target.id: ast.literal_eval(n.value) for n in ast.parse(source).body if isinstance(n, ast.AnnAssign)
    }


def test_declarations_are_read_with_their_annotations():
    assert DECLARED["ipcs"] == Parameter("ipcs", "Optional[list[int]]")
    assert DECLARED["seed"].annotation == "int"
    assert list(DECLARED)[:3] == ["profile", "device", "seed"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"ipcs": 10}, {"ipcs": [10]}),  # papermill -p ipcs 10
        ({"ipcs": "[1, 10]"}, {"ipcs": [1, 10]}),  # JSON text
        ({"ipcs": "1,10"}, {"ipcs": [1, 10]}),  # comma-separated
        ({"groups": "automobile"}, {"groups": ["automobile"]}),  # one bare word
        ({"groups": '["automobile", "truck"]'}, {"groups": ["automobile", "truck"]}),
        ({"groups": None}, {"groups": None}),
        ({"lr": 1}, {"lr": 1.0}),
        ({"seed": 3.0}, {"seed": 3}),
        ({"schedule": '{"outer_iterations": 8}'}, {"schedule": {"outer_iterations": 8}}),
        ({"steps": 5}, {"steps": 5}),
        ({"steps": {"cpu": 7}}, {"steps": {"cpu": 7}}),
        ({"device": "cuda:1", "profile": "cpu"}, {"device": "cuda:1", "profile": "cpu"}),
        ({"image_size": 64}, {"image_size": 64}),
        ({"model": {"cpu": "lenet"}}, {"model": {"cpu": "lenet"}}),
        ({"model": '{"cpu": "lenet"}'}, {"model": {"cpu": "lenet"}}),
    ],
)
def test_values_are_read_as_declared(given, expected):
    assert check(given, DECLARED) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"bogus": 1}, "no parameter 'bogus'"),
        ({"image_size": "abc"}, "wants one of 8, 16, 32, 64, got 'abc'"),
        ({"image_size": -32}, "wants one of 8, 16, 32, 64, got -32"),
        ({"seed": -1}, "seed wants int (at least 0)"),
        ({"seed": 1.5}, "seed wants int"),
        ({"seed": True}, "seed wants int"),
        ({"threads": 0}, "threads wants Optional[int] (above 0)"),
        ({"ipcs": "[1, -10]"}, "ipcs wants Optional[list[int]] (above 0)"),
        ({"ipcs": "ten"}, "ipcs wants"),
        ({"lr": float("nan")}, "lr wants float"),
        ({"lr": "fast"}, "lr wants float"),
        ({"flag": "yes"}, "flag wants bool"),
        ({"profile": "fast"}, "profile wants one of smoke, cpu, quick, paper"),
        ({"profile": 3}, "profile wants str"),
        ({"device": "gpu"}, "device wants cpu, cuda, cuda:N, auto or None"),
        ({"schedule": "[1]"}, "schedule wants Optional[dict]"),
        ({"model": 3}, "model wants Union[str, dict[str, str]]"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(given, words):
    with pytest.raises(UserError) as exc:
        check(given, DECLARED, "notebook x")
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_every_notebook_runs_the_check_right_after_its_parameters():
    for nb in NOTEBOOKS:
        cells = _cells(nb)
        at = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        assert "check_notebook_parameters(globals())" in "".join(cells[at + 1]["source"]), nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_notebooks_defaults_pass_its_own_declaration(nb):
    declared = notebook_declared(nb)
    assert all(p.annotation != "any" for p in declared.values()), "every parameter is annotated"
    defaults = _defaults(nb)
    assert check(defaults, declared) == defaults


def test_the_notebook_check_reads_the_names_papermill_injected():
    annotations = {"seed": int, "groups": "Optional[list[str]]"}
    ns = {"__annotations__": annotations, "seed": 0, "groups": "automobile", "In": ["", "x: int = 1"]}
    check_notebook_parameters(ns)
    assert ns["groups"] == ["automobile"]
    ns = {**ns, "bogus": 1, "In": ["", "seed: int = 0", "# Parameters\nbogus = 1\nseed = 2\n", "check(...)"]}
    with pytest.raises(UserError, match="no parameter 'bogus'"):
        check_notebook_parameters(ns)
    ns = {"__annotations__": annotations, "seed": -2, "groups": None, "In": []}
    with pytest.raises(UserError, match="seed wants int"):
        check_notebook_parameters(ns)


def test_the_check_reads_annotations_quoted_twice_as_under_pep_563():
    ns = {"__annotations__": {"device": "'Optional[str]'", "ipcs": "'Optional[list[int]]'"}, "In": []}
    check_notebook_parameters({**ns, "device": None, "ipcs": "10"})
    with pytest.raises(UserError, match="device wants"):
        check_notebook_parameters({**ns, "device": "gpu", "ipcs": None})


def test_the_sweep_plans_a_notebook_through_its_parameter_check(tmp_path):
    from dcclib.lab.sweep import plan

    sweep = plan("smoke", only="02", results=tmp_path / "results")
    assert sweep.jobs() and all(j.state != "failed" for j in sweep.jobs())


def test_the_runner_checks_types_per_notebook_before_anything_runs():
    assert check_parameters([NB12], {"groups": "automobile", "profile": "cpu"})[NB12.stem] == {
        "groups": ["automobile"],
        "profile": "cpu",
    }
    with pytest.raises(UserError, match="image_size wants one of"):
        check_parameters([NB12], {"image_size": "abc"})
    with pytest.raises(UserError, match="choose notebooks with --only"):
        check_parameters([NB12, NB04], {"ipcs": 1})  # 12 has no ipcs


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "dcclib.lab.reports", "--only", "12", "--param", "image_size=abc"],
        ["-m", "dcclib.lab.reports", "--only", "12", "--param", "image_size=-32"],
        ["-m", "dcclib.lab.reports", "--only", "04", "--param", "ipcs=[0]"],
        ["-m", "dcclib.cli", "sweep", "--plan", "--only", "04", "--param", "seed=-1"],
    ],
)
def test_runner_and_sweep_refuse_a_bad_type_in_one_line_and_write_nothing(tmp_path, args):
    out = tmp_path / "reports"
    proc = _cli(*args, "--output" if "reports" in args[1] else "--results", str(out), cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def papermill_run(tmp_path_factory):
    """Notebook 12 (class lists only: seconds) through plain papermill with the given -p's."""
    pytest.importorskip("papermill")
    folder = tmp_path_factory.mktemp("pm")

    def go(*params: str) -> tuple[int, str, dict]:
        out = folder / "out.ipynb"
        args = [sys.executable, "-m", "papermill", str(NB12), str(out), "-k", "python3", "--no-progress-bar"]
        for p in params:
            args += ["-p", *p.split(" ", 1)]
        env_dir = folder / "reports"
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=folder,
            env={**_env(), "DCC_REPORTS_DIR": str(env_dir)},
        )
        return proc.returncode, proc.stdout + proc.stderr, json.loads(out.read_text()) if out.exists() else {}

    return go


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DCC_")}


def _errors(nb: dict) -> list[str]:
    return [
        o["evalue"] for c in nb.get("cells", []) for o in c.get("outputs", []) if o["output_type"] == "error"
    ]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        (["bogus 1"], "no parameter 'bogus'"),
        (["image_size abc"], "image_size wants one of 8, 16, 32, 64, got 'abc'"),
    ],
)
def test_plain_papermill_stops_at_the_notebooks_own_check(papermill_run, params, words):
    rc, text, nb = papermill_run(*params)
    assert rc != 0
    assert [e for e in _errors(nb) if words in e], text[-2000:]
    error = next(o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error")
    assert error["traceback"] == [f"UserError: {error['evalue']}"]  # one line in the notebook


@pytest.mark.parametrize("groups", ['["automobile"]'])  # a bare word: test_values_are_read_as_declared
def test_plain_papermill_reads_a_group_as_a_word_or_a_json_list(papermill_run, groups):
    rc, text, nb = papermill_run(f"groups {groups}")
    assert rc == 0, text[-2000:]
    printed = "".join(
        "".join(o.get("text", ""))
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if o.get("name") == "stdout"
    )
    assert "groups: automobile" in printed and "unknown group" not in printed
