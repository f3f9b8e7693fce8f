"""Silent or wrong results, memory bounds, smaller cases (issue: hostile cases): an evaluation
whose training loss is not finite (exit 3), sets far outside the data's range (a warning),
options that were ignored, npz and idx files that declare more than memory holds, metadata
too large to show. CPU only, tiny settings."""

from __future__ import annotations

import json
import os
import resource
import struct

import numpy as np
import pytest
import torch
from test_hostile_outputs import EVAL, mnist_set
from test_reliability import TINY, no_work, one_line_error
from tiny import tiny_dataset

from dcclib import io
from dcclib.cli import EXIT_DIVERGED, main
from dcclib.data import load_dataset
from dcclib.data.idx import read_idx
from dcclib.errors import DivergedError, UserError
from dcclib.evaluate import EvalConfig, evaluate_set


# ------------------------------------------------------------------ evaluation that diverges
def test_evaluating_a_set_of_huge_pixels_exits_3_with_a_warning(tmp_path, capsys):
    s = mnist_set(tmp_path / "set.safetensors", fill=3e38)  # finite, valid, absurd
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(s), *EVAL, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_DIVERGED, err
    warning, error = err.splitlines()
    assert warning.startswith("dcc: warning: the set's pixels range from -3e+38 to 3e+38, far outside")
    assert error.startswith("dcc: error: the evaluation diverged") and "NaN or infinite" in error
    assert "Traceback" not in err and not out.exists()


def test_a_stacked_evaluation_that_diverges_is_an_error_too():
    data = tiny_dataset(per_class=4)
    images = torch.full_like(data.train_images[:6], 3e38)
    cfg = EvalConfig(models=("mlp",), num_nets=2, epochs=1, parallel_nets=2)  # trained together
    with pytest.raises(DivergedError, match="evaluation diverged"):
        evaluate_set(images, data.train_labels[:6], data, "dc", cfg)


def test_a_set_in_the_datas_range_gets_no_warning(tmp_path, capsys):
    s = mnist_set(tmp_path / "set.safetensors")  # randn: within a few data ranges
    assert main(["evaluate", str(s), *EVAL]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_largest_learning_rate_says_the_set_is_far_outside_the_data(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["condense", *TINY, "--model", "mlp", "--lr-images", "1000", "--out", str(run)])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["synthetic"], err
    assert "dcc: warning: the set's pixels range from" in err and "--lr-images 1000.0 may be too high" in err
    images = io.load_synthetic(run / "synthetic.safetensors")[0]
    assert images.abs().max() > 100  # what the warning is about


# ------------------------------------------------------------------ options that were ignored
def test_random_needs_a_dataset_and_a_set_takes_no_ipc(tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)
    err = one_line_error(["evaluate", "--random", "--ipc", "1", *EVAL], capsys)
    assert "--random needs --dataset" in err
    s = mnist_set(tmp_path / "set.safetensors")
    err = one_line_error(["evaluate", str(s), "--ipc", "3", *EVAL], capsys)
    assert "--ipc is for --random only" in err


# ------------------------------------------------------------------ memory bounds
def group_file(path, train_images: np.ndarray) -> None:
    n = len(train_images)
    arrays = {
        "train_images": train_images,
        "train_labels": np.arange(n, dtype=np.int64) % 2,
        "test_images": np.zeros((2, *train_images.shape[1:]), dtype=np.uint8),
        "test_labels": np.array([0, 1]),
        "wnids": np.array(["n01", "n02"]),
        "class_names": np.array(["x", "y"]),
        "mean": np.array([0.4, 0.5, 0.6]),
        "std": np.array([0.2, 0.2, 0.2]),
        "group": np.array("fish"),
        "format_version": np.array(1),
    }
    np.savez_compressed(path, **arrays)


def address_space_left(monkeypatch: pytest.MonkeyPatch, left: int) -> None:
    """`ulimit -v` as if this process could map `left` more bytes."""
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    real = resource.getrlimit
    limit = mapped + left

    def getrlimit(which: int) -> tuple[int, int]:
        return (limit, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS else real(which)

    monkeypatch.setattr(resource, "getrlimit", getrlimit)


def test_an_npz_that_declares_more_than_memory_is_refused_in_one_line(tmp_path, monkeypatch):
    group_file(tmp_path / "imagenet32-fish.npz", np.zeros((2000, 32, 32, 3), dtype=np.uint8))  # 6 MB
    assert (tmp_path / "imagenet32-fish.npz").stat().st_size < 100_000  # deflate: 1000 times smaller
    address_space_left(monkeypatch, 20 * 2**20)  # 6 MB as uint8 and as float32 is 30 MB
    with pytest.raises(UserError, match=r"declares 0.01 GB of arrays .* more than the 0.0\d GB") as info:
        load_dataset("imagenet32-fish", tmp_path, device="cpu")
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    group_file(tmp_path / "imagenet32-lizard.npz", np.zeros((20, 32, 32, 3), dtype=np.uint8))
    assert load_dataset("imagenet32-lizard", tmp_path, device="cpu").train_images.shape == (20, 3, 32, 32)


def test_an_idx_file_declaring_255_dimensions_is_a_short_line(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 255]) + struct.pack(">255I", *[7] * 255))
    with pytest.raises(UserError, match="declares 255 dimensions") as info:
        read_idx(path)
    assert len(str(info.value)) < 300


def test_a_gzipped_idx_file_that_declares_more_than_memory_is_refused(tmp_path, monkeypatch):
    import gzip

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 8000, 28, 28) + bytes(8000 * 28 * 28))
    address_space_left(monkeypatch, 10 * 2**20)
    with pytest.raises(UserError, match=r"more than the 0.0\d GB this process can still allocate"):
        read_idx(path)


# ------------------------------------------------------------------ metadata too large to show
def test_info_refuses_metadata_larger_than_dcclib_writes(tmp_path, capsys):
    from test_io_validation import FULL, good_tensors, write_raw

    path = write_raw(tmp_path / "set.safetensors", good_tensors(), {**FULL, "notes": "x" * (2 << 20)})
    err = one_line_error(["info", str(path)], capsys)
    assert "characters of metadata" in err and len(err) < 400
    with pytest.raises(UserError, match="metadata of .* would be"):
        io.save_synthetic(
            tmp_path / "big.safetensors", *good_tensors().values(), {**FULL, "n": "x" * (2 << 20)}
        )
    assert not (tmp_path / "big.safetensors").exists()
