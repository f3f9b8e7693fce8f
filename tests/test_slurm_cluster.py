"""`dcc sweep --executor slurm` against a real one-node Slurm cluster (scripts/slurm_up.sh).

Where the cluster can be started (root, Debian's slurm-wlm and munge installed or installable;
CI: yes) a module fixture starts one from scratch on free ports, in a temporary folder, and stops
it afterwards (scripts/slurm_down.sh); elsewhere every test here skips with the reason. The
cluster has no accounting (sacct does not work), so job states come from squeue.

Checked: job arrays per stage, results equal to a local run's, --status, a rerun submits
nothing, --gpus-per-job beyond the partition's GPUs refused in one line, a job cancelled mid-run
reported failed and redone on the next run, a preempted job (scancel --signal=USR2) requeued by
submitit and resumed from its condensation checkpoint to the same results, and a run lock of a
requeued job's former run is stale.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from cluster_notebook import (
    Background,
    argv,
    bar_starts,
    checkpoint_digest,
    local_contents,
    notebook,
    plan,
    run,
    running_note,
    wait_for,
)
from test_sweep import contents

from dcclib import run_lock
from dcclib.lab import executors, slurm_state, sweep

pytest.importorskip("submitit")
ROOT = Path(__file__).resolve().parents[1]
LONG = {"methods": ["dc"], "outer": 100, "name": "ckpt", "progress": True}  # ~25 s: cancelled while it runs


def _free_ports() -> int:
    """A port p with p and p + 1 free (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node cluster; SLURM_CONF set for this process (and the jobs it submits)."""
    if os.geteuid() != 0:
        pytest.skip("a Slurm cluster needs root here (scripts/slurm_up.sh runs munged, slurmctld, slurmd)")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("no Slurm (slurm-wlm) and no apt-get to install it")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "DCC_SLURM_PORT": str(_free_ports())}
    up = subprocess.run(["bash", str(ROOT / "scripts/slurm_up.sh"), str(state)], env=env,
                        capture_output=True, text=True, timeout=600)  # fmt: skip
    if up.returncode != 0:
        subprocess.run(["bash", str(ROOT / "scripts/slurm_down.sh"), str(state)], capture_output=True)
        pytest.skip(f"the Slurm cluster did not start: {(up.stderr or up.stdout).strip()[-300:]}")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield state
    finally:
        down = subprocess.run(["bash", str(ROOT / "scripts/slurm_down.sh"), str(state)], capture_output=True)
        assert down.returncode == 0, down.stderr
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def _options(tmp_path: Path, **more: object) -> executors.Options:
    return executors.Options(log_dir=tmp_path / "submitit", time="10", poll_s=2, **more)


def test_a_sweep_runs_as_job_arrays_and_equals_a_local_run(cluster, tmp_path, capsys):
    nb = notebook(tmp_path / "nb")
    local = local_contents(nb, tmp_path / "local")
    capsys.readouterr()
    results = tmp_path / "slurm"
    assert sweep.main([*argv(nb, results), "--executor", "slurm", "--time", "10"]) == 0
    out = capsys.readouterr().out
    assert out.count("[sweep] submitted 2 jobs") == 2  # one array per stage: 2 sets, then 2 evaluations
    assert "sacct does not work here" in out and "job states come from squeue" in out
    assert contents(results) == local and len(local) == 4  # same keys, same numbers, same tensors
    assert sweep.main(["--status", *argv(nb, results)]) == 0
    status = capsys.readouterr().out
    # (done evaluations no longer need their sets: the plan asks for the 2 evaluations only)
    assert "| 60_cluster | 2 | 2 | 0 |" in status and "FAILED" not in status and "\nrunning " not in status
    assert sweep.main([*argv(nb, results), "--executor", "slurm", "--time", "10"]) == 0
    again = capsys.readouterr().out
    assert "submitted" not in again and "0 done, 0 failed" in again  # a rerun submits nothing
    notes = [json.loads(p.read_text()) for p in (results / ".jobs").glob("*.json")]
    assert len(notes) == 4 and all(n["slurm_job"] and "_" in n["slurm_job"] for n in notes)


def test_more_gpus_than_the_partition_has_are_refused_in_one_line(cluster, tmp_path, capsys):
    nb = notebook(tmp_path / "nb")
    assert slurm_state.partition_gpus(None) == 0  # sinfo -o %G: (null)
    assert sweep.main([*argv(nb, tmp_path / "r"), "--executor", "slurm", "--gpus-per-job", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gpus-per-job 1: the default partition has no GPUs" in err
    assert sweep.main([*argv(nb, tmp_path / "r"), "--executor", "slurm", "--partition", "gpu"]) == 2
    assert "no such Slurm partition (sinfo lists: debug)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert executors.slurm_gpus(executors.Options()) == 0  # the default off-GPU: none asked for


def test_a_cancelled_job_is_failed_then_redone_and_a_preempted_one_resumes(cluster, tmp_path, capsys):
    nb = notebook(tmp_path / "nb")
    local = local_contents(nb, tmp_path / "local", **LONG)
    results = tmp_path / "slurm"

    # 1. scancel while the condensation runs: the sweep reports it failed, --status too (the sweep
    # is cut to its first job: an evaluation computes a missing set itself)
    first = Background(plan(nb, results, **LONG), "slurm", _options(tmp_path), max_jobs=1)
    note = wait_for("the condensation to start", lambda: running_note(results), 120)
    assert run(["scancel", note["slurm_job"]]).returncode == 0
    outcomes = first.result(120)
    assert [o["status"] for o in outcomes] == ["failed"]
    assert "Slurm job" in outcomes[0]["error"] and "without a result" in outcomes[0]["error"]
    capsys.readouterr()
    assert sweep.main(["--status", *argv(nb, results, **LONG)]) == 1
    status = capsys.readouterr().out
    assert "FAILED  tiny dc ipc 1 run 0" in status and "running tiny" not in status

    # 2. run again; preempt it (USR2, as Slurm does before a preemption) after a checkpoint
    before = checkpoint_digest(results)
    second = Background(plan(nb, results, **LONG), "slurm", _options(tmp_path))
    wait_for("a new checkpoint", lambda: checkpoint_digest(results) not in (None, before), 120, 0.2)
    job = running_note(results)["slurm_job"]
    assert run(["scancel", "--signal=USR2", job]).returncode == 0
    # submitit requeues it; Slurm holds a requeued job back for a while: start it now
    wait_for("the requeued job", lambda: (slurm_state.queue() or {}).get(job) == "PENDING", 60, 0.2)
    assert run(["scontrol", "update", f"JobId={job}", "StartTime=now"]).returncode == 0
    outcomes = second.result(300)
    assert [o["status"] for o in outcomes] == ["done", "done"], outcomes  # the set, then its evaluation
    log = (tmp_path / "submitit" / f"{job}{'' if '_' in job else '_0'}_log.err").read_text()
    starts = bar_starts(log)
    # each start resumes from the latest checkpoint: the first from the cancelled run's (or 0), the
    # second, after the preemption, from a later one
    assert len(starts) == 2 and starts[1] > starts[0] and starts[1] >= 10, starts
    assert contents(results) == local  # resumed: the same set, bit for bit, and the same evaluation


def test_a_lock_of_a_requeued_jobs_former_run_is_stale(cluster, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    elsewhere = {"pid": 1234, "host": "lost-node", "started": "2026-01-01T00:00:00"}
    assert run_lock._stale({**elsewhere, "slurm_job": "4242_3"})  # this very job, run before
    assert run_lock._stale({**elsewhere, "slurm_job": "999999_0"})  # no longer in the queue
    assert not run_lock._stale(elsewhere)  # no Slurm job named: another host's run is not judged
    sleeper = run(["sbatch", "--parsable", "--wrap", "sleep 60", "-o", "/dev/null"])
    job = sleeper.stdout.strip()
    try:
        wait_for("the job to be queued", lambda: job in (slurm_state.queue() or {}), 30)
        assert not run_lock._stale({**elsewhere, "slurm_job": job})  # queued: its lock holds
    finally:
        run(["scancel", job])
