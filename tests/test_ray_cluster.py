"""`dcc sweep --executor ray` against a running Ray head, attached as Ray users attach.

A module fixture starts a head as users start one (`ray start --head --num-cpus 2
--include-dashboard=false`, localhost, a free port, its own temp folder; `--block` keeps it in one
process that the fixture stops by its pid: `ray stop` would stop every Ray on the machine), and
the sweep attaches through RAY_ADDRESS. Skipped with the reason where ray is not installed or
the head does not start.

Checked: results equal to a local run's, --status, a rerun runs nothing, --workers with an
existing cluster refused in one line, and a worker killed with SIGKILL mid-job reported failed
(outcome, note, --status) and redone on the next run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cluster_notebook import Background, argv, local_contents, notebook, plan, running_note, wait_for
from test_sweep import contents

from dcclib.lab import executors, sweep

pytest.importorskip("ray")
RAY = Path(sys.executable).parent / "ray"
LONG = {"methods": ["dc"], "outer": 100}  # ~25 s: killed while it runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """The address of a running Ray head (RAY_ADDRESS set for this process meanwhile)."""
    if not RAY.exists():
        pytest.skip(f"no ray command beside {sys.executable}")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay short
    address = f"127.0.0.1:{_free_port()}"
    command = [str(RAY), "start", "--head", "--num-cpus", "2", "--include-dashboard=false", "--block",
               "--port", address.split(":")[1], "--temp-dir", temp,
               "--disable-usage-stats"]  # fmt: skip
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 - closed at teardown
    # a busy machine starts its agents late; HOME of its own: a ~/.ray/auth_token left by an earlier
    # Ray makes a head demand a token that clients without RAY_AUTH_MODE do not send
    env = {**os.environ, "RAY_agent_register_timeout_ms": "120000", "HOME": temp}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    status = [str(RAY), "status", "--address", address]
    try:
        wait_for("the Ray head", lambda: proc.poll() is not None or subprocess.run(
            status, capture_output=True, timeout=60).returncode == 0, 90, 1)  # fmt: skip
    except AssertionError:
        proc.poll()
    if proc.returncode is not None or subprocess.run(status, capture_output=True, timeout=60).returncode:
        _stop(proc)
        log.close()
        lines = [line.strip() for line in (Path(temp) / "head.log").read_text().splitlines() if line.strip()]
        said = lines[-1][:300] if lines else f"exit status {proc.returncode}"
        shutil.rmtree(temp, ignore_errors=True)
        pytest.skip(f"the Ray head did not start: {said}")
    saved = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address
    try:
        yield address
    finally:
        if saved is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = saved
        _stop(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the head: SIGTERM to its `ray start --block` process (it stops the processes it
    started), then its process group if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_a_sweep_on_a_running_head_equals_a_local_run(head, tmp_path, capsys):
    nb = notebook(tmp_path / "nb")
    local = local_contents(nb, tmp_path / "local")
    results = tmp_path / "ray"
    assert sweep.main([*argv(nb, results), "--executor", "ray"]) == 0
    assert contents(results) == local and len(local) == 4
    capsys.readouterr()
    assert sweep.main(["--status", *argv(nb, results)]) == 0
    status = capsys.readouterr().out
    assert "| 60_cluster | 2 | 2 | 0 |" in status and "FAILED" not in status and "\nrunning " not in status
    assert sweep.main([*argv(nb, results), "--executor", "ray"]) == 0
    assert "0 done, 0 failed" in capsys.readouterr().out  # a rerun runs nothing


def test_workers_with_an_existing_cluster_are_refused_in_one_line(head, tmp_path, capsys):
    nb = notebook(tmp_path / "nb")
    for extra in (["--workers", "2"], ["--workers", "2", "--address", head]):
        assert sweep.main([*argv(nb, tmp_path / "r"), "--executor", "ray", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "--workers 2 sizes a Ray instance started here" in err and head in err
    assert not (tmp_path / "r").exists()


def test_a_worker_killed_mid_job_is_failed_then_redone(head, tmp_path, capsys):
    nb = notebook(tmp_path / "nb")
    results = tmp_path / "ray"
    first = Background(plan(nb, results, **LONG), "ray", executors.Options(), max_jobs=1)
    note = wait_for("the condensation to start", lambda: running_note(results), 120)
    assert note["host"] == socket.gethostname() and not note.get("slurm_job")
    os.kill(note["pid"], signal.SIGKILL)
    outcomes = first.result(120)
    assert [o["status"] for o in outcomes] == ["failed"], outcomes
    capsys.readouterr()
    assert sweep.main(["--status", *argv(nb, results, **LONG)]) == 1
    status = capsys.readouterr().out
    assert "FAILED  tiny dc ipc 1 run 0" in status and "running tiny" not in status
    again = sweep.run(plan(nb, results, **LONG), "ray", executors.Options())
    assert [o["status"] for o in again] == ["done", "done"]
    assert sweep.run(plan(nb, results, **LONG), "ray", executors.Options()) == []
