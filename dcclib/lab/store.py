"""The results store: every experiment saved under the hash of its full config, reused on a match.

Why: a GPU box computes the tables at profile quick/paper, the results folder is committed, and a
laptop renders the same notebooks from it. A record is found only by the hash of the complete
config (dataset and its source, method, ipc, every CondenseConfig / EvalConfig field after profile
scaling, run index and seed, dcclib's version), and the stored config is compared in full on
every read, so a changed setting can never pick up a stale result.

Layout: ``<root>/<profile>/<dataset>/<kind>-<key>.json`` with, for a synthetic set smaller than
``MAX_TENSOR_BYTES``, ``<kind>-<key>.safetensors`` next to it. The JSON is written last (both
atomically), so a record that exists is complete. ``DCC_RESULTS_DIR`` overrides the root.

A record also carries a ``request_key``: the hash of the same config with the dataset reduced to
its name. A machine without the data (which cannot compute the source fingerprint) can still find
what a machine with the data stored, via ``find_requested``; the record then names its source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from dcclib import io
from dcclib.errors import UserError

RESULTS_ENV = "DCC_RESULTS_DIR"
MAX_TENSOR_BYTES = 5 * 2**20  # synthetic sets up to this size are stored with their record
RECORD_VERSION = 1


def repo_root() -> Path | None:
    """The project's checkout (where pyproject.toml sits next to dcclib/), if dcclib runs from one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def default_results_dir() -> Path:
    """$DCC_RESULTS_DIR if set, else results/ in the checkout (or the working folder)."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    return (repo_root() or Path.cwd()) / "results"


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


def _safe(part: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)) or "_"


class ResultStore:
    """Records of experiments under `root` (default: the repo's results/ or $DCC_RESULTS_DIR)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_results_dir()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def path(self, config: dict) -> Path:
        """Where the record of `config` lives (it needs 'kind', 'profile' and 'dataset.name')."""
        try:
            kind, profile, dataset = config["kind"], config["profile"], config["dataset"]["name"]
        except (KeyError, TypeError):
            raise UserError("an experiment config needs kind, profile and dataset.name") from None
        return self.root / _safe(profile) / _safe(dataset) / f"{_safe(kind)}-{config_key(config)}.json"

    def get(self, config: dict) -> dict | None:
        """The stored record of exactly this config, or None (a record whose config differs in
        any field, e.g. a hash collision or a hand-edited file, counts as missing)."""
        path = self.path(config)
        if not path.is_file():
            return None
        try:
            record = io.read_json(path)
        except UserError:
            return None  # unreadable: recompute and overwrite
        if record.get("config") != canonical(config) or record.get("record_version") != RECORD_VERSION:
            return None
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
        """Save `result` under `config` (and the set, if given and small enough); returns the record."""
        path = self.path(config)
        tensors = None
        if images is not None and labels is not None:
            nbytes = images.numel() * 4 + labels.numel() * 8
            if nbytes <= MAX_TENSOR_BYTES:
                tensors = path.with_suffix(".safetensors")
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
        io.write_json(path, record)
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
        """Records whose config equals `config` up to the dataset's source (see module doc)."""
        want = config_key(request_of(config))
        folder = self.path(config).parent
        hits = []
        for path in sorted(folder.glob(f"{_safe(config['kind'])}-*.json")):
            try:
                record = io.read_json(path)
            except UserError:
                continue
            same = request_of(record.get("config", {})) == request_of(config)
            if record.get("request_key") == want and same:
                hits.append(record)
        return hits
