"""One home for a method's properties (dcclib.methods), and the protocol's SGD (dcclib.protocol).

Every module asks `dcclib.methods`: the facts themselves, that an unknown method is a one-line
UserError everywhere (before any training), and that flipping a fact in the record changes
what evaluation and condensation do (so no copy of it is written out elsewhere).
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny import tiny_dataset

from dcclib import batched, evaluate, methods
from dcclib.analyses import continual
from dcclib.analyses.alignment import FeatureNetConfig
from dcclib.analyses.continual import ContinualConfig
from dcclib.analyses.selection import ScoreConfig
from dcclib.condense import CondenseConfig, uses_classwise_loss
from dcclib.errors import UserError
from dcclib.evaluate import EvalConfig, evaluate_set, protocol_defaults
from dcclib.lab.cells import DataUse
from dcclib.lab.experiments import Lab
from dcclib.lab.paper_results import paper_table
from dcclib.methods import (
    CONDENSATION_METHODS,
    CONTRASTIVE_METHODS,
    LABELS,
    METHODS,
    condensation_method,
    get_method,
)
from dcclib.protocol import PROTOCOL, lr_drop_epoch

ROOT = Path(__file__).resolve().parents[1]
NON_DSA_CASES = [  # (dataset, model, the protocol's rule for a method that fixes no augmentation)
    ("cifar10", "convnet", (300, "none")),
    ("svhn", "lenet", (300, "none")),
    ("mnist", "convnet", (1000, "dc")),
    ("embedded-mnist", "resnet18", (1000, "dc")),
    ("cifar10", "convnet_bn", (1000, "dc_noise")),
    ("mnist", "convnet_bn", (1000, "dc_noise")),
]


# ---------------------------------------------------------------------------------------------
# the facts
# ---------------------------------------------------------------------------------------------
def test_the_facts_of_the_paper():
    assert CONDENSATION_METHODS == ("dc", "dsa", "dcc", "dsac")
    assert {m for m in METHODS if METHODS[m].uses_dsa} == {"dsa", "dsac"}
    assert set(CONTRASTIVE_METHODS) == {m for m in METHODS if METHODS[m].contrastive} == {"dcc", "dsac"}
    assert LABELS == {
        "random": "Random", "cscore": "C-score", "grand": "GraNd", "el2n": "EL2N", "kip": "KIP",
        "dc": "DC", "dsa": "DSA", "dcc": "DCC", "dsac": "DSAC", "whole": "Whole dataset",
    }  # fmt: skip
    assert {m for m in METHODS if METHODS[m].eval_augment == "dsa"} == {"dsa", "dsac"}
    assert all(METHODS[m].eval_augment is None for m in METHODS if not METHODS[m].uses_dsa)


def test_an_unknown_method_is_a_one_line_user_error():
    everything = r"random, cscore, grand, el2n, kip, dc, dsa, dcc, dsac, whole$"
    with pytest.raises(UserError, match=r"^unknown method 'nosuch'; choose one of: " + everything):
        get_method("nosuch")
    with pytest.raises(UserError, match=r"^unknown method 'random'; choose one of: dc, dsa, dcc, dsac$"):
        condensation_method("random")
    assert get_method("dsac", ("dc", "dsac")) is METHODS["dsac"]


def test_evaluate_set_rejects_an_unknown_method_before_training(monkeypatch):
    def no_training(*_args: object, **_kw: object) -> None:
        raise AssertionError("trained a network for an unknown method")

    for name in ("_train_one", "_train_group", "train_from_scratch"):
        monkeypatch.setattr(evaluate, name, no_training)
    monkeypatch.setattr(batched, "train_stacked", no_training)
    data = tiny_dataset(per_class=4)
    x, y = data.train_images[:6], data.train_labels[:6]
    with pytest.raises(UserError) as info:
        evaluate_set(x, y, data, "nosuch", EvalConfig(models=("mlp",), num_nets=1, epochs=1))
    message = str(info.value)
    assert message.startswith("unknown method 'nosuch'; choose one of: random, ") and "\n" not in message
    with pytest.raises(UserError, match="unknown method"):
        protocol_defaults("nosuch", "cifar10", "convnet")


def test_condense_config_rejects_an_unknown_method():
    msg = r"^unknown method 'nosuch'; choose one of: dc, dsa, dcc, dsac$"
    with pytest.raises(UserError, match=msg):
        CondenseConfig(method="nosuch").resolved()
    with pytest.raises(UserError, match="unknown method 'random'"):
        CondenseConfig(method="random").resolved()  # a method, but not one Algorithm 1 runs
    for m in CONDENSATION_METHODS:
        cfg = CondenseConfig(method=m)
        assert (cfg.uses_dsa, cfg.contrastive) == (METHODS[m].uses_dsa, METHODS[m].contrastive)


def test_the_lab_rejects_an_unknown_method(tmp_path):
    lab = Lab(
        "99_test",
        "smoke",
        device="cpu",
        results_dir=str(tmp_path / "r"),
        output_dir=str(tmp_path / "o"),
        threads=torch.get_num_threads(),
    )
    use = DataUse("mnist", "mnist", False, "not loaded in this test")
    for bad in ("nosuch", "kip"):  # kip is a method, but not one a Lab set can be
        msg = rf"^unknown method '{bad}'; choose one of: random, dc, dsa, dcc, dsac$"
        with pytest.raises(UserError, match=msg):
            lab.set_config(use, bad, 10, 0)
    assert lab.set_config(use, "dsac", 10, 0)["kind"] == "condense"
    assert lab.set_config(use, "random", 10, 0)["kind"] == "select"


# ---------------------------------------------------------------------------------------------
# the evaluation protocol per method
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dsa", "dsac"])
@pytest.mark.parametrize("dataset, model, _rule", NON_DSA_CASES)
def test_dsa_sets_train_with_dsa_for_1000_epochs(method, dataset, model, _rule):
    assert protocol_defaults(method, dataset, model) == (1000, "dsa")


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("dsa", "dsac")])
@pytest.mark.parametrize("dataset, model, rule", NON_DSA_CASES)
def test_other_sets_follow_the_dataset_and_model_rule(method, dataset, model, rule):
    assert protocol_defaults(method, dataset, model) == rule


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("dataset, model, rule", NON_DSA_CASES)
def test_the_protocol_augmentation_is_the_methods_or_the_rule(method, dataset, model, rule):
    epochs, augment = protocol_defaults(method, dataset, model)
    assert augment == (get_method(method).eval_augment or rule[1])
    assert epochs == (300 if augment == "none" else 1000)


# ---------------------------------------------------------------------------------------------
# flipping a fact in the record changes what the code does: nothing else holds a copy
# ---------------------------------------------------------------------------------------------
def test_evaluation_and_condensation_follow_a_flipped_dsa_fact(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "dc", replace(METHODS["dc"], uses_dsa=True))
    monkeypatch.setitem(methods.METHODS, "dsa", replace(METHODS["dsa"], uses_dsa=False))
    assert protocol_defaults("dc", "cifar10", "convnet") == (1000, "dsa")
    assert protocol_defaults("dsa", "cifar10", "convnet") == (300, "none")
    assert CondenseConfig(method="dc").uses_dsa and not CondenseConfig(method="dsa").uses_dsa


def test_the_warm_up_rule_follows_a_flipped_contrastive_fact(monkeypatch):
    cfg = CondenseConfig(method="dc", warmup="none")
    assert uses_classwise_loss(cfg, 999, 9)  # DC: always class-wise
    monkeypatch.setitem(methods.METHODS, "dc", replace(METHODS["dc"], contrastive=True))
    assert cfg.contrastive and not uses_classwise_loss(cfg, 999, 9)


def test_the_paper_tables_use_the_methods_labels():
    df = paper_table("table2")
    assert all(df["method_label"] == df["method"].map(LABELS))
    warm = df.drop_duplicates("method").set_index("method")["warmup"]
    assert {m for m, w in warm.items() if w != "-"} == set(CONTRASTIVE_METHODS) & set(warm.index)


def test_continual_memories_are_the_dsa_condensation_methods():
    assert continual.METHODS == ("ring", "dsa", "dsac", "none")  # its own vocabulary, unchanged
    assert [m for m in continual.METHODS if continual.condenses(m)] == ["dsa", "dsac"]


def test_no_module_writes_out_a_list_of_method_names():
    """No tuple/list/set/dict-keys literal of condensation methods outside dcclib/methods.py
    (the paper's number tables are text blocks; selection's score kinds are another vocabulary)."""
    hits = []
    for path in sorted((ROOT / "dcclib").rglob("*.py")):
        if path.name == "methods.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) or len(items) < 2:
                continue
            values = [k.value if isinstance(k, ast.Constant) else None for k in items]
            if all(v in CONDENSATION_METHODS for v in values):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hits == []


# ---------------------------------------------------------------------------------------------
# the protocol's SGD: one record, every config takes its defaults from it
# ---------------------------------------------------------------------------------------------
def test_the_protocol_settings_have_one_home():
    protocol = (PROTOCOL.lr, PROTOCOL.momentum, PROTOCOL.weight_decay, PROTOCOL.batch_size)
    assert protocol == (0.01, 0.9, 5e-4, 256)
    assert [lr_drop_epoch(e) for e in (0, 1, 6, 300, 1000)] == [1, 1, 4, 151, 501]
    sgd = ("lr", "momentum", "weight_decay")
    full = (*sgd, "batch_size")
    for cfg, keys in (
        (EvalConfig(), full),
        (batched.TrainSettings(3), full),
        (FeatureNetConfig(), full),
        (ContinualConfig(), sgd),
        (ScoreConfig(), sgd),
    ):
        assert {k: getattr(cfg, k) for k in keys} == {k: getattr(PROTOCOL, k) for k in keys}, cfg
    # deliberate differences: ER's and GraNd/EL2N's batches
    assert ContinualConfig().batch_size == ScoreConfig().batch_size == 128
