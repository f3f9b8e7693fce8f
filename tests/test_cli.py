"""The `dcc` command: a small end-to-end run on the embedded data, and bad input -> exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import dcclib.condense
import dcclib.data
import dcclib.evaluate
from dcclib import io
from dcclib.cli import build_parser, main
from dcclib.condense import CondenseConfig
from dcclib.evaluate import EvalConfig

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
            "--dataset",
            "embedded-mnist",
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


# ------------------------------------------------------------------ defaults: one home each
# Options that share a field's name but keep their own default on purpose: `condense --dataset`
# is None, which load_dataset reads as the embedded MNIST (the run records the loaded name).
CLI_OWN = {"dataset"}
# condense's options for its optional evaluation, named apart from the evaluation's own fields
EVAL_OPTIONS_OF_CONDENSE = {"eval_models": "models", "eval_epochs": "epochs"}


def field_options(command: str) -> list[tuple[str, type, str]]:
    """(option dest, dataclass, field) for every `command` option that is a dataclass setting."""
    dests = vars(build_parser().parse_args([command]))
    config = {"condense": CondenseConfig, "evaluate": EvalConfig}[command]
    names = {f.name for f in fields(config)}
    pairs = [(d, config, d) for d in dests if d in names and d not in CLI_OWN]
    if command == "condense":
        pairs += [(d, EvalConfig, f) for d, f in EVAL_OPTIONS_OF_CONDENSE.items()]
    return pairs


def test_field_options_cover_the_settings():
    options = field_options("condense")
    condense = {f for _, config, f in options if config is CondenseConfig}
    not_options = {f.name for f in fields(CondenseConfig)} - condense
    assert not_options == {"dataset", "momentum_images", "batch_train"}  # --dataset: CLI_OWN
    assert {d for d, config, _ in options if config is EvalConfig} == {"eval_models", "eval_epochs"}
    evaluate = {d for d, _, _ in field_options("evaluate")}
    assert evaluate == {"models", "num_nets", "epochs", "augment", "seed", "parallel_nets", "precision"}


@pytest.mark.parametrize("command", ["condense", "evaluate"])
def test_parser_defaults_are_the_dataclass_defaults(command):
    args = build_parser().parse_args([command])
    for dest, config, name in field_options(command):
        expected = getattr(config(), name)
        assert getattr(args, dest) == expected and type(getattr(args, dest)) is type(expected), dest


@pytest.mark.parametrize("command", ["condense", "evaluate"])
def test_parser_reads_each_default_from_the_dataclass(command, monkeypatch):
    """Change every field's default: the parser follows (a default hard-coded in argparse would not)."""
    sentinels = {}
    for dest, config, name in field_options(command):
        field = {f.name: f for f in fields(config)}[name]
        sentinels[dest] = sentinel = object()
        monkeypatch.setattr(field, "default", sentinel)
    args = build_parser().parse_args([command])
    for dest, sentinel in sentinels.items():
        assert getattr(args, dest) is sentinel, dest


def test_help_shows_the_defaults(capsys):
    assert main(["condense", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    cfg = CondenseConfig()
    assert f"images per class (default: {cfg.ipc})" in text
    assert f"(default: {cfg.outer_iterations})" in text and f"(default: {cfg.lr_images})" in text
    assert f"comma-separated model names (default: {','.join(EvalConfig().models)})" in text
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"networks trained per model (default: {EvalConfig().num_nets})" in text


# ---------------------------------------------------------- unknown method: before any work
def no_work(monkeypatch) -> None:
    """Loading data, condensing or training now fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("data loaded or networks trained for bad input")

    monkeypatch.setattr(dcclib.data, "load_dataset", forbidden)
    monkeypatch.setattr(dcclib.condense, "condense", forbidden)
    monkeypatch.setattr(dcclib.evaluate, "evaluate_set", forbidden)
    monkeypatch.setattr(dcclib.evaluate, "random_subset", forbidden)


def test_evaluate_unknown_method_exits_before_any_work(capsys, tmp_path, monkeypatch):
    no_work(monkeypatch)
    err = one_line_error(["evaluate", "--random", "--ipc", "1", "--method", "nosuch"], capsys, tmp_path)
    assert "unknown method 'nosuch'" in err


def test_condense_unknown_method_exits_before_any_work(capsys, tmp_path, monkeypatch):
    no_work(monkeypatch)
    out = tmp_path / "run"
    err = one_line_error(["condense", *TINY, "--method", "nosuch", "--out", str(out)], capsys, tmp_path)
    assert "unknown method 'nosuch'" in err and not out.exists()


def test_a_set_is_evaluated_with_the_dsa_strategy_it_was_condensed_with(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(
        ["condense", *TINY, "--method", "dsa", "--dsa-strategy", "flip", "--out", str(out)], capsys
    )
    assert code == 0, err
    report = tmp_path / "eval.json"
    args = ["evaluate", str(out / "synthetic.safetensors"), "--models", "mlp", "--num-nets", "1"]
    code, _, err = run([*args, "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(report)], capsys)
    assert code == 0, err
    summary = json.loads(report.read_text())
    assert summary["eval_config"]["dsa_strategy"] == "flip"
    assert summary["results"][0]["augment"] == "dsa"


@pytest.mark.parametrize(
    "extra, words",
    [
        (
            ["--method", "dcc", "--outer-iterations", "2", "--gamma-outer", "3"],
            "gamma-outer 3 > outer-iterations",
        ),
        (["--method", "dsac", "--outer-iterations", "2", "--gamma-outer", "250"], "plain DSA"),
        (
            ["--method", "dcc", "--inner-iterations", "2", "--gamma-inner", "3"],
            "gamma-inner 3 > inner-iterations",
        ),
    ],
)
def test_a_warmup_longer_than_its_loop_is_refused_as_the_original_asserts(extra, words, capsys, tmp_path):
    """The original's main asserts gamma_i <= K_i and gamma_o <= K_o; beyond them DCC would be DC."""
    out = tmp_path / "run"
    err = one_line_error(["condense", *TINY, "--out", str(out), *extra], capsys, tmp_path)
    assert words in err and not out.exists()


def test_the_default_gamma_outer_is_the_papers_share_of_the_outer_loop():
    from dcclib.condense import CondenseConfig

    assert CondenseConfig().resolved().gamma_outer == 250  # K_o = 1000, the paper
    assert CondenseConfig(outer_iterations=100).resolved().gamma_outer == 25  # not 250: DCC stays DCC
    assert CondenseConfig(outer_iterations=2).resolved().gamma_outer == 1
    # gamma_i scales as K_i does against the schedule's: 10 of 10 at ipc 1; 10 of 50 at ipc 50
    assert CondenseConfig(ipc=1).resolved().gamma_inner == 10
    assert CondenseConfig(ipc=1, inner_iterations=4).resolved().gamma_inner == 4
    assert CondenseConfig(ipc=50).resolved().gamma_inner == 10
    assert CondenseConfig(ipc=50, inner_iterations=5).resolved().gamma_inner == 1
    # DC / DSA never switch: a long warm-up is harmless there and accepted
    assert CondenseConfig(method="dc", outer_iterations=2, gamma_outer=250).resolved().gamma_outer == 250


def test_the_lab_refuses_a_warmup_longer_than_its_loop():
    from dcclib.errors import UserError
    from dcclib.lab.experiments import Lab

    lab = Lab("99_test", profile="smoke")
    with pytest.raises(UserError, match="gamma-inner"):
        lab.set_config(lab.use("mnist"), "dcc", 1, 0, gamma_inner=11)  # K_i = 10 before the profile's cap


def test_a_saved_sets_metadata_names_no_path_of_the_machine():
    from dataclasses import replace

    from dcclib.condense import CondenseConfig
    from dcclib.runs import synthetic_metadata
    from tests.tiny import tiny_dataset

    data = replace(tiny_dataset(), source="/home/someone/datasets/mnist")
    meta = synthetic_metadata(CondenseConfig(dataset="tiny", ipc=1), data)
    assert meta["data_source"] == "mnist"


def test_condense_says_what_the_run_costs_before_it_starts():
    from dcclib.cli import cost_note
    from dcclib.data import load_dataset

    data = load_dataset(None)
    paper = cost_note(CondenseConfig(ipc=1).resolved(), data, "cpu")
    assert paper.startswith("dcc: this run is about 7.6e+15 FLOP (1000 networks x 10 image updates)")
    assert "at least 28.0 h on a 2-core CPU" in paper and "--outer-iterations 20" in paper
    assert "min on one H100-class GPU (26.8 TFLOP/s, assumed)" in paper
    tiny = CondenseConfig(ipc=1, outer_iterations=2, inner_iterations=2, net_epochs=1, batch_real=8)
    assert cost_note(tiny.resolved(), data, "cpu") == ""  # a run of seconds needs no warning
