"""Saved sets and checkpoints are validated whole when read (issue 11, items 5 and 6); files are
written with ordinary permissions and their temporaries can be cleaned (item 10)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from dcclib import io
from dcclib.cli import main
from dcclib.errors import UserError

META = {"class_names": ["a", "b"], "mean": [0.5], "std": [0.25], "dataset": "embedded-mnist"}
FULL = {**META, "num_classes": 2, "shape": [2, 1, 4, 4], "format_version": 1}


def write_raw(path: Path, tensors: dict[str, torch.Tensor], meta: Any) -> Path:
    """A safetensors file with exactly these tensors and metadata (no checks on the way)."""
    header = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(tensors, str(path), metadata={"dcc": header})
    return path


def good_tensors() -> dict[str, torch.Tensor]:
    return {"images": torch.randn(2, 1, 4, 4), "labels": torch.tensor([0, 1])}


def one_line(fn: Any, *args: Any) -> str:
    with pytest.raises(UserError) as info:
        fn(*args)
    msg = str(info.value)
    assert msg and "\n" not in msg
    return msg


def cli_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """Run `dcc`, expect exit code 2 and one line on stderr, no traceback; the line."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ item 5: saved sets
def meta_with(**changes: Any) -> dict:
    meta = dict(FULL)
    for key, value in changes.items():
        if value is DROP:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


DROP = object()
BAD_METADATA = {
    "a list, not an object": ("[1, 2]", "expected a JSON object"),
    "a string, not an object": ('"set"', "expected a JSON object"),
    "null metadata": ("null", "expected a JSON object"),
    "not JSON": ("{not json", "corrupt metadata"),
    "a 5000-digit number": ('{"format_version": ' + "1" * 5000 + "}", "corrupt metadata"),
    "format_version true": (meta_with(format_version=True), "format version"),
    "mean null": (meta_with(mean=None), "mean is null"),
    "mean a string": (meta_with(mean="0.5"), "field mean is str"),
    "mean NaN": (meta_with(mean=[float("nan")]), "field mean"),
    "std zero": (meta_with(std=[0.0]), "field std"),
    "std of strings": (meta_with(std=["1"]), "field std"),
    "shape null": (meta_with(shape=None), "shape is null"),
    "shape a string": (meta_with(shape="2x1x4x4"), "field shape"),
    "num_classes a string": (meta_with(num_classes="2"), "num_classes is str"),
    "num_classes true": (meta_with(num_classes=True), "num_classes is bool"),
    "num_classes null": (meta_with(num_classes=None), "num_classes is null"),
    "dataset null": (meta_with(dataset=None), "dataset is null"),
    "dataset a number": (meta_with(dataset=5), "dataset is int"),
    "class_names a string": (meta_with(class_names="ab"), "class_names is str"),
    "class_names of numbers": (meta_with(class_names=[1, 2]), "class_names"),
    "method a number": (meta_with(method=3), "method is int"),
    "ipc a string": (meta_with(ipc="1"), "ipc is str"),
    "config a list": (meta_with(config=[]), "config is list"),
    "dataset_path null": (meta_with(dataset_path=None), "dataset_path is null"),
    "fields missing": (meta_with(mean=DROP, dataset=DROP), "lacks dataset, mean"),
    "num_classes against names": (meta_with(num_classes=3), "2 class names for num_classes 3"),
    "shape against images": (meta_with(shape=[2, 1, 4, 5]), "metadata says [2, 1, 4, 5]"),
    "mean per channel": (meta_with(mean=[0.1, 0.2]), "2 means and 1 stds for 1-channel"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_metadata_is_one_line_in_every_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    meta, expected = BAD_METADATA[case]
    path = write_raw(tmp_path / "set.safetensors", good_tensors(), meta)
    assert expected in one_line(io.load_synthetic, path)
    assert expected in cli_error(capsys, "info", str(path))
    assert expected in cli_error(capsys, "evaluate", str(path), "--num-nets", "1", "--device", "cpu")


BAD_TENSORS = {
    "images float16": ({"images": torch.randn(2, 1, 4, 4).half()}, "images are float16, expected float32"),
    "images float64": ({"images": torch.randn(2, 1, 4, 4).double()}, "images are float64"),
    "images uint8": ({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)}, "images are uint8"),
    "labels float": ({"labels": torch.tensor([0.0, 1.0])}, "labels are float32, expected int64"),
    "labels int32": ({"labels": torch.tensor([0, 1], dtype=torch.int32)}, "labels are int32"),
    "empty set": ({"images": torch.zeros(0, 1, 4, 4), "labels": torch.zeros(0, dtype=torch.long)}, "empty"),
    "zero-size images": ({"images": torch.zeros(2, 1, 0, 4)}, "no zero size"),
    "images 3-D": ({"images": torch.zeros(2, 4, 4)}, "expected [N, C, H, W]"),
    "NaN image": ({"images": torch.full((2, 1, 4, 4), float("nan"))}, "NaN or infinity"),
    "infinite image": ({"images": torch.full((2, 1, 4, 4), float("inf"))}, "NaN or infinity"),
    "labels too large": ({"labels": torch.tensor([0, 2])}, "labels 0..2 outside 0..1"),
    "negative labels": ({"labels": torch.tensor([-1, 0])}, "outside 0..1"),
    "a label short": ({"labels": torch.tensor([0])}, "expected [2] (one per image)"),
    "labels 2-D": ({"labels": torch.tensor([[0, 1]])}, "labels have shape [1, 2]"),
    "an extra tensor": ({"extra": torch.zeros(1)}, "expected images and labels"),
    "no labels": ({"labels": None}, "expected images and labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_bad_tensors_are_one_line_in_every_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    changes, expected = BAD_TENSORS[case]
    tensors = {k: v for k, v in {**good_tensors(), **changes}.items() if v is not None}
    path = write_raw(tmp_path / "set.safetensors", tensors, FULL)
    assert expected in one_line(io.load_synthetic, path)
    assert expected in cli_error(capsys, "info", str(path))
    assert expected in cli_error(capsys, "evaluate", str(path), "--num-nets", "1", "--device", "cpu")


def test_every_problem_is_named_in_the_one_line(tmp_path: Path) -> None:
    tensors = {"images": torch.randn(2, 1, 4, 4).double(), "labels": torch.tensor([0.0, 1.0])}
    path = write_raw(tmp_path / "set.safetensors", tensors, meta_with(mean=None, dataset=3))
    msg = one_line(io.load_synthetic, path)
    for part in ("images are float64", "labels are float32", "mean is null", "dataset is int"):
        assert part in msg


def test_a_good_set_round_trips_and_info_shows_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "set.safetensors"
    images, labels = torch.randn(2, 1, 4, 4), torch.tensor([1, 0])
    io.save_synthetic(path, images, labels, {**META, "method": "dcc", "ipc": 1, "config": {"x": 1}})
    x, y, meta = io.load_synthetic(path)
    assert torch.equal(x, images) and torch.equal(y, labels)
    assert meta["num_classes"] == 2 and meta["shape"] == [2, 1, 4, 4] and meta["method"] == "dcc"
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == [2, 1, 4, 4]


@pytest.mark.parametrize(
    "images, meta, expected",
    [
        (torch.full((2, 1, 4, 4), float("nan")), META, "NaN or infinity"),
        (torch.zeros(0, 1, 4, 4), META, "empty"),
        (torch.zeros(2, 1, 4, 4), {**META, "mean": [float("inf")]}, "field mean"),
        (torch.zeros(2, 1, 4, 4), {k: v for k, v in META.items() if k != "dataset"}, "lacks dataset"),
    ],
)
def test_what_would_not_load_is_not_saved(
    tmp_path: Path, images: torch.Tensor, meta: dict, expected: str
) -> None:
    path = tmp_path / "set.safetensors"
    labels = torch.zeros(len(images), dtype=torch.long)
    assert expected in one_line(io.save_synthetic, path, images, labels, meta)
    assert not path.exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------ item 6: checkpoints
def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], **meta: Any) -> Path:
    full = {"kind": "checkpoint", "next_outer": 2, "fingerprint": {"ipc": 1}, "format_version": 1, **meta}
    return write_raw(path, tensors, {k: v for k, v in full.items() if v is not DROP})


IMAGES = torch.randn(2, 1, 4, 4)
BAD_CHECKPOINTS = {
    "NaN images": ({"images": torch.full((2, 1, 4, 4), float("nan"))}, {}, "images contain NaN"),
    "infinite momentum": (
        {"images": IMAGES, "momentum": torch.full((2, 1, 4, 4), float("inf"))},
        {},
        "momentum contain NaN",
    ),
    "float64 images": ({"images": IMAGES.double()}, {}, "images are float64, expected float32"),
    "int images": ({"images": IMAGES.long()}, {}, "images are int64"),
    "momentum of another shape": (
        {"images": IMAGES, "momentum": torch.zeros(1, 1, 4, 4)},
        {},
        "momentum have",
    ),
    "images 3-D": ({"images": torch.zeros(1, 28, 28)}, {}, "expected [N, C, H, W]"),
    "an extra tensor": ({"images": IMAGES, "labels": torch.zeros(2)}, {}, "unexpected tensors ['labels']"),
    "next_outer negative": ({"images": IMAGES}, {"next_outer": -3}, "next_outer is int -3"),
    "next_outer a string": ({"images": IMAGES}, {"next_outer": "3"}, "next_outer is str"),
    "next_outer true": ({"images": IMAGES}, {"next_outer": True}, "next_outer is bool"),
    "next_outer missing": ({"images": IMAGES}, {"next_outer": DROP}, "lacks next_outer"),
    "fingerprint null": ({"images": IMAGES}, {"fingerprint": None}, "fingerprint is null"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_one_line(tmp_path: Path, case: str) -> None:
    tensors, meta, expected = BAD_CHECKPOINTS[case]
    path = write_checkpoint(tmp_path / "checkpoint.safetensors", tensors, **meta)
    assert expected in one_line(io.load_checkpoint, path)


def test_a_good_checkpoint_and_a_set_that_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.safetensors"
    io.save_checkpoint(path, {"images": IMAGES, "momentum": IMAGES / 2}, {"next_outer": 1, "fingerprint": {}})
    tensors, meta = io.load_checkpoint(path)
    assert torch.equal(tensors["images"], IMAGES) and meta["next_outer"] == 1
    io.save_synthetic(tmp_path / "set.safetensors", IMAGES, torch.tensor([0, 1]), META)
    assert "not a dcclib checkpoint" in one_line(io.load_checkpoint, tmp_path / "set.safetensors")


# ------------------------------------------------------------------ item 10: permissions, leftovers
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_have_ordinary_permissions(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
        io.save_synthetic(tmp_path / "set.safetensors", IMAGES, torch.tensor([0, 1]), META)
        (tmp_path / "plain.txt").write_text("x")  # what an ordinary file gets
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.json", "set.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_temporary_files_are_named_and_cleaned(tmp_path: Path) -> None:
    with io.atomic_path(tmp_path / "checkpoint.safetensors") as tmp:
        tmp.write_text("x")
        assert tmp.parent == tmp_path and tmp.name.startswith(".checkpoint.safetensors.tmp-")
        assert io.is_temp_name(tmp.name)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]
    stale = [
        ".checkpoint.safetensors.tmp-ab12_xyz",
        ".config.json.k3j4h5g6.tmp",
        ".metrics.jsonl.tmp-00000000",
    ]
    kept = ["config.json", ".hidden", "x.tmp", ".x.tmp-short", ".lock", "notes.tmp-abcdefgh"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".dir.tmp-abcdefgh").mkdir()  # only files are removed
    removed = io.clean_stale_temp(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*kept, ".dir.tmp-abcdefgh", "checkpoint.safetensors"]
    )
    assert io.clean_stale_temp(tmp_path / "missing") == []


def test_a_kill_during_a_write_leaves_a_temporary_that_is_cleaned(tmp_path: Path) -> None:
    """A process killed inside a write leaves the old file and a `.name.tmp-*` file; the old
    file is whole and clean_stale_temp removes the leftover."""
    target = tmp_path / "checkpoint.safetensors"
    io.write_text(target, "old")
    code = (
        "import os, sys; from dcclib import io\n"
        f"with io.atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 9
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and io.is_temp_name(leftovers[0].name)
    assert target.read_text() == "old"
    assert io.clean_stale_temp(tmp_path) == leftovers and list(tmp_path.iterdir()) == [target]
