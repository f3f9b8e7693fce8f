"""Nothing lost, round two (issue: hostile cases): outputs that point at inputs, full disks at
every write (safetensors' own error type, `ulimit -f`, a disk full before the run starts), and
SIGTERM. CPU only, tiny settings."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from test_reliability import TINY, config, files, no_work, one_line_error
from tiny import tiny_dataset

import dcclib.condense
from dcclib import io, run_lock, runs
from dcclib.cli import EXIT_TERMINATED, main
from dcclib.condense import condense
from dcclib.errors import UserError

EVAL = ["--models", "mlp", "--num-nets", "1", "--epochs", "1", "--device", "cpu", "--quiet"]
MNIST_META = {"class_names": [str(i) for i in range(10)], "mean": [0.1307], "std": [0.3081]}
REPO = Path(__file__).resolve().parents[1]


def mnist_set(path: Path, fill: float | None = None) -> Path:
    """A valid saved set for embedded-mnist (10 images); `fill` sets every pixel (alternating sign)."""
    images = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    if fill is not None:
        images = torch.full_like(images, fill) * torch.tensor([1.0, -1.0]).repeat(5).view(10, 1, 1, 1)
    meta = {**MNIST_META, "dataset": "embedded-mnist", "method": "dc"}
    io.save_synthetic(path, images, torch.arange(10), meta)
    return path


# ------------------------------------------------------------------ an output never replaces an input
@pytest.mark.parametrize("target", ["the set", "a checkpoint", "a run's config", "a text file"])
def test_evaluate_out_never_replaces_an_input_or_another_file(target, tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)
    s = mnist_set(tmp_path / "set.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    io.save_checkpoint(
        run / runs.CHECKPOINT, {"images": torch.zeros(1, 1, 2, 2)}, {"next_outer": 1, "fingerprint": {}}
    )
    io.write_json(run / runs.CONFIG, {"kind": runs.RUN_KIND, "config": {}})
    (tmp_path / "notes.txt").write_text("precious")
    out = {
        "the set": s,
        "a checkpoint": run / runs.CHECKPOINT,
        "a run's config": run / runs.CONFIG,
        "a text file": tmp_path / "notes.txt",
    }[target]
    before = files(tmp_path)
    err = one_line_error(["evaluate", str(s), *EVAL, "--out", str(out)], capsys)
    assert "--out" in err and files(tmp_path) == before
    if target != "the set":
        assert "not a result of dcc evaluate" in err
    # the checkpoint still resumes: it was not touched
    assert io.load_checkpoint(run / runs.CHECKPOINT)[1]["next_outer"] == 1


def test_evaluate_out_replaces_an_earlier_result(tmp_path, capsys):
    s = mnist_set(tmp_path / "set.safetensors")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(s), *EVAL, "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert first["kind"] == "dcc-evaluation"
    assert main(["evaluate", str(s), *EVAL, "--seed", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["eval_config"]["seed"] == 1


# ------------------------------------------------------------------ full disks
def full_disk_on(monkeypatch: pytest.MonkeyPatch, wanted) -> list[str]:
    """safetensors' save_file raises its own error, as on a full disk, for the files `wanted`
    (called with the temporary path) picks; the names it was called with are returned."""
    real, calls = io.save_file, []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if wanted(Path(filename), len(calls)):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(io, "save_file", save_file)
    return calls


def test_a_full_disk_at_the_set_after_eval_nets_prints_the_accuracies(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"

    def second_set_write(tmp: Path, _: int) -> bool:  # the set with its accuracies, the set exists
        return tmp.name.startswith(".synthetic.safetensors") and (run / runs.SYNTHETIC).exists()

    full_disk_on(monkeypatch, second_set_write)
    args = ["--model", "mlp", "--eval-nets", "1", "--eval-epochs", "1", "--eval-models", "mlp"]
    code = main(["condense", *TINY, *args, "--out", str(run)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    evaluation = json.loads(out)["evaluation"]  # printed, not lost
    assert evaluation[0]["model"] == "mlp" and len(evaluation[0]["accuracies"]) == 1
    assert "accuracies" not in io.load_synthetic(run / runs.SYNTHETIC)[2]  # kept, as it was
    assert sorted(p.name for p in run.iterdir()) == sorted(runs.RUN_FILES)  # no temporaries, no lock


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_last_one_resumes_bit_identically(
    tmp_path, monkeypatch
):
    data = tiny_dataset()
    cfg = config(model="mlp")
    whole = condense(cfg, data, run_dir=tmp_path / "whole", progress=False)
    run = tmp_path / "run"
    full_disk_on(monkeypatch, lambda tmp, n: tmp.name.startswith(".checkpoint") and n == 2)
    with pytest.raises(UserError, match="No space left on device.*--resume") as info:
        condense(cfg, data, run_dir=run, progress=False)
    assert "\n" not in str(info.value)
    assert io.load_checkpoint(run / runs.CHECKPOINT)[1]["next_outer"] == 1
    assert not (run / runs.SYNTHETIC).exists() and not (run / run_lock.LOCK_NAME).exists()
    monkeypatch.undo()
    resumed = condense(cfg, data, run_dir=run, resume=True, progress=False)
    assert torch.equal(resumed.images, whole.images)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """`ulimit -f limit` for this process in the block: a write past it fails with EFBIG."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_real_write_error_of_safetensors_is_one_line(tmp_path):
    """Under `ulimit -f` safetensors raises its own SafetensorError ('File too large'): one line."""
    code = (
        "import resource, signal, sys, torch\n"
        "from pathlib import Path\n"
        "from dcclib import runs\n"
        "from dcclib.errors import UserError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "meta = {'dataset': 'x', 'class_names': ['a'], 'mean': [0.0], 'std': [1.0]}\n"
        "labels = torch.zeros(4, dtype=torch.long)\n"
        "try:\n"
        "    runs.save_set(Path(sys.argv[1]), torch.zeros(4, 1, 28, 28), labels, meta)\n"
        "except UserError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "File too large" in proc.stdout and proc.stdout.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no half-written set, no temporary


def test_a_disk_full_before_the_run_starts_is_one_line_and_leaves_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    with file_size_limit(0):  # nothing can be written: the lock is the first write
        code = main(["condense", *TINY, "--out", str(run)])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert run_lock.LOCK_NAME in err and "File too large" in err
    assert files(tmp_path) == {}  # no folder with an empty run.lock


def test_a_lock_that_cannot_be_written_is_removed(tmp_path, monkeypatch):
    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_lock.os, "write", no_space)
    with pytest.raises(UserError, match="No space left on device"):
        with runs.owned(tmp_path / "run"):
            pass
    assert files(tmp_path) == {}


# ------------------------------------------------------------------ SIGTERM
def test_sigterm_is_one_line_exit_143_and_releases_the_lock(tmp_path, monkeypatch, capsys):
    run, seen = tmp_path / "run", {}

    def unhandled(signum: int, frame: object) -> None:  # what runs if dcc installs no handler
        raise RuntimeError("SIGTERM reached the process's own handler: dcc did not handle it")

    def terminated_condense(cfg, data, run_dir, **kwargs):
        with runs.owned(Path(run_dir)):
            seen["locked"] = (Path(run_dir) / run_lock.LOCK_NAME).exists()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler interrupts this
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(dcclib.condense, "condense", terminated_condense)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        tic = time.monotonic()
        code = main(["condense", *TINY, "--out", str(run)])
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
    err = capsys.readouterr().err
    assert code == EXIT_TERMINATED == 143 and time.monotonic() - tic < 20
    assert err.startswith("dcc: terminated by SIGTERM") and err.count("\n") == 1 and "--resume" in err
    assert seen == {"locked": True} and not (run / run_lock.LOCK_NAME).exists()
    assert restored is unhandled  # the handler is put back as it was
