"""Sweeps: planning from a notebook, the executors, reruns after a kill or a failure, --plan, --allow-stale.

A test-only notebook (written into tmp_path, the shape of the real ones: a parameters cell, a Lab,
cells through `lab.cell`) on a tiny in-memory dataset keeps every job well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dcclib.lab import cli, cost, executors, experiments, job_run, planner, sweep, writers
from dcclib.lab.store import ResultStore

PARAMETERS = """profile = "smoke"
seed = 0
methods = ["random", "dc", "dcc"]
extra = []              # paper datasets without data here (placeholders)
data_root = "/nonexistent"
"""
CODE = """import torch
from dcclib.data import ImageDataset
from dcclib.lab.experiments import Lab
from dcclib.lab.profiles import Profile

TINY = Profile("smoke", outer_iterations=2, max_inner_iterations=2, max_net_epochs=1, batch_real=4,
               num_runs=1, num_nets=1, eval_epochs=2, default_dataset="tiny", device="cpu")
lab = Lab("50_tiny", profile=TINY, seed=seed, threads=1, stand_in=None, data_root=data_root)
g = torch.Generator().manual_seed(0)
protos = torch.randn(3, 3, 16, 16, generator=g)


def split(n):
    y = torch.arange(3).repeat_interleave(n)
    return protos[y] + 0.5 * torch.randn(len(y), 3, 16, 16, generator=g), y


lab.add_dataset(ImageDataset("tiny", *split(12), *split(4), ["a", "b", "c"], (0.0,) * 3, (1.0,) * 3, "test"))
"""
CELLS = """cells = [lab.cell("table2", d, m, 1) for d in ["tiny", *extra] for m in methods]
table = lab.compare(cells)
print(table)
"""


def _notebook(folder: Path) -> Path:
    def cell(source: str, tags: list[str] = ()) -> dict:
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": []}

    folder.mkdir(parents=True, exist_ok=True)
    nb = {"cells": [cell(PARAMETERS, ["parameters"]), cell(CODE), cell(CELLS)], "metadata": {}, "nbformat": 4}
    path = folder / "50_tiny.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    _notebook(tmp_path / "nb")
    return tmp_path / "nb"


def _plan(notebooks: Path, results: Path, **parameters) -> sweep.Sweep:
    return sweep.plan("smoke", parameters=parameters, results=results, notebooks=notebooks)


def _timeless(value: object) -> object:
    """`value` without its timings (keys naming seconds, at any depth: a run's trajectory has them)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def contents(root: Path) -> dict:
    """What a store holds, without timings, hosts and versions: {key: (result, tensors' sha256)}."""
    out = {}
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # .jobs, .runs, .submitit
        rec = json.loads(path.read_text())
        result = _timeless(rec["result"])
        tensors = rec["tensors"] and hashlib.sha256((path.parent / rec["tensors"]).read_bytes()).hexdigest()
        out[rec["key"]] = (result, tensors)
    return out


def test_the_plan_is_what_the_notebook_asks_for(notebooks, tmp_path):
    s = _plan(notebooks, tmp_path / "r", methods=["random", "dc"], extra=["cifar10"])
    jobs = {(j.kind, j.label.split(" ->")[0].split(" ipc")[0], j.state) for j in s.jobs()}
    assert jobs == {
        ("select", "tiny random", "missing"),
        ("condense", "tiny dc", "missing"),
        ("evaluate", "tiny random", "missing"),
        ("evaluate", "tiny dc", "missing"),
        ("select", "cifar10 random", "no data"),  # no CIFAR-10 here: placeholder shapes, not runnable
        ("condense", "cifar10 dc", "no data"),
        ("evaluate", "cifar10 random", "no data"),
        ("evaluate", "cifar10 dc", "no data"),
    }
    cifar = next(j for j in s.jobs() if j.kind == "condense" and "cifar10" in j.label)
    _, fb, _ = cost.model_flops("convnet", 3, 10, 32)  # ConvNet on CIFAR-10's shape (from a placeholder)
    # K_o = 2 x (K_i = 2 updates x 10 classes x (4 real + 2 x 1 synthetic) + 1 x T = 1 epoch x 10 images)
    assert cifar.flops == pytest.approx(2 * (2 * 10 * (4 + 2 * 1) + 1 * 1 * 10 * 1) * fb)
    assert all(j.stage == (1 if j.kind == "evaluate" else 0) for j in s.jobs())
    assert not (tmp_path / "r").exists()  # planning writes nothing


def test_plan_output_lists_jobs_costs_and_totals(notebooks, tmp_path, capsys):
    code = sweep.main(["--plan", "--notebooks", str(notebooks), "--results", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("50 ")]
    assert len(lines) == 6 and all("missing" in line for line in lines)
    assert "throughput: assumed 26.8 TFLOP/s" in out
    assert "| 50_tiny | 6 | 0 | 6 | 0 |" in out and "| all (each job once) | 6 |" in out


def test_a_sweep_fills_the_store_and_the_rendered_notebook_computes_nothing(notebooks, tmp_path, monkeypatch):
    results = tmp_path / "r"
    outcomes = sweep.run(_plan(notebooks, results))
    assert [o["status"] for o in outcomes] == ["done"] * 6
    assert {j.state for j in _plan(notebooks, results).jobs()} == {"done"}

    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed although the sweep stored this result")

    monkeypatch.setattr(experiments, "condense", forbidden)
    monkeypatch.setattr(experiments, "evaluate_set", forbidden)
    monkeypatch.setenv("DCC_RESULTS_DIR", str(results))
    planner.forget_plans()
    namespace = {}
    cells = json.loads((notebooks / "50_tiny.ipynb").read_text())["cells"]
    for cell in cells:  # rendering = running the cells with no planner
        exec(cell["source"], namespace)
    assert all(line.startswith("reused") for line in namespace["lab"].log)
    assert all(len(c.accuracies) == 1 for c in namespace["cells"])


def test_a_killed_or_failed_sweep_reruns_only_the_missing_jobs(notebooks, tmp_path, monkeypatch):
    results = tmp_path / "r"
    first = sweep.run(_plan(notebooks, results), max_jobs=2)  # "killed" after two jobs
    assert len(first) == 2
    real, calls = experiments.condense, []

    def fails_twice(*args, **kwargs):  # the dcc set's job, then its evaluation (which needs the set)
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(experiments, "condense", fails_twice)
    second = sweep.run(_plan(notebooks, results))
    assert len(second) == 4 and {o["key"] for o in second}.isdisjoint(o["key"] for o in first)
    failed = [o for o in second if o["status"] == "failed"]
    assert len(failed) == 2 and all("injected failure" in o["error"] for o in failed)
    status = _plan(notebooks, results)
    assert [j.state for j in status.jobs() if j.state != "done"] == ["failed", "failed"]
    shown = sweep.show_status(status, 1e12, "test", 8)
    assert shown.count("FAILED") == 2 and "RuntimeError: injected failure" in shown
    third = sweep.run(_plan(notebooks, results))
    assert [o["key"] for o in third] == [o["key"] for o in failed] and {o["status"] for o in third} == {
        "done"
    }
    assert ResultStore(results).job_note(failed[0]["key"])["attempts"] == 2
    assert sweep.run(_plan(notebooks, results)) == []


def test_results_of_an_older_algorithm_are_reused_only_when_allowed_and_said(
    notebooks, tmp_path, monkeypatch
):
    results = tmp_path / "r"
    sweep.run(_plan(notebooks, results, methods=["random"]))
    monkeypatch.setattr(experiments, "ALGORITHM_VERSION", "9999.1-1")
    assert {j.state for j in _plan(notebooks, results, methods=["random"]).jobs()} == {"missing"}
    stale = sweep.plan(
        "smoke", parameters={"methods": ["random"]}, results=results, notebooks=notebooks, allow_stale=True
    )
    assert {j.state for j in stale.jobs()} == {"done"}
    planned = next(iter(stale.plans[0].jobs.values())).lab  # the notebook's Lab (its profile, its data)
    lab = experiments.Lab("50_tiny", planned.profile, results_dir=results, allow_stale=True, threads=1)
    lab.add_dataset(planned.data("tiny"))
    table = lab.compare([lab.cell("table2", "tiny", "random", 1)])
    assert (
        "stale: computed by algorithm 2026" in table.loc[0, "note"] and "now 9999.1-1" in table.loc[0, "note"]
    )
    line = writers.labels_line({**lab._meta(None), "device": "cpu"})
    assert "STALE: reuses results of algorithm 2026" in line


def _executor_contents(notebooks: Path, results: Path, name: str, **options) -> dict:
    s = _plan(notebooks, results, methods=["random", "dc"])
    outcomes = sweep.run(s, name, executors.Options(**options))
    assert [o["status"] for o in outcomes] == ["done"] * 4, outcomes
    return contents(results)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny notebook swept in this process: what every other executor must reproduce."""
    folder = tmp_path_factory.mktemp("executors")
    notebooks = _notebook(folder / "nb").parent
    local = _executor_contents(notebooks, folder / "local", "local")
    assert len(local) == 4
    return notebooks, local


@pytest.mark.parametrize(
    "name, needs, options",
    [
        ("pool", None, {"workers": 2}),  # two spawned CPU workers
        (
            "slurm",
            "submitit",
            {"cluster": "local", "gpus_per_job": 0, "time": "10"},
        ),  # submitit's local arrays
        ("ray", "ray", {"workers": 2}),  # a local Ray cluster, started and shut down by the executor
    ],
)
def test_every_executor_leaves_the_same_store(local_store, tmp_path, name, needs, options):
    if needs:
        pytest.importorskip(needs)
    notebooks, local = local_store
    if name == "slurm":
        options = {**options, "log_dir": tmp_path / "submitit"}
    assert _executor_contents(notebooks, tmp_path / name, name, **options) == local


def test_the_slurm_task_requeues_itself_and_site_settings_are_read(tmp_path):
    submitit = pytest.importorskip("submitit")
    task = executors.SweepTask(sweep.execute)
    again = task.checkpoint({"key": "k"})
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is task and again.args == ({"key": "k"},)
    assert [executors.minutes(t) for t in ("90", "12:00:00", "1-00:00", "0:30:30", None)] == [
        90,
        720,
        1440,
        31,
        None,
    ]
    site = tmp_path / "site.yaml"
    site.write_text("slurm_account: lab\ncpus_per_task: 8\nslurm_setup: ['module load cuda']\n")
    assert executors.site_settings(site) == {
        "slurm_account": "lab",
        "cpus_per_task": 8,
        "slurm_setup": ["module load cuda"],
    }


def _write_same_key(args: tuple) -> dict:
    root, seed = args
    import torch

    from dcclib.lab.store import ResultStore

    config = {"kind": "condense", "profile": "smoke", "dataset": {"name": "tiny"}, "run": 0}
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(30, 3, 8, 8, generator=g)
    meta = {"dataset": "tiny", "class_names": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3}
    record = ResultStore(root).put(config, {"writer": seed}, images, torch.arange(3).repeat(10), meta)
    return {"writer": record["result"]["writer"], "pid": os.getpid()}


def test_concurrent_writers_of_one_key_leave_one_valid_result(tmp_path):
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    with multiprocessing.get_context("fork" if "fork" in methods else "spawn").Pool(4) as pool:
        returned = pool.map(_write_same_key, [(str(tmp_path), s) for s in range(8)])
    store = ResultStore(tmp_path)
    config = {"kind": "condense", "profile": "smoke", "dataset": {"name": "tiny"}, "run": 0}
    record = store.exact(config)
    assert record is not None and {r["writer"] for r in returned} == {record["result"]["writer"]}
    images, labels, _ = store.load_set(config, record)
    assert images.shape == (30, 3, 8, 8) and labels.tolist() == list(range(3)) * 10
    files = sorted(p.name for p in (tmp_path / "smoke" / "tiny").iterdir())
    assert len(files) == 2 and record["tensors"] in files  # one record, its own tensors, no temp files


def test_dcc_sweep_goes_to_the_lab_and_the_rest_to_the_core(notebooks, tmp_path, capsys):
    assert (
        cli.main(["sweep", "--plan", "--summary", "--notebooks", str(notebooks), "--results", str(tmp_path)])
        == 0
    )
    assert "| 50_tiny | 6 |" in capsys.readouterr().out
    assert cli.main(["condense", "--method", "nope"]) == 2
    assert "dcc: error: unknown method 'nope'" in capsys.readouterr().err


def test_throughput_is_measured_when_the_gpu_check_ran_and_assumed_before(tmp_path):
    rate, source = cost.throughput(tmp_path)
    assert rate == cost.ASSUMED_FLOPS_PER_S and "assumed 26.8 TFLOP/s" in source
    rows = [
        {"check": "gpu_check", "kind": "condense", "mode": "literal", "achieved_flops_per_s": 1e12},
        {"check": "gpu_check", "kind": "condense", "mode": "fast-vmap", "achieved_flops_per_s": 3e13},
        {"check": "gpu_check", "kind": "decision", "device": "NVIDIA H200"},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rate, source = cost.throughput(tmp_path)
    assert rate == 3e13 and "NVIDIA H200" in source  # the literal baseline is not what jobs run
    summary = {"kind": "summary", "condense_achieved_tflops_median": 40.0, "paper_shapes": True}
    (tmp_path / "b.jsonl").write_text(json.dumps(summary) + "\n")
    assert cost.throughput(tmp_path)[0] == 4e13


def test_wall_time_schedules_whole_jobs_longest_first():
    hour = 3600 * 1e12  # FLOPs of one hour at 1 TFLOP/s
    stage = [3 * hour, 2 * hour, 2 * hour, 1 * hour]
    assert cost.wall_hours([stage], 1, 1e12) == pytest.approx(8)
    assert cost.wall_hours([stage], 2, 1e12) == pytest.approx(4)  # {3, 1} and {2, 2}
    assert cost.wall_hours([stage, [hour]], 64, 1e12) == pytest.approx(4)  # the longest job, then stage 1
    assert cost.shape_of("cifar100") == cost.Shape(100, 3, 32, 50000, 10000)
    assert cost.shape_of("embedded-mnist-3v8-flip3").classes == 2
    assert cost.shape_of("imagenet32-fish") == cost.Shape(16, 3, 32, 16 * 1300, 16 * 50)


def test_a_notebook_that_fails_while_planning_is_reported_with_its_cell(notebooks, tmp_path, capsys):
    path = notebooks / "50_tiny.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][2]["source"] = "cells = [lab.cell('table2', 'tiny', m, 1) for m in methods]\nboom()\n"
    path.write_text(json.dumps(nb))
    s = _plan(notebooks, tmp_path / "r")
    assert "NameError" in s.plans[0].error and "50_tiny.ipynb, cell 2, line 2" in s.plans[0].error
    assert len(s.jobs()) == 6  # what it asked for before the error is still planned
    assert sweep.main(["--plan", "--notebooks", str(notebooks), "--results", str(tmp_path / "r")]) == 1
    assert "PLAN INCOMPLETE 50_tiny" in capsys.readouterr().out


def test_a_worker_runs_a_set_or_an_evaluation_from_its_config_without_the_notebook(tmp_path, monkeypatch):
    folder = tmp_path / "nb"
    path = _notebook(folder)
    nb = json.loads(path.read_text())  # the tiny notebook at the named profile smoke, on a loadable dataset
    nb["cells"][1]["source"] = (
        "from dcclib.lab.experiments import Lab\n"
        'lab = Lab("50_tiny", profile="smoke", seed=seed, threads=1, stand_in=None, data_root=data_root)\n'
    )
    nb["cells"][2]["source"] = 'cells = [lab.cell("table2", "embedded-mnist", m, 1) for m in methods]\n'
    path.write_text(json.dumps(nb))
    local = _plan(folder, tmp_path / "local", methods=["random"])  # a set and its evaluation (seconds)
    assert [o["status"] for o in sweep.run(local, "local", executors.Options())] == ["done"] * 2
    s = _plan(folder, tmp_path / "direct", methods=["random"])
    specs = {j.key: s.spec(j) for j in s.jobs()}
    assert len(specs) == 2 and all(spec.get("direct") for spec in specs.values())  # sets and evaluations
    json.dumps(list(specs.values()))  # plain data: it travels to other processes and hosts

    def replanned(*args, **kwargs):
        raise AssertionError("the worker ran the notebook again")

    monkeypatch.setattr(job_run, "plan_notebook", replanned)
    for job in sorted(s.jobs(), key=lambda j: j.stage):
        assert job_run.execute(specs[job.key])["status"] == "done"
    assert contents(tmp_path / "direct") == contents(tmp_path / "local")  # as the notebook's own calls
    spec = next(iter(specs.values()))
    broken = {**spec, "direct": {**spec["direct"], "config": {**spec["direct"]["config"], "run": 7}}}
    assert job_run.execute(broken)["status"] == "failed"  # a config that is not its key's is refused


def test_a_dataset_made_in_the_notebook_is_planned_again_on_the_worker(local_store, tmp_path):
    notebooks, _ = local_store  # the tiny notebook: its own profile and a dataset it makes itself
    s = _plan(notebooks, tmp_path / "results", methods=["random"])
    assert s.jobs() and not any(s.spec(j).get("direct") for j in s.jobs())
