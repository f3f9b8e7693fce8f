"""Run-folder oddities (issue: hostile cases): FIFOs where run files belong, bytes that are not
UTF-8 in the metrics, a lock that is a folder, and resuming a diverged run with lower learning
rates. A test that would hang on a FIFO fails after a few seconds instead."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_reliability import TINY, no_work, one_line_error, poison
from test_reliability import config as reliability_config
from tiny import tiny_dataset

from dcclib import io, run_lock, runs
from dcclib.condense import condense
from dcclib.errors import DivergedError, UserError


def config(**overrides: object) -> runs.CondenseConfig:
    """test_reliability's tiny run on an MLP (fast)."""
    return reliability_config(**{"model": "mlp", **overrides})


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (not hang) when the test blocks for more than 20 s (a read of a FIFO with no writer)."""

    def timeout(signum: int, frame: object) -> None:
        raise TimeoutError("blocked: a FIFO was opened for reading")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def stopped_run(tmp_path: Path, stop_after: int = 1) -> Path:
    run = tmp_path / "run"
    condense(config(), tiny_dataset(), run_dir=run, stop_after=stop_after, progress=False)
    return run


# ------------------------------------------------------------------ FIFOs
@pytest.mark.parametrize("name", [runs.METRICS, runs.CONFIG])
def test_a_fifo_in_a_run_folder_is_refused_not_waited_on(name, tmp_path, no_hang):
    run = stopped_run(tmp_path)
    (run / name).unlink()
    os.mkfifo(run / name)
    before = files_but_fifos(run)
    with pytest.raises(UserError, match=f"{name} is a FIFO, not a regular file") as info:
        condense(config(), tiny_dataset(), run_dir=run, resume=True, progress=False)
    assert "\n" not in str(info.value)
    assert files_but_fifos(run) == before and not (run / run_lock.LOCK_NAME).exists()


@pytest.mark.parametrize("name", [runs.METRICS, runs.CONFIG, runs.CHECKPOINT])
def test_the_cli_refuses_a_fifo_before_any_work(name, tmp_path, monkeypatch, capsys, no_hang):
    no_work(monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    io.write_json(run / runs.CONFIG, {"kind": runs.RUN_KIND, "config": {}})
    (run / runs.CHECKPOINT).write_bytes(b"x")
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name)
    err = one_line_error(["condense", *TINY, "--resume", "--out", str(run)], capsys)
    assert "FIFO" in err and name in err and not (run / run_lock.LOCK_NAME).exists()


def files_but_fifos(root: Path) -> dict:
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and p.name != run_lock.LOCK_NAME}


@pytest.mark.parametrize("kind", ["folder", "FIFO"])
def test_a_lock_that_is_not_a_file_is_one_line(kind, tmp_path, monkeypatch, capsys, no_hang):
    no_work(monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    lock = run / run_lock.LOCK_NAME
    lock.mkdir() if kind == "folder" else os.mkfifo(lock)
    err = one_line_error(["condense", *TINY, "--out", str(run)], capsys)
    assert "not a lock file" in err and str(lock) in err
    assert sorted(p.name for p in run.iterdir()) == [run_lock.LOCK_NAME]
    with pytest.raises(UserError, match="not a lock file"):  # the lock itself, under the folder's flock
        with runs.owned(run):
            pass


# ------------------------------------------------------------------ metrics that are not UTF-8
def test_metrics_with_bytes_that_are_not_utf8_resume(tmp_path):
    run = stopped_run(tmp_path, stop_after=2)
    with open(run / runs.METRICS, "ab") as f:
        f.write(b'{"outer": 2, "loss": \xff\xfe\n')  # a line cut in the middle of a character
    result = condense(config(), tiny_dataset(), run_dir=run, resume=True, progress=False)
    rows = io.read_jsonl(run / runs.METRICS)
    assert [r["outer"] for r in rows] == [0, 1, 2] and len(result.metrics) == 3
    assert b"\xff" not in (run / runs.METRICS).read_bytes()


def test_read_jsonl_stops_at_a_line_that_is_not_utf8(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"a": 1}\n\xc3\x28\n{"a": 2}\n')
    assert io.read_jsonl(path) == [{"a": 1}]


# ------------------------------------------------------------------ a diverged run, resumed
def test_a_diverged_run_resumes_with_a_lower_learning_rate_recorded_in_the_metrics(
    tmp_path, monkeypatch, capsys
):
    run, data = tmp_path / "run", tiny_dataset()
    poison(monkeypatch, at=2, what="images", seen={"run": run})
    with pytest.raises(DivergedError) as info:
        condense(config(outer_iterations=4), data, run_dir=run, progress=False)
    assert "--resume" in str(info.value) and "lower" in str(info.value)
    monkeypatch.undo()
    higher = config(outer_iterations=4, lr_images=0.2)
    with pytest.raises(UserError, match="--lr-images 0.1; resume with it or a lower one"):
        condense(higher, data, run_dir=run, resume=True, progress=False)
    other = config(outer_iterations=4, lr_images=0.05, batch_real=2)
    with pytest.raises(UserError, match=r"other settings \(batch_real\)"):
        condense(other, data, run_dir=run, resume=True, progress=False)
    capsys.readouterr()
    lower = config(outer_iterations=4, lr_images=0.05)
    result = condense(lower, data, run_dir=run, resume=True, progress=False)
    assert "resuming at outer iteration 2 with lr_images 0.05 (was 0.1)" in capsys.readouterr().err
    assert [r["outer"] for r in result.metrics] == [0, 1, 2, 3]
    rows = [json.loads(line) for line in (run / runs.METRICS).read_text().splitlines()]
    event = {"event": runs.RESUME_EVENT, "at_outer": 2, "changed": {"lr_images": [0.1, 0.05]}}
    assert [r.get("outer", r.get("event")) for r in rows] == [0, 1, runs.RESUME_EVENT, 2, 3]
    assert rows[2] == event
    assert io.load_synthetic(run / runs.SYNTHETIC)[2]["config"]["lr_images"] == 0.05
    assert torch.isfinite(result.images).all()
