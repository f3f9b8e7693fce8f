"""data_prep on small fake ImageNet32/64 files written in both official forms (no WordNet).

No real ImageNet32 is available here, so these tests are the proof that the build is right:
every expected array is recomputed directly from the fake files, row by row.
"""

from __future__ import annotations

import builtins
import gc
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

import data_prep
from data_prep import build as build_mod
from data_prep import sources
from data_prep.cli import main
from data_prep.groups import GROUPS, get_group, parse_groups

REPO = Path(__file__).resolve().parents[1]
ORDER = (Path(data_prep.__file__).parent / "imagenet32_label_order_wnids.txt").read_text().split()
KEYS = {
    "train_images",
    "train_labels",
    "test_images",
    "test_labels",
    "wnids",
    "class_names",
    "mean",
    "std",
    "group",
    "format_version",
}


def label_of(wnid: str) -> int:
    """1-based label of a wnid in the downsampled ImageNet files."""
    return ORDER.index(wnid) + 1


GROUP_LABELS = {g.name: [label_of(w) for w in g.wnids] for g in GROUPS}
ALL_GROUP_LABELS = sorted({lab for labs in GROUP_LABELS.values() for lab in labs})
OTHER_LABELS = [lab for lab in (1, 2, 3, 100, 500, 777, 999, 1000) if lab not in ALL_GROUP_LABELS]


def make_batches(
    size: int = 32, rows: int = 30, groups: tuple[str, ...] | None = None, seed: int = 0
) -> list[tuple[np.ndarray, list[int]]]:
    """Ten training batches and a validation batch: (data N x 3*S*S uint8, labels 1..1000)."""
    rng = np.random.default_rng(seed)
    groups = groups or tuple(g.name for g in GROUPS)
    wanted = [lab for g in groups for lab in GROUP_LABELS[g]]
    pool = wanted + OTHER_LABELS + [GROUP_LABELS["terrier"][0]]
    batches = []
    for k in range(11):
        labels = list(rng.choice(pool, size=rows))
        if k in (0, 10):  # every wanted class in train and in val
            labels = wanted + labels
        data = rng.integers(0, 256, size=(len(labels), 3 * size * size), dtype=np.uint8)
        batches.append((data, [int(v) for v in labels]))
    return batches


def write_batches(root: Path, batches: list, form: str) -> Path:
    """Write the batches in an official layout: ``pickle`` or ``npz``; returns ``root``."""
    for k, (data, labels) in enumerate(batches):
        is_val = k == 10
        stem = "val_data" if is_val else f"train_data_batch_{k + 1}"
        mean = data.mean(axis=0)
        if form == "pickle":
            root.mkdir(parents=True, exist_ok=True)
            with open(root / stem, "wb") as fh:
                pickle.dump({"data": data, "labels": labels, "mean": mean}, fh, protocol=2)
        else:
            sub = root / ("Imagenet32_val_npz" if is_val else "Imagenet32_train_npz")
            sub.mkdir(parents=True, exist_ok=True)
            np.savez(sub / f"{stem}.npz", data=data, labels=np.array(labels), mean=mean)
    return root


def expected(batches: list, group: str, size: int) -> dict[str, np.ndarray]:
    """The output arrays computed directly, row by row, from the fake batches."""
    labels = GROUP_LABELS[group]
    out: dict[str, list] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    for k, (data, labs) in enumerate(batches):
        split = "test" if k == 10 else "train"
        for row, lab in zip(data, labs, strict=True):
            if lab in labels:
                out[f"{split}_images"].append(row.reshape(3, size, size).transpose(1, 2, 0))
                out[f"{split}_labels"].append(labels.index(lab))
    arrays = {k: np.array(v) for k, v in out.items()}
    pixels = arrays["train_images"].astype(np.float64) / 255.0
    arrays["mean"] = pixels.mean(axis=(0, 1, 2))
    arrays["std"] = pixels.std(axis=(0, 1, 2))
    return arrays


def run_cli(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    rc = main([str(a) for a in (*args, "--no-progress")])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batches() -> list:
    return make_batches()


@pytest.fixture(scope="module")
def pickle_src(tmp_path_factory: pytest.TempPathFactory, batches: list) -> Path:
    return write_batches(tmp_path_factory.mktemp("pkl") / "imagenet32", batches, "pickle")


@pytest.fixture(scope="module")
def npz_src(tmp_path_factory: pytest.TempPathFactory, batches: list) -> Path:
    return write_batches(tmp_path_factory.mktemp("npz") / "downloads", batches, "npz")


# ----------------------------------------------------------------------------- groups as data


def test_groups_are_the_papers_lists() -> None:
    sizes = {g.name: len(g.wnids) for g in GROUPS}
    assert sizes == {"automobile": 9, "truck": 9, "lizard": 11, "fish": 16, "terrier": 26, "insect": 27}
    every = [w for g in GROUPS for w in g.wnids]
    assert len(every) == len(set(every)) == 98  # disjoint, no repeats
    assert all(w in ORDER for w in every)
    for g in GROUPS:  # new labels 0..C-1 follow the label-order file
        assert [label_of(w) for w in g.wnids] == sorted(label_of(w) for w in g.wnids)
    auto = get_group("Automobile")
    assert auto.wnids[0] == "n02701002" and auto.wnids[-1] == "n04285008"
    assert get_group("truck").wnids[0] == "n03770679"  # minivan is label 0 of Truck
    assert [g.name for g in parse_groups("all")] == [g.name for g in GROUPS]
    assert [g.name for g in parse_groups("Truck, automobile,truck")] == ["truck", "automobile"]


def test_project_carries_the_label_files() -> None:
    assert len(ORDER) == 1000 and len(set(ORDER)) == 1000
    shared = REPO.parent / "shared" / "data" / "imagenet-meta"
    if not shared.is_dir():
        pytest.skip("../shared/data/imagenet-meta absent: nothing to compare against")
    for name in ("imagenet32_label_order_wnids.txt", "imagenet1k_wnid_lemmas.tsv"):
        assert (Path(data_prep.__file__).parent / name).read_bytes() == (shared / name).read_bytes()


# ----------------------------------------------------------------------------- building


def test_build_matches_direct_computation(capsys, tmp_path, batches, pickle_src) -> None:
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--src", pickle_src, "--out", out, "--groups", "automobile,truck")
    assert rc == 0, err
    assert "imagenet32-automobile.npz: 9 classes" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "imagenet32-automobile.npz",
        "imagenet32-truck.npz",
        "manifest.json",
    ]
    for group in ("automobile", "truck"):
        got, want = load(out / f"imagenet32-{group}.npz"), expected(batches, group, 32)
        assert set(got) == KEYS
        for key in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert got["train_images"].dtype == np.uint8 and got["train_images"].shape[1:] == (32, 32, 3)
        assert got["train_labels"].dtype == np.int64 and got["test_labels"].dtype == np.int64
        assert got["mean"].dtype == np.float64 and got["mean"].shape == (3,)
        np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-12)
        np.testing.assert_allclose(got["std"], want["std"], rtol=1e-12)
        g = get_group(group)
        assert got["wnids"].tolist() == list(g.wnids) and got["wnids"].dtype.kind == "U"
        assert got["class_names"].dtype.kind == "U" and len(got["class_names"]) == len(g.wnids)
        assert got["group"].shape == () and str(got["group"]) == group
        assert got["format_version"].shape == () and int(got["format_version"]) == 1
        assert set(got["train_labels"].tolist()) == set(range(len(g.wnids)))
    names = load(out / "imagenet32-automobile.npz")["class_names"].tolist()
    assert names[:3] == ["ambulance", "beach wagon", "cab"] and names[6] == "Model T"


def test_pixel_layout_is_planes_to_hwc(capsys, tmp_path) -> None:
    size, lab = 32, GROUP_LABELS["lizard"][4]
    index = np.arange(size * size)
    planes = [(index * 7 + c * 50) % 256 for c in range(3)]  # R, G, B planes, row-major
    row = np.concatenate(planes).astype(np.uint8)
    batches = [(np.stack([row, 255 - row]), [lab, OTHER_LABELS[0]]) for _ in range(11)]
    src = write_batches(tmp_path / "src", batches, "pickle")
    assert run_cli(capsys, "--src", src, "--out", tmp_path / "o", "--groups", "lizard")[0] == 0
    got = load(tmp_path / "o" / "imagenet32-lizard.npz")
    assert got["train_images"].shape == (10, 32, 32, 3) and got["test_images"].shape[0] == 1
    assert got["train_labels"].tolist() == [4] * 10
    img = got["train_images"][0]
    for y, x, c in [(0, 0, 0), (0, 1, 1), (1, 0, 2), (31, 30, 0), (17, 5, 1)]:
        assert img[y, x, c] == planes[c][y * size + x]


def test_both_forms_give_identical_files(capsys, tmp_path, pickle_src, npz_src) -> None:
    for name, src in (("a", pickle_src), ("b", npz_src)):
        assert run_cli(capsys, "--src", src, "--out", tmp_path / name, "--groups", "all")[0] == 0
    for group in GROUPS:
        fa = tmp_path / "a" / f"imagenet32-{group.name}.npz"
        fb = tmp_path / "b" / f"imagenet32-{group.name}.npz"
        a, b = load(fa), load(fb)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{group.name}/{key}")
        assert sha256(fa) == sha256(fb)  # deterministic archives: same arrays, same bytes


def test_manifest_counts_checksums_and_merge(capsys, tmp_path, batches, pickle_src) -> None:
    out = tmp_path / "out"
    assert run_cli(capsys, "--src", pickle_src, "--out", out, "--groups", "automobile")[0] == 0
    assert run_cli(capsys, "--src", pickle_src, "--out", out, "--groups", "truck")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert sorted(manifest["datasets"]) == ["imagenet32-automobile", "imagenet32-truck"]
    for group in ("automobile", "truck"):
        entry = manifest["datasets"][f"imagenet32-{group}"]
        path = out / entry["file"]
        assert entry["file"] == f"imagenet32-{group}.npz"
        assert entry["sha256"] == sha256(path)
        assert entry["image_size"] == 32 and entry["group"] == group
        assert entry["wnids"] == list(get_group(group).wnids)
        want = expected(batches, group, 32)
        n = len(entry["wnids"])
        assert entry["train_counts"] == np.bincount(want["train_labels"], minlength=n).tolist()
        assert entry["test_counts"] == np.bincount(want["test_labels"], minlength=n).tolist()
        assert entry["num_train"] == len(want["train_labels"])
        assert len(entry["class_names"]) == n
        files = {f["path"]: f["bytes"] for f in entry["source_files"]}
        assert list(files) == [f"train_data_batch_{k}" for k in range(1, 11)] + ["val_data"]
        assert all(files[p] == (pickle_src / p).stat().st_size for p in files)
    before = sha256(out / "imagenet32-truck.npz")  # rebuilding one keeps the other's entry
    assert run_cli(capsys, "--src", pickle_src, "--out", out, "--groups", "automobile")[0] == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["datasets"]["imagenet32-truck"]["sha256"] == before
    assert again == manifest  # same input, same bytes, same checksums


def test_imagenet64_files(capsys, tmp_path) -> None:
    batches = make_batches(size=64, rows=4, groups=("fish",), seed=3)
    src = write_batches(tmp_path / "in64", batches, "npz")
    rc, stdout, err = run_cli(capsys, "--src", src, "--out", tmp_path / "o", "--groups", "fish")
    assert rc == 0, err
    got = load(tmp_path / "o" / "imagenet64-fish.npz")
    want = expected(batches, "fish", 64)
    assert got["train_images"].shape[1:] == (64, 64, 3)
    np.testing.assert_array_equal(got["train_images"], want["train_images"])
    np.testing.assert_array_equal(got["test_labels"], want["test_labels"])
    np.testing.assert_allclose(got["std"], want["std"], rtol=1e-12)
    entry = json.loads((tmp_path / "o" / "manifest.json").read_text())["datasets"]
    assert entry["imagenet64-fish"]["image_size"] == 64


@pytest.mark.parametrize("form", ["pickle", "npz"])
def test_each_input_file_is_opened_once_and_released(
    form, monkeypatch, tmp_path, batches, pickle_src, npz_src
) -> None:
    src = pickle_src if form == "pickle" else npz_src
    inputs = {p.resolve() for p in sources.find_sources(src).all}
    opened: list[Path] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and Path(file).resolve() in inputs:
            opened.append(Path(file).resolve())
        return real_open(file, *args, **kwargs)

    read: list[Path] = []
    held: list[weakref.ref] = []
    real_read = sources.read_batch

    def tracking_read(path):
        gc.collect()
        assert all(ref() is None for ref in held), "a previous batch is still in memory"
        data, labels = real_read(path)
        read.append(Path(path).resolve())
        held.append(weakref.ref(data))
        return data, labels

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(sources, "read_batch", tracking_read)
    build_mod.build(
        src,
        tmp_path / "out",
        [build_mod.Subset("automobile", get_group("automobile").wnids, "paper group")],
        progress=True,
    )
    order = [p.resolve() for p in sources.find_sources(src).all]
    assert read == order  # train 1..10, then val, each once
    assert sorted(opened) == sorted(order) and len(opened) == 11


def test_core_build_needs_no_nltk(tmp_path, pickle_src) -> None:
    code = (
        "import sys; sys.modules['nltk'] = None; from data_prep.cli import main; "
        f"sys.exit(main(['--src', {str(pickle_src)!r}, '--out', {str(tmp_path)!r}, "
        "'--groups', 'all']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("imagenet32-*.npz"))) == 6


def test_python_dash_m_end_to_end(tmp_path, pickle_src) -> None:
    cmd = [sys.executable, "-m", "data_prep", "--src", str(pickle_src), "--out", str(tmp_path)]
    ok = subprocess.run([*cmd, "--groups", "insect"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "imagenet32-insect.npz").is_file()
    bad = subprocess.run([*cmd, "--groups", "dinosaur"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: unknown group")


def test_dcclib_loads_the_output(capsys, tmp_path, batches, pickle_src) -> None:
    data = pytest.importorskip("dcclib.data")
    assert run_cli(capsys, "--src", pickle_src, "--out", tmp_path, "--groups", "terrier")[0] == 0
    ds = data.load_dataset("imagenet32-terrier", data_root=tmp_path)
    want = expected(batches, "terrier", 32)
    assert tuple(ds.train_images.shape) == (len(want["train_labels"]), 3, 32, 32)
    assert ds.train_labels.tolist() == want["train_labels"].tolist()
    assert ds.class_names[:2] == ["Australian terrier", "soft-coated wheaten terrier"]
    np.testing.assert_allclose(ds.mean, want["mean"], rtol=1e-12)
