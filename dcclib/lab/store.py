"""The results store: every experiment saved under the hash of its full config, reused on a match.

Why: a GPU box (or a cluster, ``dcclib.lab.sweep``) computes the tables at profile quick/paper,
the results folder is committed or shared, and a laptop renders the same notebooks from it. A
record is found only by the hash of the complete config (dataset and its source, method, ipc,
every CondenseConfig / EvalConfig field after profile scaling, run index and seed, and the
algorithm's version, ``dcclib.fingerprint.ALGORITHM_VERSION``), and the stored config is compared
in full on every read, so a changed setting or changed numerics never pick up a stale result.

Layout: ``<root>/<profile>/<dataset>/<kind>-<key>.json`` with, for a synthetic set smaller than
``MAX_TENSOR_BYTES`` (or ``$DCC_MAX_TENSOR_MB``; a sweep stores every set, so that nothing is
condensed twice), ``<kind>-<key>-<digest>.safetensors`` next to it (named by its content).
``DCC_RESULTS_DIR`` overrides the root.

Many writers, one shared file system, no lock server: the tensors are written first, under a
name of their own content, then the JSON under a temporary name, published with a hard link
(which fails if the record exists: the first complete record of a key stays, and a later writer
returns it) or, where hard links are not supported, an atomic rename. A record that exists is
complete and names its own tensors, so two writers of one key always leave one valid result.

``allow_stale`` (or ``DCC_ALLOW_STALE=1``) lets ``get`` fall back to a record whose config
differs only in the algorithm's version (``unversioned``); the record then carries ``stale``
and the store lists it in ``stale_hits``, so that tables can say so.

A record also carries a ``request_key``: the hash of the same config with the dataset reduced to
its name. A machine without the data (which cannot compute the source fingerprint) can still find
what a machine with the data stored, via ``find_requested``; the record then names its source.

``<root>/.jobs/<key>.json`` keeps what a sweep knows of a job (running, failed with its error).

``DCC_RENDER_ONLY=1`` (the reports runner's ``--render-only``) makes a store refuse to let anything
be computed (``may_compute``): a notebook then shows what the store holds, or stops with one line
naming what is missing. The tests re-render the shipped reports this way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dcclib import io
from dcclib.errors import UserError

RESULTS_ENV = "DCC_RESULTS_DIR"
STALE_ENV = "DCC_ALLOW_STALE"
MAX_TENSOR_BYTES = 5 * 2**20  # synthetic sets up to this size are stored with their record
TENSOR_LIMIT_ENV = "DCC_MAX_TENSOR_MB"  # overrides it (0: no limit; what a sweep's workers use)
RECORD_VERSION = 1
VERSION_FIELDS = ("algorithm", "dcclib")  # what --allow-stale ignores when matching a config
JOBS_DIR = ".jobs"
RENDER_ONLY_ENV = "DCC_RENDER_ONLY"  # 1: show what the store holds, compute nothing


class NotStoredError(UserError):
    """A result that is not in the store while computing is forbidden ($DCC_RENDER_ONLY)."""


def render_only() -> bool:
    """$DCC_RENDER_ONLY is 1/true/yes: nothing may be computed, only read from the store."""
    return os.environ.get(RENDER_ONLY_ENV, "").strip().lower() in ("1", "true", "yes")


def repo_root() -> Path | None:
    """The project's checkout (where pyproject.toml sits next to dcclib/), if dcclib runs from one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def default_results_dir() -> Path:
    """$DCC_RESULTS_DIR if set, else results/ in the checkout (or the working folder)."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    return (repo_root() or Path.cwd()) / "results"


def stale_allowed_by_env() -> bool:
    """$DCC_ALLOW_STALE is set to 1/true/yes (what the reports runner and the sweep set)."""
    return os.environ.get(STALE_ENV, "").strip().lower() in ("1", "true", "yes")


def allow_stale_results(allow: bool = True) -> None:
    """Every ResultStore made from now on, in this process and its children (papermill's kernels,
    a sweep's workers), reuses results of older algorithm versions (and says so): --allow-stale."""
    os.environ[STALE_ENV] = "1" if allow else "0"


def tensor_limit() -> float:
    """The largest synthetic set (bytes) stored with its record: $DCC_MAX_TENSOR_MB, else MAX_TENSOR_BYTES."""
    env = os.environ.get(TENSOR_LIMIT_ENV, "").strip()
    if not env:
        return MAX_TENSOR_BYTES
    return float(env) * 2**20 if float(env) > 0 else float("inf")


def canonical(obj: Any) -> Any:
    """JSON-ready form: dataclasses as dicts, tuples as lists, paths as strings, keys sorted later."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise UserError(f"cannot use a {type(obj).__name__} in an experiment config")


def config_key(config: dict) -> str:
    """sha256 of the canonical JSON of `config` (sorted keys, no spaces); 24 hex digits."""
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def request_of(config: dict) -> dict:
    """The config with its dataset reduced to the name (what a machine without the data knows)."""
    config = canonical(config)
    out = {}
    for k, v in config.items():
        if k == "dataset" and isinstance(v, dict):
            out[k] = {"name": v.get("name")}
        elif isinstance(v, dict):
            out[k] = request_of(v)
        else:
            out[k] = v
    return out


def unversioned(config: Any) -> Any:
    """The config without the code's version (VERSION_FIELDS, at any depth): what --allow-stale matches."""
    if isinstance(config, dict):
        return {k: unversioned(v) for k, v in canonical(config).items() if k not in VERSION_FIELDS}
    return config


def version_of(config: dict) -> str:
    """Which code version a stored config names ('algorithm X', or the older 'dcclib X')."""
    if "algorithm" in config:
        return f"algorithm {config['algorithm']}"
    return f"dcclib {config['dcclib']}" if "dcclib" in config else "no version"


def _safe(part: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)) or "_"


def _tensor_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (images, labels):
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class ResultStore:
    """Records of experiments under `root` (default: the repo's results/ or $DCC_RESULTS_DIR)."""

    def __init__(self, root: str | Path | None = None, allow_stale: bool | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_results_dir()
        self.allow_stale = stale_allowed_by_env() if allow_stale is None else allow_stale
        self.stale_hits: list[dict] = []  # records of older versions that `get` returned
        self._folders: dict[Path, list[tuple[str, Path]]] = {}  # unversioned index, for stale reads

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def path(self, config: dict) -> Path:
        """Where the record of `config` lives (it needs 'kind', 'profile' and 'dataset.name')."""
        try:
            kind, profile, dataset = config["kind"], config["profile"], config["dataset"]["name"]
        except (KeyError, TypeError):
            raise UserError("an experiment config needs kind, profile and dataset.name") from None
        return self.root / _safe(profile) / _safe(dataset) / f"{_safe(kind)}-{config_key(config)}.json"

    def _read(self, path: Path) -> dict | None:
        try:
            record = io.read_json(path)
        except UserError:
            return None  # missing or unreadable: recompute and overwrite
        return record if record.get("record_version") == RECORD_VERSION else None

    def exact(self, config: dict) -> dict | None:
        """The stored record of exactly this config, or None (a record whose config differs in
        any field, e.g. a hash collision or a hand-edited file, counts as missing)."""
        record = self._read(self.path(config))
        return record if record is not None and record.get("config") == canonical(config) else None

    def may_compute(self, config: dict, what: str) -> None:
        """Called before computing `what` (not found in the store): a NotStoredError when
        $DCC_RENDER_ONLY forbids computing."""
        if render_only():
            raise NotStoredError(
                f"{what} is not in the results store {self.root} (key {config_key(config)}, "
                f"profile {config.get('profile')}) and ${RENDER_ONLY_ENV} forbids computing it; "
                "fill the store first (dcc sweep, or the runner without --render-only)"
            )

    def get(self, config: dict) -> dict | None:
        """`exact`, or with allow_stale the newest record of an older algorithm version (marked)."""
        record = self.exact(config)
        if record is None and self.allow_stale:
            record = self._stale(config)
        return record

    def _stale(self, config: dict) -> dict | None:
        folder, want = self.path(config).parent, unversioned(config)
        if folder not in self._folders:
            index = []
            for path in sorted(folder.glob(f"{_safe(config['kind'])}-*.json")):
                record = self._read(path)
                if record is not None:
                    index.append((config_key(unversioned(record.get("config", {}))), path))
            self._folders[folder] = index
        hits = [r for k, p in self._folders[folder] if k == config_key(want) and (r := self._read(p))]
        hits = [r for r in hits if unversioned(r.get("config", {})) == want]
        if not hits:
            return None
        record = max(hits, key=lambda r: r.get("created", ""))
        record["stale"] = version_of(record["config"])
        self.stale_hits.append({"key": record["key"], "kind": config["kind"], "version": record["stale"]})
        return record

    def put(
        self,
        config: dict,
        result: dict,
        images: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        meta: dict | None = None,
        **extra: Any,
    ) -> dict:
        """Save `result` under `config` (and the set, if given and small enough); returns the record
        that the store holds: this one, or the one another writer published first."""
        storable = images is not None and labels is not None
        storable = storable and images.numel() * 4 + labels.numel() * 8 <= tensor_limit()
        existing = self.exact(config)
        if existing is not None and (existing.get("tensors") or not storable):
            return existing  # idempotent: the first complete result of a key stays (unless it lacks the set)
        path = self.path(config)
        tensors = None
        if storable:
            tensors = path.with_name(f"{path.stem}-{_tensor_digest(images, labels)}.safetensors")
            io.save_synthetic(tensors, images, labels, meta or {})
        record = {
            "record_version": RECORD_VERSION,
            "key": config_key(config),
            "request_key": config_key(request_of(config)),
            "config": canonical(config),
            "result": canonical(result),
            "tensors": tensors.name if tensors is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": io.library_versions(),
            **canonical(extra),
        }
        return self._publish(path, config, record, tensors)

    def _publish(self, path: Path, config: dict, record: dict, tensors: Path | None) -> dict:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)  # io's temp names
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
            os.chmod(tmp, 0o666 & ~_umask())
            try:
                os.link(tmp, path)  # atomic create-if-absent, also on NFS
            except FileExistsError:
                winner = self.exact(config)
                if winner is not None and (winner.get("tensors") or tensors is None):
                    if tensors is not None and winner.get("tensors") != tensors.name:
                        tensors.unlink(missing_ok=True)
                    return winner
                os.replace(tmp, path)  # torn, foreign, or without the set this one holds: replace it
            except OSError:
                os.replace(tmp, path)  # no hard links here: last complete writer wins
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return record

    def load_set(self, config: dict, record: dict) -> tuple[torch.Tensor, torch.Tensor, dict] | None:
        """The synthetic set stored with `record`, or None if it was too large to store."""
        if not record.get("tensors"):
            return None
        path = self.path(config).with_name(record["tensors"])
        if not path.is_file():
            return None
        return io.load_synthetic(path)

    def find_requested(self, config: dict) -> list[dict]:
        """Records whose config equals `config` up to the dataset's source (see module doc);
        with allow_stale also those of older algorithm versions (marked `stale`)."""
        strip = unversioned if self.allow_stale else canonical
        want = request_of(strip(config))
        hits = []
        for path in sorted(self.path(config).parent.glob(f"{_safe(config['kind'])}-*.json")):
            record = self._read(path)
            if record is None or request_of(strip(record.get("config", {}))) != want:
                continue
            if record.get("request_key") != config_key(request_of(config)):
                record["stale"] = version_of(record["config"])
                self.stale_hits.append(
                    {"key": record["key"], "kind": config["kind"], "version": record["stale"]}
                )
            hits.append(record)
        return hits

    # ------------------------------------------------------------------------------ job notes
    def job_note(self, key: str) -> dict | None:
        """What a sweep noted about job `key` (status, error, host, attempts), or None."""
        try:
            return io.read_json(self.root / JOBS_DIR / f"{_safe(key)}.json")
        except UserError:
            return None

    def note_job(self, key: str, **state: Any) -> dict:
        """Merge `state` into job `key`'s note (written atomically; the last writer wins)."""
        note = {**(self.job_note(key) or {}), **canonical(state), "key": key}
        note["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        io.write_json(self.root / JOBS_DIR / f"{_safe(key)}.json", note)
        return note


def _umask() -> int:
    umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return umask
