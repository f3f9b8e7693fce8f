"""The paper's reported numbers (Tables 1-5) and the DC/DSA reference table of the spec, as data.

Transcribed by hand from ``paper/dcc-icml2022.md`` (Lee et al., ICML 2022); the text blocks below
keep the paper's row/column layout so that a reader can check them against the PDF line by line.
These are the only paper numbers in the project: notebooks import them and never type one.

Every table is returned as a tidy DataFrame with the columns of ``COLUMNS``:
table, dataset (dcclib name), dataset_label (as the paper writes it), ipc, method (dcclib code),
method_label, model (dcclib name), warmup (bilevel | none | inner | "-" where it does not apply),
mean and std (percent; std is NaN where the paper gives none).
"""

from __future__ import annotations

import math
from functools import cache

import pandas as pd

from dcclib.errors import UserError
from dcclib.methods import CONTRASTIVE_METHODS, LABELS

COLUMNS = [
    "table",
    "dataset",
    "dataset_label",
    "ipc",
    "method",
    "method_label",
    "model",
    "warmup",
    "mean",
    "std",
]

DATASET_LABELS = {
    "svhn": "SVHN",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "embedded-mnist": "embedded MNIST",
    "imagenet32-automobile": "Automobile",
    "imagenet32-terrier": "Terrier",
    "imagenet32-fish": "Fish",
    "imagenet32-lizard": "Lizard",
    "imagenet32-truck": "Truck",
    "imagenet32-insect": "Insect",
}
MODEL_LABELS = {
    "convnet": "ConvNet",
    "lenet": "LeNet",
    "alexnet": "AlexNet",
    "vgg11": "VGG",
    "resnet18": "ResNet",
}
WARMUP_LABELS = {"none": "None", "inner": "Simple", "bilevel": "Proposed", "-": "-"}

# --------------------------------------------------------------------------------------------
# Table 1: fine-grained ImageNet32 subsets, ConvNet, mean over 100 runs (no std in the paper).
# --------------------------------------------------------------------------------------------
_TABLE1 = """
dataset                ipc  random  dc    dsa   dcc   dsac
imagenet32-automobile  10   12.2    11.0  19.1  18.6  22.1
imagenet32-automobile  50   19.5    16.8  24.1  28.3  29.2
imagenet32-terrier     10   5.6     4.6   5.1   6.4   6.2
imagenet32-terrier     50   7.8     4.8   7.2   10.7  10.7
imagenet32-fish        10   14.7    13.5  18.7  20.4  22.3
imagenet32-fish        50   15.3    17.0  19.4  28.4  23.3
imagenet32-lizard      10   13.3    23.5  29.1  30.0  34.2
imagenet32-lizard      50   20.9    32.6  32.9  38.8  34.8
imagenet32-truck       10   21.2    24.8  36.5  39.4  48.1
imagenet32-truck       50   31.8    43.5  57.9  57.4  60.6
imagenet32-insect      10   27.6    41.8  47.4  48.7  50.0
imagenet32-insect      50   42.7    49.6  51.3  55.8  51.9
"""

# --------------------------------------------------------------------------------------------
# Table 2: benchmarks, mean +- std. "-" = not reported. The whole-dataset bound Omega follows.
# --------------------------------------------------------------------------------------------
_TABLE2 = """
dataset   ipc  random    cscore    grand     el2n      kip       dc        dsa       dcc       dsac
svhn      1    14.6±1.6  -         19.6±0.5  19.1±0.6  23.3±2.7  34.6±2.0  36.0±2.0  34.3±1.6  47.5±2.6
svhn      10   35.1±4.1  -         37.5±1.6  32.5±1.2  62.4±0.5  76.2±0.6  78.9±0.5  76.2±0.8  80.5±0.6
svhn      50   70.9±0.9  -         69.1±0.7  68.7±0.7  69.6±0.5  82.7±0.3  84.4±0.4  83.3±0.2  87.2±0.3
cifar10   1    14.4±2.0  21.7±0.6  21.8±0.5  20.9±0.6  37.6±1.0  28.2±0.7  28.7±0.7  32.9±0.8  34.0±0.7
cifar10   10   26.0±1.2  31.6±0.4  32.3±0.4  32.3±0.4  47.3±0.3  44.7±0.6  52.1±0.6  49.4±0.5  54.5±0.5
cifar10   50   43.4±1.0  39.8±0.4  41.2±0.3  40.7±0.3  50.1±0.2  54.8±0.5  60.6±0.4  61.6±0.4  64.2±0.4
cifar100  1    4.2±0.3   8.0±0.3   8.8±0.3   8.8±0.3   14.8±1.2  12.8±0.3  13.9±0.4  13.3±0.3  14.6±0.3
cifar100  10   14.6±0.5  18.1±0.2  17.8±0.2  17.3±0.2  13.4±0.2  26.6±0.3  32.4±0.3  30.6±0.4  33.5±0.3
cifar100  50   29.7±0.4  30.4±0.3  27.6±0.2  27.7±0.2  -         32.1±0.3  38.6±0.3  40.0±0.3  39.3±0.4
"""
_TABLE2_WHOLE = """
dataset   whole
svhn      92.1±0.2
cifar10   81.6±0.3
cifar100  52.5±0.3
"""

# --------------------------------------------------------------------------------------------
# Table 3: cross-architecture, CIFAR-10, 50 img/cls, ConvNet as the source network (means).
# --------------------------------------------------------------------------------------------
_TABLE3 = """
method  convnet  lenet  alexnet  vgg11  resnet18
random  43.2     30.8   35.9     36.8   26.1
dc      54.8     33.8   40.9     39.3   23.9
dsa     60.4     40.3   46.0     50.7   49.7
dcc     61.6     38.0   45.2     46.3   27.3
dsac    64.1     42.6   48.2     56.0   53.9
"""

# --------------------------------------------------------------------------------------------
# Table 4: bi-level warm-up off (none: gamma_o = gamma_i = 0) / on (bilevel: 250, 10).
# --------------------------------------------------------------------------------------------
_TABLE4 = """
dataset   method  warmup   1     10    50
cifar10   dcc     none     28.3  49.2  61.3
cifar10   dcc     bilevel  32.9  49.4  61.6
cifar10   dsac    none     32.3  54.0  63.9
cifar10   dsac    bilevel  34.0  54.5  64.2
cifar100  dcc     none     12.0  28.5  40.5
cifar100  dcc     bilevel  13.3  30.6  40.0
cifar100  dsac    none     12.9  29.3  37.8
cifar100  dsac    bilevel  14.6  33.5  39.3
"""

# --------------------------------------------------------------------------------------------
# Table 5: warm-up design on CIFAR-100: None, Simple (inner loop only), Proposed (bi-level).
# --------------------------------------------------------------------------------------------
_TABLE5 = """
dataset   method  ipc  none   inner  bilevel
cifar100  dcc     1    11.98  13.01  13.27
cifar100  dcc     10   28.46  29.74  30.59
cifar100  dsac    1    12.91  14.21  14.57
cifar100  dsac    10   29.27  31.97  33.47
"""

# --------------------------------------------------------------------------------------------
# The spec's reference numbers of the DC/DSA code (original DC loop settings at ipc 1).
# --------------------------------------------------------------------------------------------
_DC_DSA_REFERENCE = """
ipc  mnist:dc  mnist:dsa  fashionmnist:dc  fashionmnist:dsa  cifar10:dc  cifar10:dsa
1    91.7      88.7       70.5             70.6              28.3        28.8
10   97.4      97.8       82.3             84.6              44.9        52.1
50   98.8      99.2       83.6             88.7              53.9        60.6
"""

SOURCES = {
    "table1": "Table 1 of the paper (fine-grained ImageNet32 subsets, ConvNet, mean of 100 runs)",
    "table2": "Table 2 of the paper (benchmarks, mean ± std of 100 runs)",
    "table3": "Table 3 of the paper (CIFAR-10, 50 img/cls, ConvNet source, mean of 100 runs)",
    "table4": "Table 4 of the paper (bi-level warm-up off/on, mean of 100 runs)",
    "table5": "Table 5 of the paper (warm-up design on CIFAR-100, mean of 100 runs)",
    "dc_dsa_reference": "the spec's reference numbers of the DC/DSA code (reference-details.md)",
}


def dataset_label(name: str) -> str:
    """How the paper writes a dataset's name (dcclib's name where the paper has none)."""
    return DATASET_LABELS.get(name, name)


def _rows(block: str) -> tuple[list[str], list[list[str]]]:
    lines = [line.split() for line in block.strip().splitlines()]
    return lines[0], lines[1:]


def _value(cell: str) -> tuple[float, float] | None:
    """'61.6±0.4' -> (61.6, 0.4); '61.6' -> (61.6, nan); '-' -> None (not reported)."""
    if cell == "-":
        return None
    mean, _, std = cell.partition("±")
    return float(mean), float(std) if std else math.nan


def _row(
    table: str,
    dataset: str,
    ipc: int | None,
    method: str,
    value: tuple[float, float] | None,
    model: str = "convnet",
    warmup: str | None = None,
) -> dict | None:
    if value is None:
        return None
    if warmup is None:
        warmup = "bilevel" if method in CONTRASTIVE_METHODS else "-"
    return {
        "table": table,
        "dataset": dataset,
        "dataset_label": DATASET_LABELS[dataset],
        "ipc": ipc,
        "method": method,
        "method_label": LABELS[method],
        "model": model,
        "warmup": warmup,
        "mean": value[0],
        "std": value[1],
    }


def _frame(rows: list[dict | None]) -> pd.DataFrame:
    df = pd.DataFrame([r for r in rows if r is not None], columns=COLUMNS)
    return df.astype({"ipc": "Int64", "mean": float, "std": float})


@cache
def _table1() -> pd.DataFrame:
    head, rows = _rows(_TABLE1)
    return _frame(
        [_row("table1", r[0], int(r[1]), m, _value(v)) for r in rows for m, v in zip(head[2:], r[2:])]
    )


@cache
def _table2() -> pd.DataFrame:
    head, rows = _rows(_TABLE2)
    out = [_row("table2", r[0], int(r[1]), m, _value(v)) for r in rows for m, v in zip(head[2:], r[2:])]
    _, whole = _rows(_TABLE2_WHOLE)
    out += [_row("table2", r[0], None, "whole", _value(r[1])) for r in whole]
    return _frame(out)


@cache
def _table3() -> pd.DataFrame:
    head, rows = _rows(_TABLE3)
    return _frame(
        [
            _row("table3", "cifar10", 50, r[0], _value(v), model=m)
            for r in rows
            for m, v in zip(head[1:], r[1:])
        ]
    )


@cache
def _table4() -> pd.DataFrame:
    head, rows = _rows(_TABLE4)
    return _frame(
        [
            _row("table4", r[0], int(ipc), r[1], _value(v), warmup=r[2])
            for r in rows
            for ipc, v in zip(head[3:], r[3:])
        ]
    )


@cache
def _table5() -> pd.DataFrame:
    head, rows = _rows(_TABLE5)
    return _frame(
        [
            _row("table5", r[0], int(r[2]), r[1], _value(v), warmup=w)
            for r in rows
            for w, v in zip(head[3:], r[3:])
        ]
    )


@cache
def _dc_dsa_reference() -> pd.DataFrame:
    head, rows = _rows(_DC_DSA_REFERENCE)
    out = []
    for r in rows:
        for col, v in zip(head[1:], r[1:]):
            dataset, method = col.split(":")
            out.append(_row("dc_dsa_reference", dataset, int(r[0]), method, _value(v)))
    return _frame(out)


_TABLES = {
    "table1": _table1,
    "table2": _table2,
    "table3": _table3,
    "table4": _table4,
    "table5": _table5,
    "dc_dsa_reference": _dc_dsa_reference,
}


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables (table1..table5, dc_dsa_reference) as a tidy DataFrame (a copy)."""
    try:
        return _TABLES[name]().copy()
    except KeyError:
        raise UserError(f"unknown paper table '{name}'; choose one of: {', '.join(_TABLES)}") from None


def paper_value(
    table: str, dataset: str, ipc: int | None, method: str, model: str = "convnet", warmup: str | None = None
) -> tuple[float, float] | None:
    """(mean, std) of one cell of a paper table, or None when the paper reports none."""
    if warmup is None:
        warmup = "bilevel" if method in CONTRASTIVE_METHODS else "-"
    df = paper_table(table)
    ipc_match = df["ipc"].isna() if ipc is None else df["ipc"] == ipc
    hit = df[
        (df["dataset"] == dataset)
        & ipc_match
        & (df["method"] == method)
        & (df["model"] == model)
        & (df["warmup"] == warmup)
    ]
    if hit.empty:
        return None
    return float(hit["mean"].iloc[0]), float(hit["std"].iloc[0])
