"""Notebook 11's library (dcclib.lab.selection_kip and _view): settings, candidate pools, store keys,
sets made once and reused, cells, the tables and the sets figure, on the embedded digits."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from tiny import tiny_dataset

from dcclib.analyses import selection
from dcclib.errors import UserError
from dcclib.evaluate import random_subset
from dcclib.lab import selection_kip as sk
from dcclib.lab.experiments import Lab
from dcclib.lab.paper_results import paper_value
from dcclib.lab.profiles import get_profile
from dcclib.lab.selection_kip_view import kip_row, kip_table, sets_figure, with_notes
from dcclib.lab.store import NotStoredError, config_key

matplotlib.use("Agg")

# smoke's name (embedded-mnist stands in), one run of one network trained for one epoch
TINY = replace(get_profile("smoke"), num_runs=1, num_nets=1, eval_epochs=1)
PLAN = {"datasets": ["cifar10"], "ipcs": [1], "methods": list(sk.METHODS)}


def _lab(tmp: Path, **kw) -> Lab:
    return Lab(
        "11_test",
        TINY,
        device="cpu",
        results_dir=str(tmp / "r"),
        output_dir=str(tmp / "o"),
        threads=torch.get_num_threads(),
        **kw,
    )


def _settings(lab: Lab, **kw) -> sk.Settings:
    given = dict(
        model="mlp",
        pool_per_class={"smoke": 5},
        score_model="mlp",
        score_nets=1,
        score_epoch=0,
        score_cache=None,
        cscore_dir=None,
        cscore_align="auto",
        kip_steps={"smoke": 2, "paper": 9},
        kip_target_batch=20,
        kip_kernel="ntk",
        kip_depth=1,
        kip_lr=0.01,
        kip_reg=1e-6,
        kip_learn_labels=False,
    )
    return sk.settings_for(lab, **{**given, **kw})


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Every cell of the smoke plan computed once in a fresh store, then the same again."""
    tmp = tmp_path_factory.mktemp("sk")
    lab = _lab(tmp, seed=3)
    study = sk.SelectionKIP.load(lab, _settings(lab), PLAN["datasets"])
    cells, why_not = study.cells(PLAN)
    first_log = list(lab.log)
    again = study.cells(PLAN)[0]
    return lab, study, cells, why_not, first_log, again


def test_per_profile_takes_the_running_profiles_value():
    assert sk.per_profile({"smoke": 2, "cpu": 5}, "cpu") == 5
    assert sk.per_profile({"smoke": 2}, "paper") is None
    assert sk.per_profile("convnet", "quick") == "convnet"


def test_settings_resolve_each_parameter_for_the_profile(tmp_path):
    lab = _lab(tmp_path, seed=4)
    s = _settings(lab)
    assert (s.eval_model, s.pool, s.kip_steps, s.kip_target_batch, s.seed) == ("mlp", 5, 2, 20, 4)
    assert s.score == selection.ScoreConfig(model="mlp", num_nets=1, epoch=0, seed=4)
    assert s.cache_dir == lab.store.root.parent / ".cache" / "selection-scores"
    assert _settings(lab, score_cache=str(tmp_path / "c")).cache_dir == tmp_path / "c"
    k = s.kip_config(ipc=2, run=3)
    assert (k.ipc, k.steps, k.target_batch, k.seed, k.kernel, k.reg) == (2, 2, 20, 7, s.kernel, 1e-6)
    assert s.lines()[:2] == ["evaluation network: mlp", "candidates: the first 5 training images per class"]
    assert s.lines()[3] == (
        "KIP: KernelConfig(kind='ntk', depth=1, w_var=2.0, b_var=0.01), steps 2, "
        "target batch 20, lr 0.01, reg 1e-06, learn labels False"
    )
    assert _settings(lab, pool_per_class={"cpu": 9}).lines()[1] == "candidates: all training images"


def test_candidates_are_the_first_images_per_class_under_their_own_name(tmp_path):
    lab = _lab(tmp_path)
    use, data = sk.candidates(lab, "cifar10", 5)
    full = lab.data("embedded-mnist")
    assert (use.paper, use.name, use.available) == ("cifar10", "embedded-mnist-pool5", True)
    assert use.detail.endswith("first 5 training images per class") and data.name == "embedded-mnist"
    assert data.class_counts.tolist() == [5] * 10
    torch.testing.assert_close(data.train_images, full.train_images[selection.pool_indices(full, 5)])
    use, data = sk.candidates(lab, "cifar10", None)
    assert use == lab.use("cifar10") and data is full
    missing = _lab(tmp_path, stand_in=None, data_root=str(tmp_path / "none"))
    use, data = sk.candidates(missing, "cifar10", 5)
    assert data is None and not use.available and use.name == "cifar10"


def test_set_configs_key_what_each_set_depends_on(tmp_path):
    lab = _lab(tmp_path, seed=2)
    study = sk.SelectionKIP.load(lab, _settings(lab, pool_per_class=None), ["cifar10"])
    use = lab.use("cifar10")
    assert study.set_config("cifar10", "random", 1, 1) == lab.set_config(use, "random", 1, 1)  # notebook 04's
    grand = study.set_config("cifar10", "grand", 1, 1)
    assert (grand["run"], grand["keep"], grand["kind"]) == (0, "lowest", "select")  # one coreset for all runs
    assert grand["scores"]["model"] == "mlp" and grand != study.set_config("cifar10", "el2n", 1, 1)
    cscore = study.set_config("cifar10", "cscore", 1, 0)
    assert cscore["cscores"] == {"file": "embeddedmnist-cscores-orig-order.npz", "align": "auto"}
    assert cscore["keep"] == "highest"
    kip = study.set_config("cifar10", "kip", 1, 1)
    assert kip["kind"] == "kip" and kip["config"]["seed"] == 3 and kip["config"]["steps"] == 2
    assert config_key(kip) != config_key(study.set_config("cifar10", "kip", 1, 0))
    with pytest.raises(UserError, match="unknown method 'dcc'; choose from random, cscore"):
        study.set_config("cifar10", "dcc", 1, 0)


def test_every_cell_is_computed_once_then_read_from_the_store(ran):
    lab, study, cells, why_not, first_log, again = ran
    assert [(c.method, c.runs, len(c.accuracies)) for c in cells] == [
        ("random", 1, 1),
        ("cscore", 0, 0),
        ("grand", 1, 1),
        ("el2n", 1, 1),
        ("kip", 1, 1),
    ]
    assert [c.accuracies for c in again] == [c.accuracies for c in cells]
    assert sum(line.startswith("computed set") for line in first_log) == 4
    assert sum(line.startswith("computed evaluation") for line in first_log) == 4
    assert sum(line.startswith("computed GraNd/EL2N") for line in first_log) == 1  # both from one scoring
    assert sum(line.startswith("reused  evaluation") for line in lab.log[len(first_log) :]) == 4
    assert why_not == {("cifar10", "cscore", 1): why_not[("cifar10", "cscore", 1)]}
    assert why_not[("cifar10", "cscore", 1)].startswith("no C-scores for embedded-mnist")


def test_stored_sets_are_the_sets_each_method_makes(ran):
    lab, study, *_ = ran
    data = study.data["cifar10"]
    x, y, record = study.stored_set("cifar10", "random", 1, 0)
    rx, ry = random_subset(data, 1, lab.seed)
    torch.testing.assert_close((x, y), (rx, ry))
    scores = study.scores("cifar10")
    assert scores.path.parent == study.settings.cache_dir and scores.path.is_file()
    for method in ("grand", "el2n"):
        x, y, record = study.stored_set("cifar10", method, 1, 0)
        _, _, idx = selection.select_coreset(data, scores.get(method), 1, "lowest")
        assert record["result"]["indices"] == idx.tolist()
        torch.testing.assert_close(x, data.train_images[idx])
    x, y, record = study.stored_set("cifar10", "kip", 1, 0)
    assert x.shape == (10, 1, 28, 28) and y.tolist() == list(range(10))
    assert 0 <= record["result"]["krr_accuracy"] <= 1 and len(record["result"]["losses"]) == 2


def test_no_data_and_nothing_stored_leaves_a_cell_empty(tmp_path):
    lab = _lab(tmp_path, stand_in=None, data_root=str(tmp_path / "none"))
    study = sk.SelectionKIP.load(lab, _settings(lab), ["cifar10"])
    cell = study.cell("cifar10", "grand", 1)
    assert (cell.runs, cell.accuracies, cell.use.available) == (0, [], False)
    assert study.shown_sets("cifar10", 1, ["grand"]) == []
    with pytest.raises(UserError, match="no data to make a set from"):
        study.make_set("cifar10", "random", 1, 0)


def test_cscores_are_read_restricted_to_the_pool_and_keep_the_highest(tmp_path):
    lab = _lab(tmp_path)
    data = tiny_dataset(num_classes=3, per_class=6, size=8, name="cifar10")
    lab.add_dataset(data)
    scores = np.random.default_rng(0).random(len(data.train_labels)).astype(np.float32)
    np.savez(tmp_path / "cifar10-cscores-orig-order.npz", scores=scores, labels=data.train_labels.numpy())
    study = sk.SelectionKIP.load(lab, _settings(lab, pool_per_class=4, cscore_dir=str(tmp_path)), ["cifar10"])
    pooled = study.cscores("cifar10")
    torch.testing.assert_close(pooled, torch.from_numpy(scores)[selection.pool_indices(data, 4)])
    x, y, result = study.make_set("cifar10", "cscore", 1, 0)
    best = [int(pooled[study.data["cifar10"].train_labels == c].argmax()) for c in range(3)]
    assert result["indices"] == [c * 4 + b for c, b in enumerate(best)]
    assert result["scores"] == [float(pooled[i]) for i in result["indices"]]


def test_tables_note_why_a_cell_is_empty_and_show_the_papers_convnet(ran):
    lab, study, cells, why_not, *_ = ran
    table = with_notes(lab.compare(cells), cells, why_not, "mlp")
    row = table[table["method"] == "C-score"].iloc[0]
    assert row["note"].startswith("no C-scores for embedded-mnist")
    grand = table[table["method"] == "GraNd"].iloc[0]
    assert (grand["paper"], grand["paper std"]) == paper_value("table2", "cifar10", 1, "grand", "convnet")
    assert math.isnan(grand["difference"]) and grand["note"].endswith("paper: ConvNet, ours: mlp")
    plain = with_notes(lab.compare(cells), cells, {}, "convnet")
    assert "paper: ConvNet" not in " ".join(map(str, plain["note"]))


def test_kip_table_has_one_row_per_stored_run(ran):
    lab, study, cells, *_ = ran
    frame = kip_table(study, PLAN, cells)
    assert len(frame) == 1 and frame.loc[0, "run"] == 0 and frame.loc[0, "data used"].startswith("embedded")
    kip_cell = next(c for c in cells if c.method == "kip")
    assert frame.loc[0, "mlp test accuracy (%)"] == f"{kip_cell.accuracies[0]:.1f}"
    assert kip_table(study, {**PLAN, "methods": ["random"]}, cells).empty
    record = {"result": {"krr_accuracy": 0.25, "losses": [[0, 1.5], [10, 0.123456]]}}
    assert kip_row(record, [50.0, 61.0], "convnet") == {
        "KRR test accuracy (%)": "25.0",
        "convnet test accuracy (%)": "55.5",
        "KIP loss, first step": "1.5000",
        "KIP loss, last step": "0.1235",
    }


def test_the_sets_figure_shows_one_image_per_class_of_each_stored_set(ran):
    lab, study, *_ = ran
    shown = study.shown_sets("cifar10", 1, list(sk.METHODS))
    assert [m for m, _ in shown] == ["random", "grand", "el2n", "kip"]
    assert all(images.shape == (10, 1, 28, 28) for _, images in shown)
    two, _, _ = study.stored_set("cifar10", "random", 2, 0)  # class-blocked: two images per class
    ((_, first),) = study.shown_sets("cifar10", 2, ["random", "grand"])  # grand at ipc 2: not stored
    torch.testing.assert_close(first, two[::2])
    fig = sets_figure(shown, study.data["cifar10"], "the sets")
    assert len(fig.axes) == 4 and fig._suptitle.get_text() == "the sets"
    assert [ax.get_title() for ax in fig.axes] == ["random", "grand", "el2n", "kip"]


def test_render_only_stops_at_a_missing_result_instead_of_computing(tmp_path, monkeypatch):
    lab = _lab(tmp_path)
    study = sk.SelectionKIP.load(lab, _settings(lab), ["cifar10"])
    monkeypatch.setenv("DCC_RENDER_ONLY", "1")
    with pytest.raises(NotStoredError, match="the evaluation of random"):
        study.cells({**PLAN, "methods": ["random"]})
    with pytest.raises(NotStoredError, match="the kip set"):
        study.stored_set("cifar10", "kip", 1, 0)
