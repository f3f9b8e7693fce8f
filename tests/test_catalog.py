"""`dcc sets` lists a store's sets in words, with their accuracies."""

from __future__ import annotations

import torch

from dcclib.lab.catalog import list_sets, main
from dcclib.lab.store import ResultStore


def _set(store: ResultStore, method: str, k: int, acc: list[float] | None) -> None:
    config = {"kind": "condense", "profile": "cpu", "dataset": {"name": "mnist"}, "method": method, "ipc": 1,
              "run": 0, "algorithm": "2026.12-1", "config": {"outer_iterations": k}}  # fmt: skip
    images, labels = torch.zeros(10, 1, 28, 28), torch.arange(10)
    meta = {"kind": "synthetic", "dataset": "mnist", "method": method, "ipc": 1, "mean": [0.1], "std": [0.3],
            "class_names": [str(c) for c in range(10)]}  # fmt: skip
    store.put(config, {"outer_iterations": k}, images, labels, meta)
    if acc is not None:
        ev = {"kind": "evaluate", "profile": "cpu", "dataset": {"name": "mnist"}, "set": config,
              "eval": {"models": ["convnet"]}, "algorithm": "2026.12-1"}  # fmt: skip
        store.put(ev, {"accuracies": acc})


def test_sets_are_listed_with_their_accuracies(tmp_path, capsys):
    store = ResultStore(tmp_path)
    _set(store, "dcc", 200, [0.9, 0.92])
    _set(store, "dc", 20, None)
    _set(store, "dc", 100, [0.8])
    rows = list_sets(tmp_path)
    assert [(r["method"], r["K_o"]) for r in rows] == [("dc", 20), ("dc", 100), ("dcc", 200)]
    assert rows[0]["accuracy"] == "not evaluated" and rows[1]["accuracy"] == "convnet 80.0 +- 0.0 (n=1)"
    assert rows[2]["accuracy"] == "convnet 91.0 +- 1.0 (n=2)"
    assert rows[2]["set file"].endswith(".safetensors") and not rows[2]["set file"].startswith("/")
    assert [r["method"] for r in list_sets(tmp_path, dataset="mnist", profile="cpu")] == ["dc", "dc", "dcc"]
    assert list_sets(tmp_path, profile="paper") == []
    assert main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["profile", "dataset", "method", "ipc", "K_o"] and len(out) == 4
    assert main(["--results", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("dcc: error: no results store")
