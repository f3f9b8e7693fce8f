"""Nothing lost, nothing silent (issue 11, part A): divergence, write failures, one process per
run folder, folders that are not runs, checkpoints validated on resume, checks before any work,
notebook parameters, leftovers, NaN in metrics, file modes, image-folder sets.

CPU only, tiny settings; no sleeps and no racing processes (locks are written by hand).
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest
import torch
from tiny import tiny_dataset

import dcclib.condense
import dcclib.data
import dcclib.evaluate
from dcclib import io, run_lock, runs
from dcclib.cli import EXIT_DIVERGED, main
from dcclib.condense import CondenseConfig, condense
from dcclib.errors import DivergedError, UserError

TINY = ["--ipc", "1", "--outer-iterations", "2", "--inner-iterations", "1", "--net-epochs", "1"]
TINY += ["--batch-real", "8", "--model", "convnet_w32", "--device", "cpu", "--quiet"]
EVAL = ["--num-nets", "1", "--epochs", "1", "--device", "cpu", "--quiet"]
RANDOM = ["evaluate", "--random", "--dataset", "embedded-mnist", "--ipc", "1"]  # the Random baseline
DEAD_PID = 2**22 + 1  # above the largest pid_max Linux allows: never a live process


def config(**overrides: object) -> CondenseConfig:
    base = dict(dataset="tiny", method="dc", ipc=1, outer_iterations=3, inner_iterations=1)
    base.update(net_epochs=1, batch_real=4, model="convnet_w32", checkpoint_every=1, seed=1)
    return CondenseConfig(**{**base, **overrides})


def files(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder): the disk, to compare."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in root.rglob("*")}


def one_line_error(args: list[str], capsys: pytest.CaptureFixture, code: int = 2) -> str:
    got = main(args)
    out, err = capsys.readouterr()
    assert got == code, (got, err)
    assert err.startswith("dcc: error:") and err.count("\n") == 1 and "Traceback" not in err
    return err


def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading data, condensing or training now fails the test."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("data loaded or networks trained for bad input")

    monkeypatch.setattr(dcclib.data, "load_dataset", forbidden)
    monkeypatch.setattr(dcclib.condense, "condense", forbidden)
    monkeypatch.setattr(dcclib.evaluate, "evaluate_set", forbidden)
    monkeypatch.setattr(dcclib.evaluate, "random_subset", forbidden)


def strict_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file, refusing NaN and Infinity (which are not JSON)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------ 1. divergence
def poison(monkeypatch: pytest.MonkeyPatch, at: int, what: str, seen: dict) -> None:
    """Outer iteration `at` ends with a NaN image or an infinite loss; `seen` gets the checkpoint
    file as it was then."""
    real = dcclib.condense.outer_iteration

    def outer_iteration(cfg, data, syn_images, syn_labels, optimizer, outer, observer=None):
        result = real(cfg, data, syn_images, syn_labels, optimizer, outer, observer)
        if outer == at:
            ckpt = seen.get("run", Path("/nonexistent")) / runs.CHECKPOINT
            seen["checkpoint"] = ckpt.read_bytes() if ckpt.exists() else None
            if what == "images":
                with torch.no_grad():
                    syn_images[0, 0, 0, 0] = float("nan")
            else:
                result.loss_sum = torch.tensor(float("inf"))
        return result

    monkeypatch.setattr(dcclib.condense, "outer_iteration", outer_iteration)


def test_divergence_stops_at_once_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    seen = {"run": run}
    poison(monkeypatch, at=2, what="images", seen=seen)
    with pytest.raises(DivergedError, match="outer iteration 2") as info:
        condense(config(outer_iterations=4), tiny_dataset(), run_dir=run, progress=False)
    assert "--lr-images" in str(info.value) and "--lr-net" in str(info.value)
    assert "\n" not in str(info.value)
    assert (run / runs.CHECKPOINT).read_bytes() == seen["checkpoint"]  # untouched
    tensors, meta = io.load_checkpoint(run / runs.CHECKPOINT)
    assert meta["next_outer"] == 2 and torch.isfinite(tensors["images"]).all()
    assert not (run / runs.SYNTHETIC).exists() and not (run / run_lock.LOCK_NAME).exists()
    rows = strict_jsonl(run / runs.METRICS)
    assert [r["finite"] for r in rows] == [True, True, False] and rows[-1]["loss"] is not None


def test_a_non_finite_loss_exits_3_with_null_in_the_metrics(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    poison(monkeypatch, at=0, what="loss", seen={})
    err = one_line_error(["condense", *TINY, "--out", str(run)], capsys, code=EXIT_DIVERGED)
    assert "outer iteration 0" in err and "no checkpoint was written" in err
    (row,) = strict_jsonl(run / runs.METRICS)
    assert row["outer"] == 0 and row["loss"] is None and row["finite"] is False
    assert sorted(p.name for p in run.iterdir()) == [runs.CONFIG, runs.METRICS]


# ------------------------------------------------------------------------ 2. write failures
@pytest.mark.parametrize(
    "command, where",
    [("condense", "file"), ("condense", "file/sub"), ("evaluate", "file/sub"), ("evaluate", "folder")],
)  # evaluate --out names a file (an existing one is replaced); condense --out a folder
def test_an_output_that_cannot_be_a_path_is_refused_before_any_work(
    command, where, tmp_path, monkeypatch, capsys
):
    no_work(monkeypatch)
    (tmp_path / "file").write_text("precious")
    (tmp_path / "folder").mkdir()
    args = ["condense", *TINY] if command == "condense" else [*RANDOM, *EVAL]
    before = files(tmp_path)
    err = one_line_error([*args, "--out", str(tmp_path / where)], capsys)
    assert "folder" in err and files(tmp_path) == before


@pytest.mark.parametrize("command", ["condense", "evaluate"])
def test_an_unwritable_folder_is_refused_before_any_work(command, tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)

    def denied(*args: object, **kwargs: object) -> None:  # what a read-only folder answers
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(runs.tempfile, "mkstemp", denied)
    args = ["condense", *TINY] if command == "condense" else [*RANDOM, *EVAL]
    err = one_line_error([*args, "--out", str(tmp_path / "out" / "x.json")], capsys)
    assert "Permission denied" in err and files(tmp_path) == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        one_line_error(["condense", *TINY, "--out", str(locked / "run")], capsys)
    finally:
        locked.chmod(0o700)


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real, calls = io.save_checkpoint, []

    def full_disk(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(io, "save_checkpoint", full_disk)
    run = tmp_path / "run"
    with pytest.raises(UserError, match="No space left on device.*--resume"):
        condense(config(), tiny_dataset(), run_dir=run, progress=False)
    assert io.load_checkpoint(run / runs.CHECKPOINT)[1]["next_outer"] == 1
    assert not (run / runs.SYNTHETIC).exists() and not (run / run_lock.LOCK_NAME).exists()


def test_evaluate_results_reach_stdout_on_a_write_failure(tmp_path, monkeypatch, capsys):
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "write_json", full_disk)
    assert main([*RANDOM, *EVAL, "--out", str(tmp_path / "r.json")]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["results"][0]["accuracies"]  # the work is not lost
    assert err.count("\n") == 1 and "No space left on device" in err and "printed on stdout" in err
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------------ 3. one process per folder
def write_lock(folder: Path, pid: object, host: str | None = None) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00"}
    (folder / run_lock.LOCK_NAME).write_text(json.dumps(owner))
    return (folder / run_lock.LOCK_NAME).read_bytes()


@pytest.mark.parametrize("host", [None, "another-machine"])
def test_a_run_folder_held_by_a_live_process_is_refused(host, tmp_path, capsys):
    run = tmp_path / "run"
    lock = write_lock(run, os.getpid(), host)  # this test's own process: alive
    err = one_line_error(["condense", *TINY, "--out", str(run)], capsys)
    assert f"in use by process {os.getpid()}" in err and run_lock.LOCK_NAME in err
    assert files(run) == {run_lock.LOCK_NAME: lock}


@pytest.mark.parametrize("content", [DEAD_PID, "torn"])
def test_a_stale_lock_is_taken_over_with_a_note_and_released(content, tmp_path, capsys):
    run = tmp_path / "run"
    if content == "torn":  # killed while writing the lock
        run.mkdir()
        (run / run_lock.LOCK_NAME).write_text('{"pid": 12')
    else:
        write_lock(run, content)
    condense(config(outer_iterations=1), tiny_dataset(), run_dir=run, progress=False)
    assert "taking over" in capsys.readouterr().err
    assert (run / runs.SYNTHETIC).exists() and not (run / run_lock.LOCK_NAME).exists()


def test_the_lock_is_held_during_the_run_and_released_after_a_failure(tmp_path, monkeypatch):
    run, held = tmp_path / "run", []

    def outer_iteration(*args: object, **kwargs: object) -> object:
        owner = json.loads((run / run_lock.LOCK_NAME).read_text())
        held.append(owner["pid"] == os.getpid() and owner["host"] == socket.gethostname())
        raise KeyboardInterrupt

    monkeypatch.setattr(dcclib.condense, "outer_iteration", outer_iteration)
    with pytest.raises(KeyboardInterrupt):
        condense(config(), tiny_dataset(), run_dir=run, progress=False)
    assert held == [True] and not (run / run_lock.LOCK_NAME).exists()


# ------------------------------------------------------------------------ 4. folders that are not runs
@pytest.mark.parametrize(
    "name, text",
    [(runs.CONFIG, "precious\n"), (runs.CONFIG, '{"config": {"lr": 1}}'), ("notes.txt", "precious\n")],
)
def test_a_non_empty_folder_that_is_not_a_run_is_refused(name, text, tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)
    (tmp_path / name).write_text(text)
    err = one_line_error(["condense", *TINY, "--out", str(tmp_path)], capsys)
    assert "not a dcc run" in err and files(tmp_path) == {name: text.encode()}


def test_a_run_folder_written_before_the_marker_still_resumes(tmp_path):
    run, data = tmp_path / "run", tiny_dataset()
    condense(config(), data, run_dir=run, stop_after=1, progress=False)
    written = io.read_json(run / runs.CONFIG)
    assert written.pop("kind") == runs.RUN_KIND
    io.write_json(run / runs.CONFIG, written)  # as an older version wrote it
    assert runs.is_run_folder(run)
    result = condense(config(), data, run_dir=run, resume=True, progress=False)
    assert len(result.metrics) == 3 and (run / runs.SYNTHETIC).exists()


# ------------------------------------------------------------------------ 6. checkpoints validated
def tamper(tensors: dict, meta: dict, how: str) -> None:
    images = tensors["images"]
    if how == "one image":  # images and momentum agree, but not with the run: io cannot tell
        tensors["images"], tensors["momentum"] = images[:1].clone(), tensors["momentum"][:1].clone()
    elif how == "nan":
        images[0, 0, 0, 0] = float("nan")
    elif how == "float64":
        tensors["images"] = images.double()
    elif how == "momentum shape":
        tensors["momentum"] = torch.zeros(1, *images.shape[1:])
    elif how == "extra tensor":
        tensors["labels"] = torch.arange(3)
    else:
        meta["next_outer"] = {"negative": -3, "string": "1", "too large": 99, "bool": True}[how]


@pytest.mark.parametrize(
    "how",
    [
        "one image",
        "nan",
        "float64",
        "momentum shape",
        "extra tensor",
        "negative",
        "string",
        "too large",
        "bool",
    ],
)
def test_a_tampered_checkpoint_is_refused_on_resume(how, tmp_path):
    run, data = tmp_path / "run", tiny_dataset()
    condense(config(), data, run_dir=run, stop_after=1, progress=False)
    tensors, meta = io.load_checkpoint(run / runs.CHECKPOINT)
    meta.pop("format_version")
    tamper(tensors, meta, how)
    io.save_tensors(run / runs.CHECKPOINT, tensors, meta)
    before = files(run)
    with pytest.raises(UserError, match="not a (valid|usable) checkpoint") as info:
        condense(config(), data, run_dir=run, resume=True, progress=False)
    assert "\n" not in str(info.value) and files(run) == before


# ------------------------------------------------------------------------ 7. checks before any work
def test_an_unknown_evaluation_model_is_refused_before_condensing(tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)
    args = ["condense", *TINY, "--eval-nets", "1", "--eval-models", "convnet,nosuchnet"]
    err = one_line_error([*args, "--out", str(tmp_path / "run")], capsys)
    assert "unknown model 'nosuchnet'" in err and files(tmp_path) == {}


@pytest.mark.parametrize("root_exists", [False, True])
def test_a_failed_data_load_leaves_no_empty_folders(root_exists, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data" / "root"
    if root_exists:
        root.mkdir(parents=True)
        (root / "other").mkdir()
    before = files(tmp_path)

    def download_attempt(name: str, data_root: str, **kwargs: object) -> None:
        (Path(data_root) / "MNIST" / "raw").mkdir(parents=True)  # as torchvision does
        raise UserError("MNIST not found")

    monkeypatch.setattr(dcclib.data, "load_dataset", download_attempt)
    one_line_error(["condense", *TINY, "--dataset", "mnist", "--data-root", str(root)], capsys)
    assert files(tmp_path) == before


def test_resume_without_a_checkpoint_creates_nothing(tmp_path, capsys):
    err = one_line_error(["condense", *TINY, "--resume", "--out", str(tmp_path / "run")], capsys)
    assert "nothing to resume" in err and files(tmp_path) == {}


def test_images_too_small_for_the_model_fail_before_the_run_folder(tmp_path):
    with pytest.raises(UserError, match="too small"):
        condense(config(model="convnet"), tiny_dataset(size=1), run_dir=tmp_path / "run", progress=False)
    assert files(tmp_path) == {}


def test_reports_with_an_unknown_notebook_leave_no_output_folder(tmp_path, monkeypatch, capsys):
    from dcclib.lab import reports

    assert reports.main(["--only", "99", "--output", str(tmp_path / "out")]) == 2
    assert "no notebook 99" in capsys.readouterr().err and files(tmp_path) == {}


# ------------------------------------------------------------------------ 9. notebook parameters
def test_an_unknown_notebook_parameter_names_the_known_ones(tmp_path, monkeypatch, capsys):
    import papermill

    from dcclib.lab import reports

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    assert reports.main(["--only", "04", "--param", "ipc=[1]", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has no parameter 'ipc'" in err and "ipcs" in err and err.count("\n") == 1
    assert files(tmp_path) == {}
    assert "ipcs" in reports.notebook_parameters(reports.notebooks_dir() / "04_table2_benchmarks.ipynb")


# ------------------------------------------------------------------------ 10. small things
def test_leftover_temporary_files_are_removed_at_the_next_start(tmp_path):
    run, data = tmp_path / "run", tiny_dataset()
    condense(config(), data, run_dir=run, stop_after=1, progress=False)
    leftovers = [".checkpoint.safetensors.tmp-k3_x9q2a", ".metrics.jsonl.abcdefgh.tmp", ".dcc-probe-1a2b3c4d"]
    for name in leftovers:
        (run / name).write_bytes(b"half a file")
    (run / ".notes.tmp").write_text("the user's")
    condense(config(), data, run_dir=run, resume=True, progress=False)
    assert not any((run / name).exists() for name in leftovers) and (run / ".notes.tmp").exists()


def test_run_files_get_the_mode_of_ordinary_files(tmp_path):
    old = os.umask(0o022)
    try:
        condense(config(outer_iterations=1), tiny_dataset(), run_dir=tmp_path / "run", progress=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes == dict.fromkeys(runs.RUN_FILES, 0o644)


def write_image_folder(folder: Path, size: int = 8) -> None:
    from PIL import Image

    for split, count in (("train", 4), ("test", 2)):
        for c, shade in (("dark", 40), ("light", 200)):
            (folder / split / c).mkdir(parents=True)
            for i in range(count):
                Image.new("L", (size, size), color=shade + 5 * i).save(folder / split / c / f"{i}.png")


def test_a_set_from_an_image_folder_is_evaluated_without_dataset(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "digits"
    write_image_folder(folder)
    run = tmp_path / "run"
    args = ["--ipc", "1", "--outer-iterations", "1", "--inner-iterations", "1", "--net-epochs", "1"]
    args += ["--batch-real", "2", "--model", "mlp", "--device", "cpu", "--quiet"]
    assert main(["condense", *args, "--dataset", str(folder), "--out", str(run)]) == 0
    meta = io.load_synthetic(run / runs.SYNTHETIC)[2]
    assert meta["dataset"] == "digits" and meta["dataset_path"] == str(folder.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the folder's name alone no longer finds it
    capsys.readouterr()
    assert main(["evaluate", str(run / runs.SYNTHETIC), "--models", "mlp", *EVAL]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "digits"
