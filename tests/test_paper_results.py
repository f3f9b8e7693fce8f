"""The paper's numbers as data: spot checks typed from the paper, and a full cross-check against
the paper's text when ../shared/paper is present (skipped otherwise)."""

import math
import re
from pathlib import Path

import pytest

from dcclib.errors import UserError
from dcclib.lab.paper_results import COLUMNS, paper_table, paper_value

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "dcc-icml2022.md"


def test_spot_checks():
    mean, std = paper_value("table1", "imagenet32-automobile", 10, "dc")
    assert mean == 11.0 and math.isnan(std)  # Table 1 gives no std
    assert paper_value("table1", "imagenet32-fish", 50, "dsac")[0] == 23.3
    assert paper_value("table1", "imagenet32-insect", 50, "random")[0] == 42.7
    assert paper_value("table2", "svhn", 1, "dsac") == (47.5, 2.6)
    assert paper_value("table2", "cifar10", 50, "dcc") == (61.6, 0.4)
    assert paper_value("table2", "cifar100", 10, "kip") == (13.4, 0.2)
    assert paper_value("table2", "cifar10", None, "whole") == (81.6, 0.3)
    assert paper_value("table2", "svhn", 10, "cscore") is None  # "-" in the paper
    assert paper_value("table2", "cifar100", 50, "kip") is None
    assert paper_value("table3", "cifar10", 50, "dc", model="resnet18")[0] == 23.9
    assert paper_value("table3", "cifar10", 50, "dsac", model="vgg11")[0] == 56.0
    assert paper_value("table4", "cifar100", 1, "dcc", warmup="none")[0] == 12.0
    assert paper_value("table4", "cifar10", 50, "dsac", warmup="bilevel")[0] == 64.2
    assert paper_value("table5", "cifar100", 10, "dsac", warmup="inner")[0] == 31.97
    assert paper_value("table5", "cifar100", 1, "dcc", warmup="none")[0] == 11.98
    assert paper_value("dc_dsa_reference", "fashionmnist", 50, "dsa")[0] == 88.7


def test_shapes_and_schema():
    sizes = {
        "table1": 60,
        "table2": 9 * 9 - 3 - 1 + 3,
        "table3": 25,
        "table4": 24,
        "table5": 12,
        "dc_dsa_reference": 18,
    }
    for name, n in sizes.items():
        df = paper_table(name)
        assert list(df.columns) == COLUMNS and len(df) == n, name
        assert df["mean"].between(0, 100).all()
    with pytest.raises(UserError):
        paper_table("table9")


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"(?<![\w.])\d+\.\d+", text)]


def _section(text: str, start: str, stop: str) -> str:
    i = text.index(start)
    return text[i : text.index(stop, i)]


@pytest.mark.skipif(not PAPER.is_file(), reason=f"the paper's text is not at {PAPER}")
def test_every_number_matches_the_paper_text():
    text = PAPER.read_text()
    t1 = _section(text, "Dataset\tImg/cls\tRandom", "(a) DC")
    df = paper_table("table1")
    expected = [v for v in _numbers(t1)]
    ours = [
        df[(df.dataset == d) & (df.ipc == i) & (df.method == m)]["mean"].item()
        for d in dict.fromkeys(df.dataset)
        for i in (10, 50)
        for m in ("random", "dc", "dsa", "dcc", "dsac")
    ]
    assert ours == expected

    t2 = _section(text, "SVHN\t1\t", "For example, the long body")
    df = paper_table("table2")
    found = _numbers(t2.replace("<math>\\pm</math>", " ± "))
    ours = []
    for d in ("svhn", "cifar10", "cifar100"):
        for i in (1, 10, 50):
            for m in ("random", "cscore", "grand", "el2n", "kip", "dc", "dsa", "dcc", "dsac"):
                row = df[(df.dataset == d) & (df.ipc == i) & (df.method == m)]
                ours += [] if row.empty else [row["mean"].item(), row["std"].item()]
            if i == 1:
                whole = df[(df.dataset == d) & (df.method == "whole")]
                ours += [whole["mean"].item(), whole["std"].item()]
    assert ours == found

    t3 = _section(text, "Random\t43.2", "Table 4:")
    df = paper_table("table3")
    ours = [
        df[(df.method == m) & (df.model == n)]["mean"].item()
        for m in ("random", "dc", "dsa", "dcc", "dsac")
        for n in ("convnet", "lenet", "alexnet", "vgg11", "resnet18")
    ]
    assert ours == _numbers(t3)

    t4 = _section(text, "CIFAR-10\tDCC\t✗", "**Ablation Study.**")
    df = paper_table("table4")
    ours = [
        df[(df.dataset == d) & (df.method == m) & (df.warmup == w) & (df.ipc == i)]["mean"].item()
        for d in ("cifar10", "cifar100")
        for m in ("dcc", "dsac")
        for w in ("none", "bilevel")
        for i in (1, 10, 50)
    ]
    assert ours == _numbers(t4)

    t5 = _section(text, "CIFAR-100\tDCC\t1\t", "Figure 7:")
    df = paper_table("table5")
    ours = [
        df[(df.method == m) & (df.ipc == i) & (df.warmup == w)]["mean"].item()
        for m in ("dcc", "dsac")
        for i in (1, 10)
        for w in ("none", "inner", "bilevel")
    ]
    assert ours == _numbers(t5)
