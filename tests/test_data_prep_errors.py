"""data_prep on bad input: one line on stderr, exit code 2, and the output folder untouched."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep import build as build_mod
from data_prep.cli import main

try:
    from test_data_prep import make_batches, sha256, write_batches
except ImportError:  # tests collected as a package
    from tests.test_data_prep import make_batches, sha256, write_batches


@pytest.fixture(scope="module")
def batches() -> list:
    return make_batches(rows=8, groups=("automobile", "truck"), seed=1)


@pytest.fixture
def src(tmp_path: Path, batches: list) -> Path:
    """A fresh, writable pickle-form download per test."""
    return write_batches(tmp_path / "src", batches, "pickle")


@pytest.fixture
def npz_src(tmp_path: Path, batches: list) -> Path:
    return write_batches(tmp_path / "npz", batches, "npz")


@pytest.fixture
def built(tmp_path: Path, batches: list) -> Path:
    """An output folder that already holds a good build (which a failure must not touch)."""
    good = write_batches(tmp_path / "good", batches, "pickle")
    out = tmp_path / "out"
    assert main(["--src", str(good), "--out", str(out), "--groups", "automobile", "--no-progress"]) == 0
    return out


def snapshot(folder: Path) -> dict[str, str]:
    """Every file in a folder (hidden temporaries included) with its sha256."""
    if not folder.exists():
        return {}
    return {p.name: sha256(p) for p in sorted(folder.iterdir())}


def fails(capsys: pytest.CaptureFixture, out: Path, *args: str | Path, match: str) -> str:
    """Run the CLI, expect exit code 2 with one ``error:`` line, and ``out`` unchanged."""
    before = snapshot(out)
    capsys.readouterr()
    rc = main([*(str(a) for a in args), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err and match in captured.err, captured.err
    assert snapshot(out) == before, "the output folder changed"
    return captured.err


def test_missing_file(capsys, src, built) -> None:
    (src / "train_data_batch_7").unlink()
    fails(capsys, built, "--src", src, match="missing input file train_data_batch_7")


def test_missing_val_file_in_a_fresh_folder(capsys, tmp_path, npz_src) -> None:
    (npz_src / "Imagenet32_val_npz" / "val_data.npz").unlink()
    fails(capsys, tmp_path / "new", "--src", npz_src, match="val_data")
    assert not (tmp_path / "new").exists()


def test_src_not_a_folder(capsys, tmp_path, built) -> None:
    fails(capsys, built, "--src", tmp_path / "nowhere", match="is not a directory")


def test_truncated_pickle(capsys, src, built) -> None:
    path = src / "train_data_batch_5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fails(capsys, built, "--src", src, match="train_data_batch_5")


def test_truncated_npz(capsys, npz_src, built) -> None:
    path = npz_src / "Imagenet32_train_npz" / "train_data_batch_9.npz"
    path.write_bytes(path.read_bytes()[:-200])
    fails(capsys, built, "--src", npz_src, match="train_data_batch_9.npz")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"data": np.zeros((4, 3000), np.uint8)}, "3*S*S"),
        ({"data": np.zeros((4, 3072), np.float32)}, "uint8"),
        ({"data": np.zeros(3072, np.uint8)}, "N x 3*S*S"),
        ({"labels": [1, 2, 3]}, "labels"),
        ({"labels": [0, 1, 2, 3]}, "1..1000"),
        ({"labels": [1, 2, 3, 1001]}, "1..1000"),
        ({"data": None}, "'data'"),
        ({"labels": [[1], [2], [3], [4]]}, "flat list of integers"),  # nested: no 2-D array is built
        ({"labels": [1.0, 2.0, 3.0, 4.0]}, "flat list of integers"),
        ({"labels": np.array([[1, 2], [3, 4]])}, "flat list of integers"),
        ({"labels": "1234"}, "flat list of integers"),
    ],
)
def test_wrong_content(capsys, src, built, bad, match) -> None:
    batch = {"data": np.zeros((4, 3072), np.uint8), "labels": [1, 2, 3, 4], **bad}
    with open(src / "train_data_batch_3", "wb") as fh:
        pickle.dump(batch, fh)
    err = fails(capsys, built, "--src", src, match=match)
    assert "train_data_batch_3" in err


def test_wrong_keys_in_npz(capsys, npz_src, built) -> None:
    np.savez(npz_src / "Imagenet32_train_npz" / "train_data_batch_2.npz", x=np.zeros(3))
    fails(capsys, built, "--src", npz_src, match="'data' and 'labels'")


def test_object_array_in_npz_is_refused(capsys, npz_src, built) -> None:
    np.savez(
        npz_src / "Imagenet32_train_npz" / "train_data_batch_2.npz",
        data=np.array([{"a": 1}], dtype=object),
        labels=np.array([1]),
    )
    fails(capsys, built, "--src", npz_src, match="train_data_batch_2.npz")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_code_in_a_pickle_is_not_run(capsys, tmp_path, src, built, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open(src / "train_data_batch_1", "wb") as fh:
        pickle.dump({"data": _Evil(), "labels": [1]}, fh)
    fails(capsys, built, "--src", src, match="train_data_batch_1")
    assert not (tmp_path / "pwned").exists()


def test_a_pickle_declaring_4_tib_is_one_line(capsys, src, built) -> None:
    """Issue 11, item 8: a BINBYTES8 header declaring 4 TiB is not allocated."""
    (src / "train_data_batch_6").write_bytes(b"\x80\x04\x8e" + (4 << 40).to_bytes(8, "little") + b"abc.")
    fails(capsys, built, "--src", src, match="train_data_batch_6 is not a readable dataset batch file")


def test_links_that_loop_in_src_are_walked_once(capsys, tmp_path, src) -> None:
    (src / "sub").mkdir()
    (src / "sub" / "up").symlink_to(src)
    (src / "sub" / "again").symlink_to(src / "sub")
    out = tmp_path / "looped"
    assert main(["--src", str(src), "--out", str(out), "--groups", "automobile", "--no-progress"]) == 0


def test_mixed_image_sizes(capsys, src, built) -> None:
    with open(src / "train_data_batch_4", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3 * 64 * 64), np.uint8), "labels": [1, 2]}, fh)
    fails(capsys, built, "--src", src, match="64x64")


def test_two_downloads_side_by_side(capsys, tmp_path, src, built) -> None:
    shutil.copytree(src, src / "copy")
    fails(capsys, built, "--src", src, match="more than once")


def test_both_forms_side_by_side_use_npz(capsys, tmp_path, src, npz_src) -> None:
    shutil.copytree(npz_src, src / "npz")
    (src / "train_data_batch_2").write_bytes(b"not read: the .npz twin is used")
    assert (
        main(
            ["--src", str(src), "--out", str(tmp_path / "o"), "--groups", "automobile,truck", "--no-progress"]
        )
        == 0
    )


@pytest.mark.parametrize(
    "args, match",
    [
        (["--groups", "dinosaur"], "unknown group 'dinosaur'"),
        (["--groups", ","], "--groups is empty"),
        (["--groups", "none"], "nothing to build"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_arguments(capsys, src, built, args, match) -> None:
    fails(capsys, built, "--src", src, *args, match=match)


def test_missing_src_argument(capsys, built) -> None:
    fails(capsys, built, match="--src and --out are required")


def test_unknown_synset(capsys, src, built) -> None:
    # Without WordNet this fails on the missing corpus, with it on the name: both are one line.
    fails(capsys, built, "--src", src, "--hypernym", "nosuchthing.n.01", match="")


def test_group_without_images(capsys, src, built) -> None:
    fails(
        capsys,
        built,
        "--src",
        src,
        "--groups",
        "automobile,lizard",
        match="no training images of imagenet32-lizard",
    )


def test_unreadable_manifest(capsys, src, built) -> None:
    (built / "manifest.json").write_text("{not json")
    fails(capsys, built, "--src", src, match="manifest")


def test_failure_while_writing_leaves_nothing(capsys, monkeypatch, src, built) -> None:
    real, calls = build_mod.savez_deterministic, []

    def flaky(handle, arrays):
        calls.append(1)
        if len(calls) == 2:  # the first group is written, the second breaks half-way
            handle.write(b"half an archive")
            raise OSError(28, "No space left on device")
        real(handle, arrays)

    monkeypatch.setattr(build_mod, "savez_deterministic", flaky)
    fails(capsys, built, "--src", src, "--groups", "truck,automobile", match="No space left")
    assert len(calls) == 2


def test_unwritable_output(capsys, tmp_path, src) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fails(capsys, blocker / "out", "--src", src, match="is not a folder")
