"""Crafted and fuzzed files for every reader of untrusted files (issue 11, item 8 and Tests).

Each reader gets mutated copies of a valid file (bit flips, overwritten bytes, length fields set
to extreme values, insertions, deletions, truncations) and structurally random files built with
hypothesis, and must either read the file or raise UserError with a one-line message: never
another exception, a hang or a large allocation. Each call runs `bounded`: the address space is
limited to what the process uses plus BUDGET (RLIMIT_AS, on Linux), so an allocation a file
declares but does not hold fails as MemoryError, and a SIGALRM after SECONDS turns a hang into
an error. Examples are derandomized (the same cases on every run); `CASES` counts them.

Readers: the saved-set and checkpoint loaders (dcclib.io), the image-folder reader (folders
and tarballs, and its cache), the idx, CIFAR and SVHN readers, dcclib's ImageNet32 group files,
and data_prep's ImageNet32 batch reader (pickle and npz).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import pickle
import shutil
import signal
import struct
import sys
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from data_prep import sources  # noqa: E402
from dcclib import io as dio  # noqa: E402
from dcclib.data import load_dataset  # noqa: E402
from dcclib.errors import UserError  # noqa: E402
from dcclib.safe_pickle import load_array_pickle, load_npz  # noqa: E402

BUDGET = 1 << 30  # bytes a reader may allocate beyond what the process holds
SECONDS = 20  # a call taking longer is a hang
CASES: Counter[tuple[str, str]] = Counter()  # (reader, outcome): examples run (printed with -s)

EXAMPLES = int(os.environ.get("DCC_FUZZ_EXAMPLES", "100"))  # per reader; set it higher for a deeper search
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("DCC_FUZZ_RANDOM") is None,  # the same cases on every run
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
FUZZ_FOLDERS = settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))  # decoding images is slower


class Hang(BaseException):
    """Raised by SIGALRM inside `bounded` (a BaseException: no reader may catch it)."""


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def bounded(budget: int = BUDGET, seconds: float = SECONDS) -> Iterator[None]:
    """Run the block with at most `budget` more bytes of address space and `seconds` of time."""
    limit_memory = sys.platform.startswith("linux")
    if limit_memory:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _address_space() + budget
        resource.setrlimit(
            resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
        )

    def hang(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def only_user_errors(name: str, read: Callable[[], Any], check: Callable[[Any], None] | None = None) -> None:
    """`read()` within bounds returns something `check` accepts, or raises UserError with a
    one-line message."""
    try:
        with bounded():
            result = read()
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        CASES[name, "refused"] += 1
        return
    if check is not None:
        check(result)
    CASES[name, "read"] += 1


def valid_set(result: tuple[torch.Tensor, torch.Tensor, dict]) -> None:
    """What load_synthetic returns is a usable set."""
    images, labels, meta = result
    assert images.dtype == torch.float32 and images.dim() == 4 and images.shape[0] > 0
    assert bool(torch.isfinite(images).all()) and labels.dtype == torch.int64
    assert (
        labels.shape == (images.shape[0],)
        and 0 <= int(labels.min()) <= int(labels.max()) < meta["num_classes"]
    )
    assert len(meta["class_names"]) == meta["num_classes"] and len(meta["mean"]) == images.shape[1]


def valid_checkpoint(result: tuple[dict[str, torch.Tensor], dict]) -> None:
    tensors, meta = result
    for t in tensors.values():
        assert (
            t.dtype == torch.float32 and t.shape == tensors["images"].shape and bool(torch.isfinite(t).all())
        )
    assert type(meta["next_outer"]) is int and meta["next_outer"] >= 0


def valid_dataset(ds: Any) -> None:
    """What a loader returns is a usable dataset: float32 finite images, labels of the classes."""
    for x, y in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[0] == y.shape[0] > 0
        assert min(x.shape) > 0 and bool(torch.isfinite(x).all()) and x.shape[1] == len(ds.mean)
        assert 0 <= int(y.min()) <= int(y.max()) < ds.num_classes


def valid_batch(result: tuple[np.ndarray, np.ndarray]) -> None:
    data, labels = result
    assert data.dtype == np.uint8 and data.ndim == 2 and labels.dtype == np.int64
    assert labels.shape == (data.shape[0],) and (
        labels.size == 0 or 1 <= labels.min() <= labels.max() <= 1000
    )


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Iterator[None]:
    yield
    names = sorted({name for name, _ in CASES})
    print("\nfuzz cases (read / refused with one line):")
    for name in names:
        print(f"  {name}: {CASES[name, 'read']} / {CASES[name, 'refused']}")
    print(f"  in all: {sum(CASES.values())}")


# ------------------------------------------------------------------------------ mutations
INTERESTING = [
    0,
    1,
    2,
    7,
    8,
    127,
    255,
    256,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0xFFFFFFFF,
    1 << 32,
    1 << 42,
    2**63 - 1,
]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed` with 1-4 mutations, half of them in its first 256 bytes (where the headers are)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        n = max(len(data) - 1, 0)
        pos = draw(st.one_of(st.integers(0, min(n, 255)), st.integers(0, n)))
        kind = draw(st.sampled_from(["flip", "byte", "number", "insert", "delete", "truncate"]))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "number":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(INTERESTING)) % (1 << (8 * width))
            data[pos : pos + width] = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


def files(seed: bytes) -> st.SearchStrategy[bytes]:
    """Mutations of `seed`, plus some random bytes that start like it."""
    return st.one_of(mutated(seed), st.binary(max_size=64).map(lambda tail: seed[:16] + tail))


class Folders:
    """A fresh folder for every example (hypothesis reuses the test's tmp_path)."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, itertools.count()

    def new(self) -> Path:
        path = self.root / f"case{next(self.count)}"
        path.mkdir()
        return path


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    return Folders(tmp_path)


# ------------------------------------------------------------------------------ seeds
META = {"class_names": ["a", "b"], "mean": [0.5], "std": [0.25], "dataset": "embedded-mnist"}


@cache
def saved_set() -> bytes:
    buf = Path(os.environ.get("TMPDIR", "/tmp")) / f"dcc-fuzz-seed-{os.getpid()}.safetensors"
    dio.save_synthetic(buf, torch.randn(2, 1, 4, 4), torch.tensor([0, 1]), {**META, "method": "dc", "ipc": 1})
    data = buf.read_bytes()
    buf.unlink()
    return data


@cache
def checkpoint() -> bytes:
    buf = Path(os.environ.get("TMPDIR", "/tmp")) / f"dcc-fuzz-ckpt-{os.getpid()}.safetensors"
    images = torch.randn(2, 1, 4, 4)
    dio.save_checkpoint(buf, {"images": images, "momentum": images / 2}, {"next_outer": 1, "fingerprint": {}})
    data = buf.read_bytes()
    buf.unlink()
    return data


def image_bytes(fmt: str, mode: str = "RGB", size: tuple[int, int] = (4, 4)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(out, format=fmt)
    return out.getvalue()


def write_folder(root: Path, image: bytes, where: int) -> None:
    """train/{a,b}/ and test/{a,b}/ with two PNGs each; image number `where` holds `image`."""
    good = image_bytes("PNG")
    for k, (split, cls, i) in enumerate(itertools.product(("train", "test"), ("a", "b"), range(2))):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / f"{i}.png").write_bytes(image if k == where else good)


@cache
def folder_tarball() -> bytes:
    return tarball_of({f"train/{c}/{i}.png": image_bytes("PNG") for c in "ab" for i in range(2)})


def tarball_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


IDX = {
    "train-images-idx3-ubyte": np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28),
    "train-labels-idx1-ubyte": np.array([0, 1, 2], np.uint8),
    "t10k-images-idx3-ubyte": np.ones((2, 28, 28), np.uint8),
    "t10k-labels-idx1-ubyte": np.array([1, 0], np.uint8),
}


def cifar_batches() -> dict[str, dict]:
    rng = np.random.default_rng(1)
    batches: dict[str, dict] = {
        f: {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    }
    batches["batches.meta"] = {b"label_names": [b"zero", b"one"], b"num_cases_per_batch": 2}
    return batches


def svhn_mat(compressed: bool, n: int = 3) -> bytes:
    import scipy.io

    x = np.random.default_rng(2).integers(0, 256, (4, 4, 3, n), dtype=np.uint8)
    out = io.BytesIO()
    scipy.io.savemat(
        out, {"X": x, "y": (np.arange(n) % 10 + 1)[:, None].astype(float)}, do_compression=compressed
    )
    return out.getvalue()


def group_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "train_images": rng.integers(0, 256, (4, 4, 4, 3), dtype=np.uint8),
        "train_labels": np.array([0, 1, 0, 1]),
        "test_images": rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
        "test_labels": np.array([1, 0]),
        "wnids": np.array(["n01", "n02"]),
        "class_names": np.array(["x", "y"]),
        "mean": np.array([0.4, 0.5, 0.6]),
        "std": np.array([0.2, 0.2, 0.2]),
        "group": np.array("fish"),
        "format_version": np.array(1),
    }


def npz_bytes(arrays: dict[str, Any], compressed: bool) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def imagenet_batch() -> dict[str, Any]:
    rng = np.random.default_rng(4)
    return {"data": rng.integers(0, 256, (3, 3 * 2 * 2), dtype=np.uint8), "labels": [1, 500, 1000]}


# random picklable values: what a tampered batch file may hold where arrays and lists belong
ARRAYS = st.builds(
    lambda dtype, shape, fill: np.full(shape, fill).astype(dtype),
    st.sampled_from(["u1", "i8", "f4", "f8", "U3", "S2", "b1"]),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.integers(0, 300),
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=4)
    | ARRAYS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.binary(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def batch_pickles(draw: st.DrawFn, good: dict, keys: list) -> bytes:
    """`good` with some of `keys` set to random values, pickled with a random protocol."""
    batch = dict(good)
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=len(keys), unique=True)):
        batch[key] = draw(VALUES)
    return pickle.dumps(batch, protocol=draw(st.sampled_from([0, 1, 2, 4, 5])))


# ------------------------------------------------------------------------------ dcclib.io
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
DTYPES = [
    torch.float32,
    torch.float16,
    torch.float64,
    torch.bfloat16,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.bool,
]


@st.composite
def safetensors_files(draw: st.DrawFn, good: dict[str, torch.Tensor], fields: dict[str, Any]) -> bytes:
    """A well-formed safetensors file: the `good` tensors and dcc metadata `fields` with 0-3
    tensors dropped, added or given another dtype, shape or a NaN/infinite value, and 0-3
    metadata fields set to random JSON (or the whole metadata random JSON)."""
    from safetensors.torch import save

    tensors = dict(good)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*good, "extra"]))
        old = tensors.pop(name, torch.zeros(2))
        change = draw(st.sampled_from(["drop", "dtype", "shape", "value"]))
        if change == "dtype":
            tensors[name] = old.to(draw(st.sampled_from(DTYPES)))
        elif change == "shape":
            shape = draw(st.lists(st.integers(0, 3), max_size=5))
            tensors[name] = torch.full(shape, draw(st.integers(-1, 2))).to(old.dtype)
        elif change == "value":
            values = [float("nan"), float("inf"), -1.0, 2.0, 1e30] if old.is_floating_point() else [-1, 2, 99]
            changed = old.clone().view(-1)
            changed[:1] = draw(st.sampled_from(values))
            tensors[name] = changed.view(old.shape)
    meta = dict(fields)
    for key in draw(st.lists(st.sampled_from([*fields, "format_version"]), max_size=3, unique=True)):
        meta[key] = draw(JSON)
    header = json.dumps(meta) if draw(st.integers(0, 9)) else json.dumps(draw(JSON))
    return save(tensors, metadata={"dcc": header})


IMAGES = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
SET_TENSORS = {"images": IMAGES, "labels": torch.tensor([0, 1])}
SET_FIELDS = {**META, "num_classes": 2, "shape": [2, 1, 4, 4], "format_version": 1, "kind": "synthetic"}
CKPT_TENSORS = {"images": IMAGES, "momentum": IMAGES / 2}
CKPT_FIELDS = {"kind": "checkpoint", "next_outer": 1, "fingerprint": {}, "format_version": 1}


@FUZZ
@given(data=files(saved_set()) | safetensors_files(SET_TENSORS, SET_FIELDS))
def test_fuzz_saved_sets(folders: Folders, data: bytes) -> None:
    path = folders.new() / "set.safetensors"
    path.write_bytes(data)
    only_user_errors("saved set", lambda: dio.load_synthetic(path), valid_set)


@FUZZ
@given(data=files(checkpoint()) | safetensors_files(CKPT_TENSORS, CKPT_FIELDS))
def test_fuzz_checkpoints(folders: Folders, data: bytes) -> None:
    path = folders.new() / "checkpoint.safetensors"
    path.write_bytes(data)
    only_user_errors("checkpoint", lambda: dio.load_checkpoint(path), valid_checkpoint)


# ------------------------------------------------------------------------------ image folders
@FUZZ_FOLDERS
@given(
    image=files(image_bytes("PNG")) | files(image_bytes("JPEG")) | files(image_bytes("PNG", "L")),
    where=st.integers(0, 7),
)
def test_fuzz_image_folder(folders: Folders, image: bytes, where: int) -> None:
    root = folders.new()
    write_folder(root, image, where)
    only_user_errors("image folder", lambda: load_dataset(root), valid_dataset)


@FUZZ
@given(train=files(folder_tarball()))
def test_fuzz_image_tarballs(folders: Folders, train: bytes) -> None:
    root = folders.new()
    (root / "train.tar.gz").write_bytes(train)
    (root / "test.tar.gz").write_bytes(tarball_of({f"test/{c}/0.png": image_bytes("PNG") for c in "ab"}))
    only_user_errors("image tarball", lambda: load_dataset(root), valid_dataset)


@FUZZ_FOLDERS
@given(damage=st.data())
def test_fuzz_image_folder_cache(folders: Folders, damage: st.DataObject) -> None:
    """A damaged cache file is ignored and rebuilt (or refused), never trusted."""
    root = folders.new()
    write_folder(root, image_bytes("PNG"), 0)
    first = load_dataset(root)
    (cache,) = (root / ".dcc-cache").glob("*.npz")
    cache.write_bytes(damage.draw(mutated(cache.read_bytes())))
    os.utime(cache, ns=(0, 0))

    def read() -> None:
        again = load_dataset(root)
        assert torch.equal(again.train_images, first.train_images) and again.class_names == first.class_names

    only_user_errors("image folder cache", read)


# ------------------------------------------------------------------------------ idx, CIFAR, SVHN
@FUZZ
@given(which=st.sampled_from(sorted(IDX)), gz=st.booleans(), damage=st.data())
def test_fuzz_idx(folders: Folders, which: str, gz: bool, damage: st.DataObject) -> None:
    root = folders.new()
    (root / "mnist").mkdir()
    for name, arr in IDX.items():
        raw = idx_bytes(arr)
        data = gzip.compress(raw, mtime=0) if gz else raw
        if name == which:
            data = damage.draw(files(data))
        (root / "mnist" / (name + (".gz" if gz else ""))).write_bytes(data)
    only_user_errors("idx", lambda: load_dataset("mnist", data_root=root, download=False), valid_dataset)


@FUZZ
@given(which=st.sampled_from(sorted(cifar_batches())), damage=st.data())
def test_fuzz_cifar(folders: Folders, which: str, damage: st.DataObject) -> None:
    root = folders.new()
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for name, batch in cifar_batches().items():
        data = pickle.dumps(batch, protocol=2)
        if name == which:
            keys = [b"label_names"] if name == "batches.meta" else [b"data", b"labels"]
            data = damage.draw(files(data) | batch_pickles(batch, keys))
        (folder / name).write_bytes(data)
    only_user_errors("cifar", lambda: load_dataset("cifar10", data_root=root, download=False), valid_dataset)


@FUZZ
@given(compressed=st.booleans(), train=st.booleans(), damage=st.data())
def test_fuzz_svhn(folders: Folders, compressed: bool, train: bool, damage: st.DataObject) -> None:
    root = folders.new()
    (root / "svhn").mkdir()
    for split in ("train", "test"):
        data = svhn_mat(compressed)
        if (split == "train") == train:
            data = damage.draw(files(data))
        (root / "svhn" / f"{split}_32x32.mat").write_bytes(data)
    only_user_errors("svhn", lambda: load_dataset("svhn", data_root=root, download=False), valid_dataset)


# ------------------------------------------------------------------------------ ImageNet32
@FUZZ
@given(compressed=st.booleans(), damage=st.data())
def test_fuzz_imagenet_group_files(folders: Folders, compressed: bool, damage: st.DataObject) -> None:
    root = folders.new()
    arrays = group_arrays()
    if damage.draw(st.booleans()):  # a key replaced by a random array
        arrays[damage.draw(st.sampled_from(sorted(arrays)))] = damage.draw(ARRAYS)
        data = npz_bytes(arrays, compressed)
    else:
        data = damage.draw(mutated(npz_bytes(arrays, compressed)))
    (root / "imagenet32-fish.npz").write_bytes(data)
    only_user_errors(
        "imagenet32 group", lambda: load_dataset("imagenet32-fish", data_root=root), valid_dataset
    )


@FUZZ
@given(form=st.sampled_from(["pickle", "npz"]), damage=st.data())
def test_fuzz_data_prep_batches(folders: Folders, form: str, damage: st.DataObject) -> None:
    batch = imagenet_batch()
    if form == "pickle":
        path = folders.new() / "train_data_batch_1"
        seed = pickle.dumps(batch, protocol=2)
        data = damage.draw(files(seed) | batch_pickles(batch, ["data", "labels"]))
    else:
        path = folders.new() / "train_data_batch_1.npz"
        data = damage.draw(files(npz_bytes({**batch, "labels": np.array(batch["labels"])}, True)))
    path.write_bytes(data)
    only_user_errors("data_prep batch", lambda: sources.read_batch(path), valid_batch)


@FUZZ
@given(data=st.binary(max_size=256).map(lambda b: b"\x80" + bytes([b[0] % 6 if b else 2]) + b[1:]))
def test_fuzz_random_pickles(folders: Folders, data: bytes) -> None:
    """Random opcode streams for the restricted unpickler itself."""
    path = folders.new() / "batch"
    path.write_bytes(data)
    only_user_errors("random pickle", lambda: load_array_pickle(path))


# ------------------------------------------------------------------------------ crafted files
def _pickle_declaring(opcode: bytes, size: int) -> bytes:
    return b"\x80\x04" + opcode + struct.pack("<Q", size) + b"abc."


CRAFTED_PICKLES = {
    "bytes of 4 TiB": _pickle_declaring(b"\x8e", 4 << 40),  # BINBYTES8
    "string of 4 TiB": _pickle_declaring(b"\x8d", 4 << 40),  # BINUNICODE8
    "frame of 4 TiB": _pickle_declaring(b"\x95", 4 << 40),  # FRAME
    "array of 1 TiB": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85U\x01b\x87R.",
    "object array": pickle.dumps(np.array([None, 1], dtype=object), protocol=2),
    "numpy.ndarray called": b"\x80\x02cnumpy\nndarray\n\x8a\x06\x00\x00\x00\x00\x00\x01\x85U\x02u1\x86R.",
    "memo index of 10**30": b"(p" + b"1" * 30 + b"\n.",
}


@pytest.mark.parametrize("name", sorted(CRAFTED_PICKLES))
def test_crafted_pickles_are_one_line_errors(tmp_path: Path, name: str) -> None:
    """Declared sizes are not allocated: 4 TiB objects, arrays or frames, and objects, fail
    cleanly inside a 1 GiB budget (issue 11, item 8)."""
    path = tmp_path / "batch"
    path.write_bytes(CRAFTED_PICKLES[name])
    with pytest.raises(UserError) as info, bounded():
        load_array_pickle(path)
    assert "\n" not in str(info.value)


def test_shared_lists_do_not_amplify(tmp_path: Path) -> None:
    """Labels that repeat one long list (shared in the pickle's memo) are refused before numpy
    turns them into an array a million times the file's size (issue 11, item 8)."""
    big = list(range(100_000))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, batch in cifar_batches().items():
        if name == "data_batch_1":
            batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [big, big]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="flat list of N integers"), bounded(budget=256 << 20):
        load_dataset("cifar10", data_root=tmp_path, download=False)
    with open(tmp_path / "train_data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((2, 12), np.uint8), "labels": [big] * 1000}, f, protocol=2)
    with pytest.raises(UserError, match="flat list of integers"), bounded(budget=256 << 20):
        sources.read_batch(tmp_path / "train_data_batch_1")


def test_pickle_budget_stops_amplification(tmp_path: Path) -> None:
    """A small pickle that builds millions of containers (or strings of copies) is refused."""
    lists = b"\x80\x02]" + b"]a" * 3_000_000 + b"."  # 6 MB building 3 million lists
    (tmp_path / "lists").write_bytes(lists)
    copies = b"\x80\x02]X" + struct.pack("<I", 1 << 20) + b"x" * (1 << 20) + b"q\x000"
    copies += b"c_codecs\nencode\nh\x00X\x06\x00\x00\x00latin1\x86Ra" * 200 + b"."  # 200 MB of copies
    (tmp_path / "copies").write_bytes(copies)
    for name in ("lists", "copies"):
        with pytest.raises(UserError, match="far more data than the file holds"), bounded(budget=512 << 20):
            load_array_pickle(tmp_path / name)


def test_npz_member_declaring_4_tib(tmp_path: Path) -> None:
    """An .npy header inside an .npz that declares 4 TiB (the zip member being small) is refused
    before anything is allocated, for every .npz reader (issue 11, item 8)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (4 << 40,)}
    )
    arrays = group_arrays()
    good = npz_bytes(arrays, compressed=False)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = header.getvalue() + b"\0" * 16 if info.filename == "train_images.npy" else zin.read(info)
            zout.writestr(info.filename, data)
    (tmp_path / "imagenet32-fish.npz").write_bytes(out.getvalue())
    with pytest.raises(UserError, match="train_images.npy declares shape"), bounded():
        load_dataset("imagenet32-fish", data_root=tmp_path)
    batch = tmp_path / "train_data_batch_1.npz"
    shutil.copy(tmp_path / "imagenet32-fish.npz", batch)
    with pytest.raises(UserError, match="npz"), bounded():
        sources.read_batch(batch)
    with pytest.raises(UserError, match="declares shape"), bounded():
        load_npz(batch, ["train_images"])


def test_gzip_idx_declaring_more_than_gzip_can_hold(tmp_path: Path) -> None:
    """A gzipped idx header claiming 2**32 x 28 x 28 bytes is refused before reading; one that
    claims a plausible size but ends early is read in chunks and called truncated."""
    (tmp_path / "mnist").mkdir()
    for name, arr in IDX.items():
        (tmp_path / "mnist" / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    bomb = bytes([0, 0, 8, 3]) + struct.pack(">3I", 0xFFFFFFFF, 28, 28)
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bomb))
    with pytest.raises(UserError, match="can hold at most"), bounded():
        load_dataset("mnist", data_root=tmp_path, download=False)
    plausible = bytes([0, 0, 8, 3]) + struct.pack(">3I", 20, 28, 28) + b"\0" * 100
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(plausible))
    with pytest.raises(UserError, match="truncated"), bounded():
        load_dataset("mnist", data_root=tmp_path, download=False)


def test_svhn_element_declaring_4_gib(tmp_path: Path) -> None:
    """A .mat variable whose data element claims 4 GiB is refused before scipy allocates it."""
    (tmp_path / "svhn").mkdir()
    good = svhn_mat(compressed=False)
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(good)
    at = good.index(b"X\0\0\0") + 4  # the name "X" as a small element, then the data element
    kind = struct.unpack("<I", good[at : at + 4])[0]
    bad = good[: at + 4] + struct.pack("<I", 0xFFFFFFF0) + good[at + 8 :]
    assert kind == 2  # miUINT8
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(bad)
    with pytest.raises(UserError, match="train_32x32.mat"), bounded():
        load_dataset("svhn", data_root=tmp_path, download=False)
