"""The sweep's own inputs (issue: hostile cases): every option and the Slurm site file are
checked before any planning; a refusal is one line, exit 2, and creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sweep import _notebook

from dcclib.lab import sweep


@pytest.fixture
def no_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("planned although an option was bad")

    monkeypatch.setattr(sweep, "plan", forbidden)
    monkeypatch.setattr(sweep, "cost_table", forbidden)


def refused(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    before = sorted(tmp_path.rglob("*"))
    code = sweep.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("dcc sweep: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # no .submitit, no store
    return err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--max-jobs", "-1"], "--max-jobs must be at least 1"),
        (["--max-jobs", "0"], "--max-jobs must be at least 1"),
        (["--throughput", "-5"], "--throughput must be a positive"),
        (["--throughput", "nan"], "--throughput must be a positive"),
        (["--cluster-gpus", "0"], "--cluster-gpus must be at least 1"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--max-parallel", "-2"], "--max-parallel must be at least 1"),
        (["--gpus-per-job", "-1"], "--gpus-per-job must be 0 or more"),
        (["--max-tensor-mb", "nan"], "--max-tensor-mb must be a number >= 0"),
        (["--max-tensor-mb", "-1"], "--max-tensor-mb must be a number >= 0"),
        (["--time", "soon"], "not a Slurm time limit"),
        (["--executor", "slurm", "--time", "soon"], "not a Slurm time limit"),
        (["--executor", "slurm", "--time", "0"], "no time at all"),
    ],
)
def test_bad_options_are_refused_before_planning(extra, words, tmp_path, capsys, no_planning):
    results = tmp_path / "results"
    err = refused(["--results", str(results), *extra], tmp_path, capsys)
    assert words in err


def test_a_results_file_or_a_missing_notebooks_folder_is_refused(tmp_path, capsys, no_planning):
    store = tmp_path / "store.json"
    store.write_text("{}")
    assert "is a file" in refused(["--status", "--results", str(store)], tmp_path, capsys)
    err = refused(["--plan", "--notebooks", str(tmp_path / "nonexistent")], tmp_path, capsys)
    assert "is not a folder" in err
    (tmp_path / "empty").mkdir()
    assert "holds no notebooks" in refused(["--notebooks", str(tmp_path / "empty")], tmp_path, capsys)


SITE_FILES = {
    "missing": (None, "file not found"),
    "not YAML": ("slurm_account: [unclosed\n  qos: x: y\n", "is not valid YAML"),
    "a list": ("- slurm_account\n- x\n", "'keyword: value' lines"),
    "not text": (b"\xff\xfe\x00", "is not text"),
}


@pytest.mark.parametrize("case", sorted(SITE_FILES))
def test_a_bad_slurm_site_file_is_refused_before_planning(case, tmp_path, capsys, no_planning):
    content, words = SITE_FILES[case]
    site = tmp_path / "site.yaml"
    if isinstance(content, bytes):
        site.write_bytes(content)
    elif content is not None:
        site.write_text(content)
    results = tmp_path / "results"
    argv = ["--executor", "slurm", "--slurm-config", str(site), "--results", str(results)]
    pytest.importorskip("submitit")
    assert words in refused(argv, tmp_path, capsys)
    assert not results.exists()


@pytest.mark.parametrize(
    "content, words",
    [
        ("slurm_acount: my-lab\n", "unknown submitit keyword 'slurm_acount'"),
        ("partition_x: 1\n", "unknown submitit keyword 'partition_x'"),
        ("mem_gb: lots\n", "mem_gb must be a float"),
    ],
)
def test_an_unknown_submitit_keyword_is_refused_before_planning(
    content, words, tmp_path, capsys, no_planning
):
    pytest.importorskip("submitit")
    site = tmp_path / "site.yaml"
    site.write_text(content)
    argv = ["--executor", "slurm", "--slurm-config", str(site), "--results", str(tmp_path / "r")]
    assert words in refused(argv, tmp_path, capsys)


def test_a_good_site_file_still_plans(tmp_path, capsys):
    pytest.importorskip("submitit")
    site = tmp_path / "site.yaml"
    site.write_text("slurm_account: lab\ncpus_per_task: 8\nmem_gb: 64\nslurm_setup: ['module load cuda']\n")
    nb = _notebook(tmp_path / "nb").parent
    argv = ["--plan", "--summary", "--notebooks", str(nb), "--results", str(tmp_path / "r")]
    assert sweep.main([*argv, "--executor", "slurm", "--slurm-config", str(site), "--time", "1-2"]) == 0
    assert "| 50_tiny | 6 |" in capsys.readouterr().out


def test_a_running_note_of_a_job_killed_from_outside_is_shown_failed(tmp_path, capsys, monkeypatch):
    """A job killed from outside (kill -9, scancel, a lost node) never notes its end: --status
    checks the note against this host's processes and the Slurm queue before showing it."""
    import os
    import socket
    import subprocess

    from dcclib.lab import slurm_state
    from dcclib.lab.store import ResultStore

    nb = _notebook(tmp_path / "nb").parent
    argv = ["--status", "--notebooks", str(nb), "--results", str(tmp_path / "r")]
    keys = [j.key for j in sweep.plan("smoke", results=tmp_path / "r", notebooks=nb).jobs()]
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    store = ResultStore(tmp_path / "r")
    here = {"status": "running", "host": socket.gethostname(), "label": "x"}
    store.note_job(keys[0], **here, pid=dead.pid)  # a pool or Ray worker killed with SIGKILL
    store.note_job(keys[1], **here, pid=os.getpid())  # alive: still running
    store.note_job(keys[2], **here, pid=dead.pid, slurm_job="777_1")  # a Slurm task the queue lost
    store.note_job(keys[3], status="running", host="elsewhere", pid=1, label="x")  # cannot say
    monkeypatch.setattr(slurm_state, "queue", lambda: {"777_2": "RUNNING"})
    assert sweep.main(argv) == 1
    out = capsys.readouterr().out
    assert f"its process {dead.pid} on {socket.gethostname()} is gone" in out
    assert "Slurm job 777_1 is no longer in the queue and stored no result" in out
    assert out.count("FAILED ") == 2 and out.count("\nrunning ") == 2
    assert [store.job_note(k)["status"] for k in keys[:4]] == ["failed", "running", "failed", "running"]
    monkeypatch.setattr(slurm_state, "queue", lambda: None)  # no squeue here: the host's pids decide
    store.note_job(keys[2], status="running", slurm_job="777_1", pid=os.getpid())
    assert sweep.main(argv) == 1 and store.job_note(keys[2])["status"] == "running"
