"""How ``make reports`` picks its profile: the best one this machine can run, and why, in words.

``choose_profile`` is the rule, pure (no machine is probed): an asked-for profile as it is; for
``auto``, a CUDA device -> ``quick`` (``paper`` only when asked for); else the real data of
profile ``cpu`` (``CPU_DATASETS``) found under the data root, or reachable download hosts -> ``cpu``;
else ``smoke`` (the embedded stand-in digits). ``resolve_profile`` gathers its inputs on this
machine: CUDA, the data found (``probe_data``, file names only) and, only when something would
be downloaded, whether the hosts answer (``is_online``; $DCC_OFFLINE=1 skips that check).
``fetch_datasets`` downloads what profile ``cpu`` is missing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from dcclib.errors import UserError
from dcclib.lab.portable import portable_path, portable_text
from dcclib.lab.profiles import PROFILES

AUTO = "auto"
OFFLINE_ENV = "DCC_OFFLINE"  # 1: auto does not check whether the download hosts are reachable
CPU_DATASETS = ("mnist", "fashionmnist", "cifar10")  # what profile cpu runs on
ONLINE_TIMEOUT_S = 3.0


def choose_profile(
    cuda: bool,
    data_found: list[str],
    online: bool | None,
    asked: str = AUTO,
    where: str = "data",
    device: str | None = None,
) -> tuple[str, str]:
    """The profile to run and why, in words: `asked` when it names a profile; for ``auto``, a
    CUDA device -> quick; else the real data of profile cpu found under `where` (`data_found`)
    or the machine `online` (None: not checked, $DCC_OFFLINE) -> cpu; else smoke."""
    if asked != AUTO:
        if asked not in PROFILES:
            raise UserError(f"unknown profile '{asked}'; choose one of: {', '.join([AUTO, *PROFILES])}")
        return asked, f"asked for (--profile {asked})"
    found = [n for n in CPU_DATASETS if n in data_found]
    missing = [n for n in CPU_DATASETS if n not in found]
    if found:
        data = f"real data found in {where} ({', '.join(found)})"
        if missing:
            data += f"; missing there: {', '.join(missing)}" + (
                " (downloaded now: online)" if online else " (their cells are not run)"
            )
    else:
        data = f"no real data in {where} ({', '.join(CPU_DATASETS)})"
    if device is not None and device.startswith("cpu"):
        cuda, no_cuda = False, "--device cpu"
    else:
        no_cuda = "no CUDA device"
    if cuda:
        return "quick", f"CUDA device found (--profile paper for the paper's full settings); {data}"
    if found:
        return "cpu", f"{no_cuda}; {data}"
    if online:
        return "cpu", f"{no_cuda}; {data}, but online: they are downloaded into {where}"
    offline = f"offline (${OFFLINE_ENV}=1)" if online is None else "offline"
    return "smoke", f"{no_cuda}; {data}; {offline}: the embedded stand-in digits (not paper numbers)"


def _has_idx(dirs: list[Path]) -> bool:
    stems = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return any(all((d / s).is_file() or (d / f"{s}.gz").is_file() for s in stems) for d in dirs)


def probe_data(root: Path, names: tuple[str, ...] = CPU_DATASETS) -> list[str]:
    """Which of `names` (mnist, fashionmnist, cifar10) have their files under `root`, in the
    layouts their loaders read (dcclib.data.idx, dcclib.data.cifar): a cheap check of file names,
    nothing is read."""
    batches = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    jpeg = root / "cifar10-jpeg"
    checks = {
        "mnist": lambda: _has_idx([root / "MNIST" / "raw", root / "mnist", root / "MNIST", root]),
        "fashionmnist": lambda: _has_idx(
            [
                root / "FashionMNIST" / "raw",
                root / "fashion-mnist",
                root / "fashionmnist",
                root / "FashionMNIST",
                root,
            ]
        ),
        "cifar10": lambda: (
            any(all((d / f).is_file() for f in batches) for d in (root / "cifar-10-batches-py", root))
            or all((jpeg / s).is_dir() for s in ("train", "test"))
            or all((jpeg / f"{s}.tar.gz").is_file() for s in ("train", "test"))
        ),
    }
    return [n for n in names if n in checks and checks[n]()]


def download_urls(names: list[str]) -> list[str]:
    """The URLs torchvision downloads `names` from (the first mirror of each)."""
    urls = {
        "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "fashionmnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    }
    try:  # the installed torchvision's own mirrors, when it has them
        from torchvision.datasets import MNIST, FashionMNIST

        urls |= {"mnist": MNIST.mirrors[0], "fashionmnist": FashionMNIST.mirrors[0]}
    except (ImportError, AttributeError, IndexError):
        pass
    return [urls[n] for n in names if n in urls]


def offline_by_env() -> bool:
    """$DCC_OFFLINE is 1/true/yes: the machine is taken to be offline, nothing is checked."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def is_online(urls: list[str], timeout: float = ONLINE_TIMEOUT_S) -> bool | None:
    """Whether every host of `urls` accepts a connection within `timeout` seconds in all (name
    look-ups included); None when $DCC_OFFLINE is set (not checked)."""
    if offline_by_env():
        return None
    hosts = sorted(
        {(u.hostname, u.port or (443 if u.scheme == "https" else 80)) for u in map(urlsplit, urls)}
    )
    ok: dict = {}

    def connect(host: tuple) -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            ok[host] = True
        except OSError:
            ok[host] = False

    threads = [threading.Thread(target=connect, args=(h,), daemon=True) for h in hosts]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return bool(hosts) and all(ok.get(h) for h in hosts)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_profile(
    asked: str, data_root: Path, update_notebooks: bool = False, device: str | None = None
) -> tuple[str, str, list[str]]:
    """(profile, reason, datasets to download): `asked`, or what ``auto`` finds on this machine."""
    if update_notebooks and asked in (AUTO, "smoke"):
        return "smoke", "--update-notebooks writes the nbval references, which are smoke runs", []
    where = portable_path(data_root.resolve())
    if asked != AUTO:
        return (*choose_profile(False, [], False, asked, where), [])
    cuda = _cuda_available()
    found = probe_data(data_root)
    missing = [n for n in CPU_DATASETS if n not in found]
    use_cuda = cuda and not (device or "").startswith("cpu")
    if not missing or use_cuda:
        online: bool | None = False  # not needed: nothing to download, or quick on the GPU
    else:
        online = None if offline_by_env() else is_online(download_urls(missing))
    name, reason = choose_profile(cuda, found, online, asked, where, device)
    return name, reason, missing if name == "cpu" and online else []


def fetch_datasets(names: list[str], root: Path) -> None:
    """Download `names` into `root` (torchvision); a failure is reported, the run goes on."""
    from dcclib.data import load_dataset

    for name in names:
        print(f"[reports] downloading {name} into {portable_path(root.resolve())} ...", flush=True)
        try:
            load_dataset(name, root, "cpu", download=True)
        except UserError as exc:
            print(
                f"[reports] {name}: not downloaded ({portable_text(str(exc))}); its cells are not run",
                flush=True,
            )
