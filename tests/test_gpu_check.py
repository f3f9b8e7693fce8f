"""`make gpu-check` in its tiny form: `benchmarks/gpu_check.py --tiny --device cpu`.

One run (seconds) writes its JSON lines and its decisions where the test says; every section must
be present with results (or a recorded error), the decision record must be there and written to
the given defaults file, and nothing may be written into the checkout (reports/perf_gpu,
dcclib/measured_defaults.json, reports/performance.md). That run has none of the packages a GPU
image may lack (OPTIONAL: the notebook, dev and cluster tools) importable: the check needs only
PyTorch, torchvision, safetensors, pandas, seaborn and tqdm. Also: how dcclib reads the measured
defaults (dcclib/measured.py), and the GPU section of reports/performance.md (summarise.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import summarise  # noqa: E402
from gpu_check import driver, plan, sections  # noqa: E402

from dcclib import measured  # noqa: E402
from dcclib.matching import CLASSWISE_MODES  # noqa: E402

# Installed here (the dev environment) but maybe not where the GPU check runs: every dependency of
# pyproject.toml beyond torch, torchvision, safetensors, pandas, seaborn, tqdm (and what they pull
# in: numpy, matplotlib), and the dev extra. The tiny run below cannot import any of them.
OPTIONAL = (
    "papermill",
    "nbval",
    "submitit",
    "ray",
    "nltk",
    "mlxtend",
    "pytest",
    "hypothesis",
    "ruff",
    "jupyterlab",
    "ipykernel",
    "tabulate",
    "yaml",
)
# sitecustomize.py of the tiny run (on PYTHONPATH: it runs before the script). None in sys.modules
# is how Python spells "not installed" for both `import x` (ModuleNotFoundError) and
# importlib.util.find_spec (None); a meta-path finder that raises would break torch itself, whose
# torch._dynamo asks find_spec("hypothesis") and expects None when it is absent.
UNIMPORTABLE = """import sys

for _name in {names!r}:
    sys.modules[_name] = None
"""


def without_optional_packages(tmp: Path) -> dict[str, str]:
    """The environment of a subprocess in which none of OPTIONAL can be imported."""
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(UNIMPORTABLE.format(names=OPTIONAL))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


CHECKOUT_FILES = (
    ROOT / "dcclib" / "measured_defaults.json",
    ROOT / "reports" / "performance.md",
)


def checkout_state() -> dict[str, object]:
    state: dict[str, object] = {str(p): p.read_bytes() if p.exists() else None for p in CHECKOUT_FILES}
    perf_gpu = ROOT / "reports" / "perf_gpu"
    state["perf_gpu"] = sorted(p.name for p in perf_gpu.iterdir()) if perf_gpu.is_dir() else None
    return state


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("gpu-check")
    out, defaults, md = tmp / "jsonl", tmp / "defaults.json", tmp / "performance.md"
    md.write_text("# Performance\n")
    env = without_optional_packages(tmp)
    before = checkout_state()
    tic = time.monotonic()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu"]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--defaults-file", str(defaults), "--performance-md", str(md)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    seconds = time.monotonic() - tic
    files = sorted(out.glob("gpu_check-*.jsonl"))
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    return SimpleNamespace(
        proc=proc,
        seconds=seconds,
        files=files,
        rows=rows,
        out=out,
        defaults=defaults,
        md=md,
        env=env,
        before=before,
        after=checkout_state(),
    )


def rows_of(tiny: SimpleNamespace, section: str, kind: str | None = None) -> list[dict]:
    return [r for r in tiny.rows if r["section"] == section and (kind is None or r["kind"] == kind)]


def test_the_tiny_check_finishes_and_writes_only_where_it_is_told(tiny):
    assert tiny.proc.returncode == 0, tiny.proc.stderr[-3000:]
    assert len(tiny.files) == 1
    assert tiny.after == tiny.before  # nothing in reports/ or dcclib/ of the checkout changed
    assert all(r["check"] == "gpu_check" and r["run"] == tiny.rows[0]["run"] for r in tiny.rows)
    print(f"tiny gpu-check: {tiny.seconds:.1f} s")


def test_the_tiny_check_needs_none_of_the_optional_packages(tiny):
    """The run above had none of OPTIONAL importable, and still did everything: its JSON lines, its
    decisions in the defaults file, and the GPU section of the markdown it was given."""
    probe = (
        "import importlib, importlib.util\n"
        f"for name in {OPTIONAL!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        assert importlib.util.find_spec(name) is None, name\n"
        "        print(name)\n"
    )
    got = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=tiny.env, cwd=ROOT
    )
    assert got.returncode == 0 and got.stdout.split() == list(OPTIONAL), got.stderr[-2000:]
    assert tiny.proc.returncode == 0, tiny.proc.stderr[-3000:]
    assert len(tiny.files) == 1 and rows_of(tiny, "run", "end")
    assert set(json.loads(tiny.defaults.read_text())) == {"cpu-tiny"}
    text = tiny.md.read_text()
    assert text.startswith("# Performance\n") and text.count(summarise.GPU_BEGIN) == 1
    assert f"updated {tiny.md}" in tiny.proc.stdout


def test_every_section_is_present_with_results_or_a_recorded_error(tiny):
    for name in sections.SECTION_NAMES:
        status = rows_of(tiny, name, "section")
        assert len(status) == 1, name
        status = status[0]
        assert status["status"] in ("ok", "partial", "error", "skipped"), status
        produced = [r for r in rows_of(tiny, name) if r["kind"] in ("result", "decision", "summary")]
        errors = rows_of(tiny, name, "error")
        assert produced or errors, f"{name}: neither results nor an error"
        if status["status"] == "error":
            assert errors and status["error"]
        # tiny shapes fit the budget: every section runs, none is skipped for time
        assert status["status"] == "ok", (name, status, errors[:1])
    end = rows_of(tiny, "run", "end")
    assert len(end) == 1 and set(end[0]["sections"]) == set(sections.SECTION_NAMES)


def test_the_env_row_names_device_versions_and_settings(tiny):
    (env,) = rows_of(tiny, "env", "result")
    assert env["device"].startswith("cpu") and env["device_type"] == "cpu" and env["tiny"] is True
    assert env["torch"] == torch.__version__ and env["python"] and env["dcclib"]
    assert env["settings"]["device"] == "cpu" and env["plan"]["model"] == plan.TINY.model
    assert env["defaults_before"]["classwise_mode_cuda"] in CLASSWISE_MODES


def test_correctness_checks_pass_on_the_cpu(tiny):
    matching = rows_of(tiny, "correctness_matching", "result")
    assert {(r["method"], r["mode"]) for r in matching} == {
        (m, mode) for m in ("dc", "dsa", "dcc", "dsac") for mode in ("loop", "vmap")
    }
    outer = rows_of(tiny, "correctness_outer", "result")
    assert {r["what"] for r in outer} == {"outer_iteration device vs cpu", "fast == literal on the device"}
    evaluate = rows_of(tiny, "correctness_evaluate", "result")
    assert {(r["model"], r["impl"]) for r in evaluate} >= {("convnet_w32", "grouped"), ("mlp", "vmap")}
    for r in matching + outer + evaluate:
        assert r["passed"] is True, r
    assert all(r["distinct_accuracies"] > 1 for r in evaluate)  # the comparison has teeth


def test_condensation_rows_time_fast_against_literal(tiny):
    for section, (_, ipc, methods) in plan.TINY.condense.items():
        rows = rows_of(tiny, section, "result")
        assert {(r["method"], r["mode"]) for r in rows} == {(m, mode) for m in methods for mode in plan.MODES}
        for r in rows:
            assert r["bench"] == "condense" and r["ipc"] == ipc and r["seconds_per_outer"] > 0
            assert r["seconds_per_outer_estimated"] > 0 and r["flops_per_outer"] > 0
            assert r["ratio_literal_over_this"] > 0
            if r["mode"] != "literal":
                assert r["max_abs_diff_vs_literal"] < 1e-3  # the same images


def test_evaluation_memory_and_targets_rows(tiny):
    modes = {r["mode"] for r in rows_of(tiny, "evaluate", "result")}
    assert {"sequential", "literal", "batched-4-grouped", "batched-4-vmap"} <= modes
    for r in rows_of(tiny, "evaluate", "result"):
        assert r["protocol_seconds_extrapolated"] > 0 and r["ratio_vs_sequential"] > 0
        assert r["epochs_timed"] == list(plan.TINY.eval_epochs[r["ipc"]])
    memory = rows_of(tiny, "memory_cifar100_ipc50", "result")
    assert {r["what"] for r in memory} >= {"one image update", "one image update, unchunked"}
    (summary,) = rows_of(tiny, "targets", "summary")
    assert summary["dsac_ipc10_paper_run_seconds"] > 0 and summary["paper_shapes"] is False


def test_the_decision_record_and_the_defaults_file(tiny):
    final = [r for r in tiny.rows if r["kind"] == "decision" and r["final"]]
    assert len(final) == 1
    decision = final[0]
    assert decision["device_type"] == "cpu-tiny"  # dcclib reads "cuda" only: a tiny run never counts
    assert decision["written_to"] == str(tiny.defaults)
    classwise = decision["decisions"]["classwise_mode"]
    budget = decision["decisions"]["parallel_nets_budget_bytes"]
    assert classwise["status"] == "measured" and classwise["value"] in CLASSWISE_MODES and classwise["rule"]
    assert budget["status"] == "measured" and isinstance(budget["value"], int) and budget["value"] >= 0
    written = json.loads(tiny.defaults.read_text())
    assert set(written) == {"cpu-tiny"}
    entry = written["cpu-tiny"]
    assert entry["classwise_mode"] == classwise["value"]
    assert entry["parallel_nets_budget_bytes"] == budget["value"]
    assert entry["source"] == "make gpu-check" and entry["measured_on"].startswith("cpu") and entry["date"]
    assert measured.measured_default("cuda", "classwise_mode", "vmap", path=tiny.defaults) == "vmap"


def test_the_gpu_section_of_the_report(tiny, tmp_path):
    text = "\n".join(summarise.gpu_section(tiny.out))
    assert "Tiny shapes" in text and "Decisions (final" in text and "| condense_main | ok |" in text
    assert "Not measured yet" not in text
    empty = tmp_path / "none"
    empty.mkdir()
    assert "**Not measured yet.**" in "\n".join(summarise.gpu_section(empty))
    md = tmp_path / "performance.md"
    md.write_text("# Performance\n\nintro\n")
    summarise.update_performance_md(md, empty)
    summarise.update_performance_md(md, tiny.out)  # replaces the section, keeps the rest
    out = md.read_text()
    assert out.startswith("# Performance\n\nintro\n") and out.count(summarise.GPU_BEGIN) == 1
    assert "Not measured yet" not in out and "Tiny shapes" in out


def test_the_committed_report_has_the_gpu_section_markers():
    text = (ROOT / "reports" / "performance.md").read_text()
    assert text.count(summarise.GPU_BEGIN) == 1 and text.count(summarise.GPU_END) == 1
    assert "make gpu-check" in text


def test_no_out_folder_no_run(tmp_path):
    """Only a full run on CUDA writes into reports/ by default: a CPU run must name its folder."""
    assert driver.main(["--tiny", "--device", "cpu"]) == 2


def read_run(folder: Path) -> list[dict]:
    (f,) = folder.glob("gpu_check-*.jsonl")
    return [json.loads(line) for line in f.read_text().splitlines()]


def test_a_failing_section_is_recorded_and_the_next_one_runs(tmp_path, monkeypatch):
    def boom(ctx: object, section: str) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")

    patched = tuple(replace(s, fn=boom) if s.name == "correctness_matching" else s for s in sections.SECTIONS)
    monkeypatch.setattr(sections, "SECTIONS", patched)
    argv = [
        "--tiny",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--sections",
        "correctness_matching,evaluate",
    ]
    assert driver.main(argv) == 0
    rows = read_run(tmp_path)
    status = {r["section"]: r for r in rows if r["kind"] == "section"}
    assert status["correctness_matching"]["status"] == "error"
    assert "illegal memory access" in status["correctness_matching"]["error"]
    (err,) = [r for r in rows if r["kind"] == "error" and r["section"] == "correctness_matching"]
    assert "Traceback" in err["traceback"] and "boom" in err["traceback"]
    assert status["evaluate"]["status"] == "ok"  # the next section ran
    assert (
        status["condense_main"]["status"] == "skipped" and "--sections" in status["condense_main"]["reason"]
    )
    for always in ("env", "data", "decisions", "targets"):
        assert status[always]["status"] == "ok"
    (decision,) = [r for r in rows if r["kind"] == "decision" and r["final"]]
    assert decision["decisions"]["classwise_mode"]["status"] == "not measured"  # nothing timed it
    assert decision["decisions"]["parallel_nets_budget_bytes"]["status"] == "measured"
    assert decision["written_to"] is None  # no --defaults-file: decisions only in the JSON lines


def test_a_spent_budget_skips_the_sections_and_says_so(tmp_path):
    assert driver.main(["--tiny", "--device", "cpu", "--out", str(tmp_path), "--budget", "0"]) == 0
    status = {r["section"]: r for r in read_run(tmp_path) if r["kind"] == "section"}
    assert set(status) == set(sections.SECTION_NAMES)
    for name, r in status.items():
        if name in ("env", "data", "decisions", "targets"):  # instant: they always run
            assert r["status"] == "ok", r
        else:
            assert r["status"] == "skipped" and r["reason"].startswith("time budget"), r


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU: this would start the real check")
def test_asking_for_cuda_without_one_records_why(tmp_path):
    assert driver.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    (f,) = tmp_path.glob("gpu_check-*.jsonl")
    (row,) = [json.loads(line) for line in f.read_text().splitlines()]
    assert row["kind"] == "error" and "CUDA" in row["error"]


# ---------------------------------------------------------------------------------------------
# dcclib/measured.py: the measured defaults, read at import
# ---------------------------------------------------------------------------------------------
def test_measured_defaults_fall_back_to_the_provisional_values(tmp_path):
    path = tmp_path / "defaults.json"
    assert measured.measured_default("cuda", "classwise_mode", "vmap", path=path) == "vmap"  # no file
    assert measured.provenance("cuda", "classwise_mode", path=path) == "provisional"
    path.write_text(json.dumps({"cuda": {}}))
    assert measured.measured_default("cuda", "classwise_mode", "vmap", path=path) == "vmap"
    path.write_text(
        json.dumps(
            {
                "cuda": {
                    "classwise_mode": "loop",
                    "parallel_nets_budget_bytes": 0,
                    "measured_on": "NVIDIA H200",
                    "date": "2026-01-01T00:00:00Z",
                    "source": "make gpu-check",
                }
            }
        )
    )
    assert measured.measured_default("cuda", "classwise_mode", "vmap", path=path) == "loop"
    assert measured.measured_default("cuda", "parallel_nets_budget_bytes", 24 * 2**30, path=path) == 0
    assert measured.provenance("cuda", "classwise_mode", path=path) == (
        "measured on NVIDIA H200, 2026-01-01T00:00:00Z (make gpu-check)"
    )
    assert measured.measured_default("cpu", "classwise_mode", "loop", path=path) == "loop"
    with pytest.warns(UserWarning, match="not a valid value"):
        got = measured.measured_default("cuda", "classwise_mode", "vmap", lambda v: v == "vmap", path=path)
    assert got == "vmap"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="provisional"):
        assert measured.measured_default("cuda", "classwise_mode", "vmap", path=path) == "vmap"


def test_condense_config_and_evaluate_read_the_file_at_import(tmp_path):
    path = tmp_path / "defaults.json"
    path.write_text(json.dumps({"cuda": {"classwise_mode": "loop", "parallel_nets_budget_bytes": 3 * 2**30}}))
    code = (
        "from dcclib.condense_config import CLASSWISE_AUTO as A; "
        "from dcclib.evaluate import GPU_BATCH_BUDGET_BYTES as B; print(A['cuda'], A['cpu'], B)"
    )
    env = {**os.environ, measured.ENV_VAR: str(path)}
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert got.stdout.split() == ["loop", "loop", str(3 * 2**30)], got.stderr[-2000:]
    env[measured.ENV_VAR] = str(tmp_path / "absent.json")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert got.stdout.split() == ["vmap", "loop", str(24 * 2**30)], got.stderr[-2000:]  # provisional


def test_the_committed_defaults_file_is_valid():
    """Before a GPU run it has no measured entry (dcclib is provisional); after one, a valid one."""
    data = json.loads(measured.DEFAULTS_FILE.read_text())
    cuda = data.get("cuda", {})
    assert isinstance(cuda, dict)
    if cuda.get("classwise_mode") is not None:
        assert cuda["classwise_mode"] in CLASSWISE_MODES
    if cuda.get("parallel_nets_budget_bytes") is not None:
        assert isinstance(cuda["parallel_nets_budget_bytes"], int) and cuda["parallel_nets_budget_bytes"] >= 0
    if cuda:
        assert cuda["source"] == "make gpu-check" and cuda["measured_on"] and cuda["date"]
    assert not any(k.endswith("-tiny") for k in data)  # a smoke run's decisions never get committed
