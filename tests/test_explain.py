"""The notebooks' method cells (dcclib.analyses.explain) and their Reading sentences
(dcclib.lab.reading): exact statements, checked on tiny generated data."""

import math

import pandas as pd
import pytest
from tiny import tiny_dataset

from dcclib.analyses.explain import coupling, protocol_summary, warmup_schedule
from dcclib.condense import CondenseConfig
from dcclib.lab.reading import ordering_lines


def test_dc_sees_its_own_class_only_and_dcc_sees_the_others():
    rows = {r["method"]: r for r in coupling(tiny_dataset(num_classes=3, per_class=8), per_class=4)}
    assert rows["DC"]["change when other classes are redrawn"] == 0.0  # exactly: class-wise
    assert rows["DCC"]["change when other classes are redrawn"] > 1e-3  # the contrastive signal
    assert all(math.isfinite(r["loss"]) and r["|dL/dS| of class 0"] > 0 for r in rows.values())


@pytest.mark.parametrize(
    ("method", "warmup", "ipc", "classwise"),
    [
        ("dcc", "bilevel", 1, 250 * 10),  # the first gamma_o = 250 networks, all K_i = 10 updates
        ("dcc", "bilevel", 50, 250 * 10),  # K_i = 50: only the first gamma_i = 10 updates
        ("dcc", "none", 10, 0),
        ("dcc", "inner", 1, 1000 * 5),  # Simple: min(gamma_i, K_i // 2) = 5 on every network
        ("dc", "bilevel", 1, 1000 * 10),  # DC is class-wise everywhere
    ],
)
def test_warmup_schedule_counts_the_classwise_updates(method, warmup, ipc, classwise):
    s = warmup_schedule(CondenseConfig(method=method, ipc=ipc, warmup=warmup))
    k_i = {1: 10, 10: 10, 50: 50}[ipc]
    assert s.shape == (1000, k_i) and int(s.sum()) == classwise


def test_protocol_summary_states_the_spec():
    mnist = protocol_summary("dc", "mnist")
    assert (mnist["E (training passes: E + 1)"], mnist["augmentation"]) == (1000, "dc")
    cifar = protocol_summary("dcc", "cifar10")
    assert (cifar["E (training passes: E + 1)"], cifar["augmentation"]) == (300, "none")
    assert protocol_summary("dsac", "cifar10")["augmentation"] == "dsa"
    assert (cifar["lr"], cifar["momentum"], cifar["weight_decay"], cifar["batch_size"]) == (
        0.01,
        0.9,
        5e-4,
        256,
    )
    assert "after pass 151" in cifar["lr drop"]


def test_ordering_lines_state_orders_and_gains():
    rows = [("DC", 90.0, 91.7), ("DCC", 92.0, math.nan), ("Random", 70.0, math.nan), ("DSA", 88.0, 88.7)]
    table = pd.DataFrame(
        [
            {
                "dataset": "MNIST",
                "data used": "MNIST [x]",
                "ipc": 1,
                "method": m,
                "ours": o,
                "paper": p,
                "runs": 1,
                "n": 3,
            }
            for m, o, p in rows
        ]
    )
    lines = ordering_lines(table)
    assert lines[0] == "MNIST, MNIST [x], 1 (1 run(s) x 3 networks):"
    assert lines[1] == "  ours:  DCC 92.0 > DC 90.0 > DSA 88.0 > Random 70.0"
    assert lines[2] == "  paper: DC 91.7 > DSA 88.7"
    assert lines[3] == "  DCC - DC: +2.0 points"  # no paper number for DCC here: no paper gain
    empty = table.assign(ours=math.nan)
    assert ordering_lines(empty) == ["MNIST, MNIST [x], 1: not run here."]
