"""The paper's claims as the notebooks state them are computed from its tables, not typed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dcclib.lab.paper_claims import twin_claim_lines, twin_gaps, versus_lines, warmup_lines
from dcclib.lab.paper_results import paper_value

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_twin_gaps_are_the_papers_differences():
    g = twin_gaps("table2").set_index(["dataset", "ipc", "twin"])
    for (dataset, ipc, twin), row in g.iterrows():
        base = {"dcc": "dc", "dsac": "dsa"}[twin]
        expected = paper_value("table2", dataset, ipc, twin)[0] - paper_value("table2", dataset, ipc, base)[0]
        assert abs(row.gap - expected) < 1e-9
    assert len(g) == 18  # 3 datasets x 3 img/cls x 2 pairs


def test_the_sentences_name_where_the_paper_does_not_support_its_claim():
    dcc, dsac = twin_claim_lines("table2")
    assert "DCC above DC in 7 of 9 cells" in dcc
    assert "below in SVHN 1 img/cls (34.3 vs 34.6)" in dcc and "level in SVHN 10 img/cls" in dcc
    assert "at 1 img/cls most on CIFAR-10 (+4.7)" in dcc
    assert "DSAC above DSA in 9 of 9 cells" in dsac
    (below,) = versus_lines("table2", "dcc", "dsa")
    assert "CIFAR-10 10 img/cls (49.4 vs 52.1)" in below
    lines = warmup_lines()
    assert any(
        "DCC: the warm-up helps in 5 of 6 cells" in x and "CIFAR-100 50 img/cls (40 with" in x for x in lines
    )
    assert any(
        "Table 5, DCC on CIFAR-100 1 img/cls: Proposed 13.27, Simple 13.01, None 11.98" in x for x in lines
    )


def _markdown(name: str) -> str:
    nb = json.loads((NOTEBOOKS / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def _code(name: str) -> str:
    nb = json.loads((NOTEBOOKS / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_notebooks_print_the_claims_instead_of_stating_false_ones():
    for name, call in (
        ("04_table2_benchmarks.ipynb", "twin_claim_lines"),
        ("06_tables4_5_warmup.ipynb", "warmup_lines"),
    ):
        text = _markdown(name).lower()
        for overclaim in ("on every benchmark", "better in every cell", "every benchmark and img/cls"):
            assert overclaim not in text, (name, overclaim)
        assert call in _code(name)


def _table2(dc: float, dcc: float, std: float = 0.5, n: int = 3) -> pd.DataFrame:
    rows = [("DC", dc, 91.7, dc - 91.7), ("DCC", dcc, float("nan"), float("nan"))]
    return pd.DataFrame(
        [
            {"dataset": "MNIST", "data used": "MNIST [mnist]", "ipc": 1, "method": m, "ours": o,
             "ours std": std, "n": n, "paper": p, "paper std": float("nan"), "difference": d, "note": ""}
            for m, o, p, d in rows
        ]
    )  # fmt: skip


def test_a_contrastive_method_below_its_twin_contradicts_the_papers_claim():
    from dcclib.lab import writers
    from dcclib.lab.paper_claims import contradictions

    assert contradictions(_table2(91.5, 82.3)) == ["DCC - DC -9.2 +- 0.8 on MNIST 1 img/cls"]
    assert contradictions(_table2(91.5, 91.2)) == []  # within two standard errors: not a contradiction
    status = writers.computed_status("04_table2", _table2(91.5, 82.3), "cpu")
    assert status["state"] == "contradicts" and status["computed"]
    assert status["text"].startswith(
        "contradicts the paper's claim at reduced settings (profile cpu): DCC - DC -9.2"
    )
    assert "besides, reproduced" in status["text"]  # the DC cell's own comparison is still said
    assert writers.computed_status("04_table2", _table2(91.5, 92.0), "cpu")["state"] == "reproduced"
    stand_in = _table2(91.5, 82.3).assign(**{"data used": "embedded-mnist (stand-in for MNIST)"})
    assert writers.computed_status("04_table2", stand_in, "smoke")["state"] != "contradicts"


def test_figure_claims_are_checked_from_their_tables():
    from dcclib.lab import writers

    velocity = pd.DataFrame({"method": ["DC", "DCC"], "mean_peak": [0.243, 0.234]})
    status = writers.computed_status("08_figure4_velocity", velocity, "cpu")
    assert status["state"] == "contradicts" and "DCC's mean peak / DC's 0.96" in status["text"]
    higher = velocity.assign(mean_peak=[0.2, 0.5])
    assert writers.computed_status("08_figure4_velocity", higher, "paper")["state"] == "consistent"
    shares = pd.DataFrame(
        {
            "setting": ["normal"] * 4 + ["3 flipped"] * 4,
            "method": ["DC", "DC", "DCC", "DCC"] * 2,
            "class": [3, 8] * 4,
            "left-half share of the change": [0.5, 0.5, 0.6, 0.6, 0.5, 0.5, 0.4, 0.4],
        }
    )
    assert writers.computed_status("02_figure3_half_shares", shares, "cpu")["state"] == "consistent"
    wrong_side = shares.assign(**{"left-half share of the change": [0.5, 0.5, 0.4, 0.4, 0.5, 0.5, 0.6, 0.6]})
    assert writers.computed_status("02_figure3_half_shares", wrong_side, "cpu")["state"] == "contradicts"


def test_the_index_applies_the_claims_to_shipped_records_and_their_figures(tmp_path):
    from dcclib.lab import report_index

    (tmp_path / "meta").mkdir()
    (tmp_path / "tables").mkdir()
    _table2(91.5, 82.3).to_csv(tmp_path / "tables" / "04_table2.csv", index=False)
    old = {"state": "differs", "text": "differs", "cells": 2}  # computed before the claim rule
    table = {"kind": "table", "notebook": "04_t", "title": "T2", "files": ["tables/04_table2.csv"],
             "profile": "cpu", "device": "cpu", "status": old}  # fmt: skip
    figure = {"kind": "figure", "notebook": "04_t", "title": "T2 bars", "files": ["figures/04_table2.png"],
              "profile": "cpu", "device": "cpu"}  # fmt: skip
    stated = {
        **table,
        "title": "stated",
        "files": ["tables/04_x.csv"],
        "status": {"state": "x", "text": "as said"},
    }
    for name, rec in (("04_table2.table", table), ("04_table2.figure", figure), ("04_x.table", stated)):
        (tmp_path / "meta" / f"{name}.json").write_text(json.dumps(rec))
    text = report_index.write_index(tmp_path).read_text()
    assert "| table: T2 | 04_t | contradicts the paper's claim" in text
    assert "| figure: T2 bars | 04_t | as its table: contradicts the paper's claim" in text
    assert "| table: stated | 04_t | as said |" in text  # a status the notebook stated is kept
