"""The `dcc` command: a small end-to-end run on the embedded data, and bad input -> exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcclib import io
from dcclib.cli import main

TINY = [
    "--ipc",
    "1",
    "--outer-iterations",
    "2",
    "--inner-iterations",
    "2",
    "--net-epochs",
    "1",
    "--batch-real",
    "8",
    "--model",
    "convnet_w32",
    "--device",
    "cpu",
    "--quiet",
]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saved_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        main(
            [
                "condense",
                *TINY,
                "--method",
                "dsac",
                "--out",
                str(out),
                "--eval-nets",
                "1",
                "--eval-epochs",
                "1",
            ]
        )
        == 0
    )
    return out / "synthetic.safetensors"


def test_condense_writes_a_complete_run(saved_set: Path):
    run_dir = saved_set.parent
    images, labels, meta = io.load_synthetic(saved_set)
    assert images.shape == (10, 1, 28, 28) and labels.tolist() == list(range(10))
    assert meta["dataset"] == "embedded-mnist" and meta["method"] == "dsac"
    assert meta["accuracies"][0]["model"] == "convnet" and len(meta["accuracies"][0]["accuracies"]) == 1
    assert (run_dir / "config.json").exists() and len(io.read_jsonl(run_dir / "metrics.jsonl")) == 2


def test_info_and_evaluate(saved_set: Path, capsys, tmp_path):
    code, out, _ = run(["info", str(saved_set)], capsys)
    assert code == 0 and json.loads(out)["images"] == [10, 1, 28, 28]
    result_file = tmp_path / "eval.json"
    code, out, _ = run(
        [
            "evaluate",
            str(saved_set),
            "--models",
            "mlp,lenet",
            "--num-nets",
            "1",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(result_file),
        ],
        capsys,
    )
    assert code == 0
    summary = json.loads(result_file.read_text())
    assert [r["model"] for r in summary["results"]] == ["mlp", "lenet"]
    assert summary["method"] == "dsac" and summary["results"][0]["augment"] == "dsa"


def test_random_baseline(capsys):
    code, out, _ = run(
        [
            "evaluate",
            "--random",
            "--ipc",
            "2",
            "--num-nets",
            "1",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0 and json.loads(out)["method"] == "random"


def one_line_error(args, capsys, tmp_path) -> str:
    before = set(tmp_path.rglob("*"))
    code, out, err = run(args, capsys)
    assert code == 2, (code, err)
    assert err.startswith("dcc: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert set(tmp_path.rglob("*")) == before  # nothing partial left behind
    return err


@pytest.mark.parametrize(
    "extra",
    [
        ["--dataset", "no-such-dataset"],
        ["--method", "kip"],
        ["--model", "transformer"],
        ["--ipc", "0"],
        ["--ipc", "-3"],
        ["--ipc", "401", "--inner-iterations", "1", "--net-epochs", "1"],  # embedded classes hold 400 images
        ["--outer-iterations", "0"],
        ["--warmup", "sometimes"],
        ["--ipc", "abc"],
    ],
)
def test_condense_bad_input(extra, capsys, tmp_path):
    out = tmp_path / "run"
    err = one_line_error(["condense", *TINY, "--out", str(out), *extra], capsys, tmp_path)
    assert not out.exists(), err


def test_missing_and_corrupt_files(capsys, tmp_path):
    assert "not found" in one_line_error(["info", str(tmp_path / "nope.safetensors")], capsys, tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert "safetensors" in one_line_error(["evaluate", str(bad)], capsys, tmp_path)
    truncated = tmp_path / "trunc.safetensors"
    io.save_synthetic(
        truncated,
        torch.zeros(2, 1, 28, 28),
        torch.arange(2),
        {"class_names": ["a", "b"], "mean": [0.0], "std": [1.0], "dataset": "embedded-mnist"},
    )
    truncated.write_bytes(truncated.read_bytes()[:-100])
    one_line_error(["info", str(truncated)], capsys, tmp_path)


def test_mismatched_set_is_refused(capsys, tmp_path):
    other = tmp_path / "other.safetensors"
    io.save_synthetic(
        other,
        torch.zeros(2, 3, 32, 32),
        torch.arange(2),
        {"class_names": ["a", "b"], "mean": [0.0] * 3, "std": [1.0] * 3, "dataset": "embedded-mnist"},
    )
    err = one_line_error(["evaluate", str(other), "--num-nets", "1", "--device", "cpu"], capsys, tmp_path)
    assert "classes" in err or "shape" in err


def test_evaluate_bad_counts(capsys, tmp_path):
    one_line_error(["evaluate", "--random", "--ipc", "1", "--num-nets", "0"], capsys, tmp_path)
    one_line_error(["evaluate", "--random"], capsys, tmp_path)
    one_line_error(
        ["evaluate", "--random", "--ipc", "1", "--models", "nope", "--device", "cpu"], capsys, tmp_path
    )


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dcclib.cli", "condense", "--method", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip().startswith("dcc: error:")
        and "Traceback" not in proc.stderr
    )
