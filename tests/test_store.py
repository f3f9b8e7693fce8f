"""The results store: a result is reused only for exactly its config; writes are atomic."""

import json
from dataclasses import asdict, replace

import pytest
import torch
from tiny import tiny_dataset

from dcclib.condense import CondenseConfig
from dcclib.errors import UserError
from dcclib.evaluate import EvalConfig
from dcclib.lab import experiments, store, views
from dcclib.lab.experiments import Lab
from dcclib.lab.profiles import Profile
from dcclib.lab.store import ResultStore, config_key


def _config(**changes):
    cfg = {
        "kind": "condense",
        "profile": "smoke",
        "run": 0,
        "dcclib": "0.1.0",
        "dataset": {"name": "tiny", "source": "mem", "train": [36, 3, 16, 16], "fingerprint": "ab"},
        "config": asdict(CondenseConfig(dataset="tiny", ipc=1)),
        "eval": asdict(EvalConfig()),
    }
    for k, v in changes.items():
        section, _, field = k.partition("__")
        if field:
            cfg[section] = {**cfg[section], field: v}
        else:
            cfg[section] = v
    return cfg


def test_roundtrip_and_key_is_order_independent(tmp_path):
    s = ResultStore(tmp_path)
    cfg = _config()
    images, labels = torch.randn(3, 3, 16, 16), torch.arange(3)
    rec = s.put(
        cfg,
        {"accuracies": [0.5]},
        images,
        labels,
        {"dataset": "tiny", "class_names": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3},
    )
    got = s.get(dict(reversed(list(cfg.items()))))
    assert got == rec and got["result"] == {"accuracies": [0.5]}
    x, y, _ = s.load_set(cfg, got)
    assert torch.equal(x, images) and torch.equal(y, labels)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no leftovers


@pytest.mark.parametrize(
    "change",
    [
        {"config__lr_images": 0.2},
        {"config__outer_iterations": 5},
        {"config__warmup": "none"},
        {"eval__epochs": 7},
        {"eval__num_nets": 3},
        {"run": 1},
        {"dcclib": "0.2.0"},
        {"dataset__source": "other"},
        {"dataset__fingerprint": "cd"},
        {"profile": "quick"},
    ],
)
def test_a_changed_config_never_reuses_a_stored_result(tmp_path, change):
    s = ResultStore(tmp_path)
    s.put(_config(), {"accuracies": [0.5]})
    assert s.get(_config()) is not None
    assert config_key(_config(**change)) != config_key(_config())
    assert s.get(_config(**change)) is None


def test_an_edited_record_is_not_trusted(tmp_path):
    s = ResultStore(tmp_path)
    cfg = _config()
    s.put(cfg, {"accuracies": [0.5]})
    path = s.path(cfg)
    rec = json.loads(path.read_text())
    rec["config"]["config"]["lr_images"] = 0.3  # stored config no longer matches its key
    path.write_text(json.dumps(rec))
    assert s.get(cfg) is None
    path.write_text("{ torn")
    assert s.get(cfg) is None


def test_large_sets_are_not_stored_and_requests_find_other_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_TENSOR_BYTES", 100)
    s = ResultStore(tmp_path)
    cfg = _config()
    rec = s.put(cfg, {}, torch.randn(3, 3, 16, 16), torch.arange(3), {})
    assert rec["tensors"] is None and s.load_set(cfg, rec) is None
    # a machine without the data knows only the dataset's name
    assert [r["key"] for r in s.find_requested(_config(dataset={"name": "tiny"}))] == [rec["key"]]
    assert s.find_requested(_config(dataset={"name": "tiny"}, run=1)) == []
    with pytest.raises(UserError):
        s.path({"kind": "x"})


def _tiny_profile(**changes) -> Profile:
    base = Profile(
        "smoke",
        outer_iterations=2,
        max_inner_iterations=2,
        max_net_epochs=1,
        batch_real=4,
        num_runs=1,
        num_nets=1,
        eval_epochs=2,
        default_dataset="tiny",
        device="cpu",
    )
    return replace(base, **changes)


def _lab(tmp_path, data, **profile_changes) -> Lab:
    lab = Lab(
        "99_test",
        profile=_tiny_profile(**profile_changes),
        results_dir=tmp_path / "results",
        output_dir=tmp_path / "out",
        threads=1,
    )
    lab.add_dataset(data)
    return lab


def test_lab_reuses_results_and_recomputes_after_any_change(tmp_path, monkeypatch):
    data = tiny_dataset()
    first = _lab(tmp_path, data).cell("table2", "tiny", "dcc", 1)
    assert len(first.accuracies) == 1 and first.use.available
    assert (tmp_path / "results" / "smoke" / "tiny").is_dir()

    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed although the store holds this result")

    monkeypatch.setattr(experiments, "condense", forbidden)
    monkeypatch.setattr(experiments, "evaluate_set", forbidden)
    lab = _lab(tmp_path, data)
    again = lab.cell("table2", "tiny", "dcc", 1)
    assert again.accuracies == first.accuracies and all(line.startswith("reused") for line in lab.log)

    for changed in (
        lambda: _lab(tmp_path, data).cell("table2", "tiny", "dcc", 1, lr_images=0.2),
        lambda: _lab(tmp_path, data, eval_epochs=3).cell("table2", "tiny", "dcc", 1),
        lambda: _lab(tmp_path, data, outer_iterations=3).cell("table2", "tiny", "dcc", 1),
        lambda: _lab(tmp_path, tiny_dataset(seed=1)).cell("table2", "tiny", "dcc", 1),
    ):
        with pytest.raises(AssertionError, match="recomputed"):
            changed()


def test_comparison_labels_stand_ins_and_leaves_their_difference_empty(tmp_path):
    lab = _lab(tmp_path, tiny_dataset())
    lab.stand_in = "tiny"
    cell = lab.cell("table2", "cifar10", "random", 1)
    row = lab.compare([cell]).iloc[0]
    assert row["data used"] == "tiny (stand-in for CIFAR-10)" and row["dataset"] == "CIFAR-10"
    assert row["paper"] == 14.4 and row["difference"] != row["difference"]  # NaN
    assert "stand-in" in row["note"]
    shown = views.rounded(lab.compare([cell])).iloc[0]
    assert shown["difference"] == "-" and shown["paper"] == "14.4"


def test_a_machine_without_the_data_shows_what_another_stored(tmp_path):
    first = _lab(tmp_path, tiny_dataset()).cell("table2", "tiny", "random", 1)
    laptop = Lab(
        "99_test",
        profile=_tiny_profile(),
        results_dir=tmp_path / "results",
        output_dir=tmp_path / "out",
        stand_in=None,
        data_root=tmp_path / "no-data",
        threads=1,
    )
    cell = laptop.cell("table2", "tiny", "random", 1)
    assert not cell.use.available and cell.accuracies == first.accuracies
    assert "from the results store" in cell.source
    assert laptop.cell("table2", "tiny", "random", 1, model="lenet").accuracies == []  # never computed


def test_paper_markers_only_where_comparable():
    import matplotlib

    matplotlib.use("Agg")
    rows = [
        {
            "profile": "quick",
            "dataset": "CIFAR-10",
            "data used": "CIFAR-10 [cifar10-jpeg]",
            "ipc": ipc,
            "method": m,
            "ours": 30.0,
            "paper": 40.0,
            "difference": -10.0 if m != "DSA" else float("nan"),
        }
        for ipc in (1, 10)
        for m in ("DC", "DSA", "DCC")
    ]
    import pandas as pd

    fig = views.plot_comparison(pd.DataFrame(rows))
    from matplotlib.container import ErrorbarContainer

    diamonds = [
        c.lines[0]
        for c in fig.axes[0].containers
        if isinstance(c, ErrorbarContainer) and c.lines[0] is not None and c.lines[0].get_marker() == "D"
    ]
    ys = [float(y) for line in diamonds for y in line.get_ydata()]
    assert len(ys) == 4 and all(y == 40.0 for y in ys)


def test_a_key_is_written_once_and_a_set_it_lacked_is_added(tmp_path, monkeypatch):
    s = ResultStore(tmp_path)
    cfg = _config()
    first = s.put(cfg, {"accuracies": [0.5]})
    assert s.put(cfg, {"accuracies": [0.9]}) == first  # idempotent: the first complete result stays
    assert s.get(cfg)["result"] == {"accuracies": [0.5]}
    monkeypatch.setattr(store, "MAX_TENSOR_BYTES", 100)
    big = torch.randn(3, 3, 16, 16), torch.arange(3)
    meta = {"dataset": "tiny", "class_names": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3}
    cfg2 = _config(run=2)
    assert s.put(cfg2, {"n": 1}, *big, meta)["tensors"] is None  # too large for the default limit
    monkeypatch.setenv(store.TENSOR_LIMIT_ENV, "0")  # a sweep stores every set
    record = s.put(cfg2, {"n": 2}, *big, meta)
    assert record["tensors"] and s.get(cfg2) == record and torch.equal(s.load_set(cfg2, record)[0], big[0])


def test_older_algorithm_versions_are_reused_only_when_allowed_and_marked(tmp_path):
    old, new = _config(algorithm="2026.01-1"), _config(algorithm="2026.11-1")
    del old["dcclib"], new["dcclib"]
    ResultStore(tmp_path).put(old, {"accuracies": [0.5]})
    assert ResultStore(tmp_path, allow_stale=False).get(new) is None
    s = ResultStore(tmp_path, allow_stale=True)
    got = s.get(new)
    assert got["result"] == {"accuracies": [0.5]} and got["stale"] == "algorithm 2026.01-1"
    assert s.stale_hits == [{"key": got["key"], "kind": "condense", "version": "algorithm 2026.01-1"}]
    assert s.get(_config(algorithm="2026.11-1", run=1)) is None  # any other change: still a miss
    assert s.get(old).get("stale") is None  # its own version: not stale
    hits = s.find_requested({**new, "dataset": {"name": "tiny"}})
    assert [h["stale"] for h in hits] == ["algorithm 2026.01-1"]


def test_render_only_computes_nothing_and_names_what_is_missing(tmp_path, monkeypatch):
    data = tiny_dataset()
    first = _lab(tmp_path, data).cell("table2", "tiny", "random", 1)  # stored while computing is allowed
    monkeypatch.setenv(store.RENDER_ONLY_ENV, "1")
    assert _lab(tmp_path, data).cell("table2", "tiny", "random", 1).accuracies == first.accuracies
    with pytest.raises(
        store.NotStoredError, match="the dc set .* not in the results store .* forbids computing"
    ):
        _lab(tmp_path, data).synthetic_set("tiny", "dc", 1)  # the set is not stored
    with pytest.raises(store.NotStoredError, match="the evaluation of random"):
        _lab(tmp_path, data).cell("table2", "tiny", "random", 1, model="lenet")
    assert not list((tmp_path / "results").rglob("condense-*.json"))  # nothing was computed
