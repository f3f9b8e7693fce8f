"""data_prep.table6 (Table 6 of the paper next to data_prep's groups) and notebook 12's parameters.

No WordNet, no ImageNet and no ../shared needed: the WordNet check skips with the reason when
WordNet 3.0 is absent, the metadata check runs on copies of the committed files (and on
../shared/data/imagenet-meta where it exists), image counts come from small fake sets.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from data_prep import table6
from data_prep.cli import main
from data_prep.groups import GROUPS, LABEL_ORDER_FILE, LEMMAS_FILE, get_group, label_order, wnid_lemmas
from dcclib.errors import UserError

try:
    from test_data_prep import make_batches, write_batches
except ImportError:  # tests collected as a package
    from tests.test_data_prep import make_batches, write_batches

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "12_table6_fine_grained_groups.ipynb"
SHARED_META = REPO.parent / "shared" / "data" / "imagenet-meta"
SIZES = {"automobile": 9, "terrier": 26, "fish": 16, "lizard": 11, "truck": 9, "insect": 27}


def test_the_paper_table_is_in_the_papers_order_with_its_sizes() -> None:
    assert table6.PAPER_ORDER == ("automobile", "terrier", "fish", "lizard", "truck", "insect")
    assert {n: len(table6.paper_classes(n)) for n in table6.PAPER_ORDER} == SIZES
    assert len(table6.paper_entries("fish")) == 15  # "sturgeon puffer" is printed without a comma
    assert table6.paper_classes("fish")[8:10] == ("sturgeon", "puffer")
    for name in table6.PAPER_ORDER:
        if name != "fish":
            assert table6.paper_entries(name) == table6.paper_classes(name)


def test_every_group_holds_exactly_its_table6_row() -> None:
    lemmas = wnid_lemmas()
    for group in GROUPS:
        cmp = table6.compare_with_paper(group.name)
        assert cmp.same, cmp.sentence()
        assert sorted(cmp.ours) == sorted(cmp.paper) == sorted(lemmas[w][0] for w in group.wnids)
        assert cmp.sentence().endswith(": the same classes")
    assert "'sturgeon puffer' read as sturgeon + puffer" in table6.compare_with_paper("fish").sentence()
    every = [w for g in GROUPS for w in g.wnids]
    assert len(every) == len(set(every)) == 98


def test_a_changed_paper_row_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    row = table6.PAPER_TABLE6["truck"].replace("tractor", "snowplow")
    monkeypatch.setitem(table6.PAPER_TABLE6, "truck", row)
    cmp = table6.compare_with_paper("truck")
    assert not cmp.same and cmp.missing == ("snowplow",) and cmp.extra == ("tractor",)
    assert "DIFFERENT (not in ours: snowplow; not in the paper: tractor)" in cmp.sentence()
    monkeypatch.setitem(table6.PAPER_TABLE6, "truck", row.replace("snowplow", "tractor, pickup"))
    assert not table6.compare_with_paper("truck").same  # a class listed twice is no match either
    assert table6.group_rows(["truck"])[0]["same as Table 6"] == "NO"


def test_group_and_class_rows() -> None:
    groups = table6.group_rows()
    assert [r["group"] for r in groups] == ["Automobile", "Terrier", "Fish", "Lizard", "Truck", "Insect"]
    for r in groups:
        n = SIZES[r["group"].lower()]
        assert r["classes"] == r["classes in Table 6"] == n and r["same as Table 6"] == "yes"
        assert r["test images (50/class)"] == 50 * n
        assert r["WordNet ancestor"] == ", ".join(get_group(r["group"]).hypernyms)
        assert r["selection rule"] == table6.RULES[r["group"].lower()]
    rows = table6.class_rows()
    assert len(rows) == 98
    order = label_order()
    for name in table6.PAPER_ORDER:
        mine = [r for r in rows if r["group"] == get_group(name).title]
        assert [r["label"] for r in mine] == list(range(SIZES[name]))
        assert [r["wnid"] for r in mine] == list(get_group(name).wnids)
        assert all(order[r["ImageNet32 label"] - 1] == r["wnid"] for r in mine)
        assert sorted(r["Table 6 position"] for r in mine) == list(range(1, SIZES[name] + 1))
    beach = next(r for r in rows if r["wnid"] == "n02814533")
    assert beach["class"] == "beach wagon" and beach["other lemmas"].startswith("station wagon")
    assert beach["ImageNet32 label"] == order.index("n02814533") + 1


def test_recorded_rules_are_what_wordnet_says() -> None:
    reports, why = table6.wordnet_reports()
    if why:
        pytest.skip(f"WordNet 3.0 unavailable: {why}")
    assert set(reports) == set(table6.PAPER_ORDER)
    for name, report in reports.items():
        assert report.ok and report.summary == table6.RULES[name]


def test_without_wordnet_the_reason_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from data_prep import wordnet

    def absent() -> None:
        raise UserError("NLTK's WordNet corpus is not installed")

    monkeypatch.setattr(wordnet, "get_wordnet", absent)
    assert table6.wordnet_reports() == ({}, "NLTK's WordNet corpus is not installed")


def test_counts_come_from_the_manifest_of_built_sets(tmp_path: Path) -> None:
    assert table6.built_counts(tmp_path / "nothing") == ({}, [])
    src, out = tmp_path / "src", tmp_path / "data"
    write_batches(src, make_batches(rows=20, groups=("automobile", "truck")), "npz")
    assert main(["--src", str(src), "--out", str(out), "--groups", "automobile,truck", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    built, problems = table6.built_counts(out)
    assert set(built) == {"automobile", "truck"}
    assert problems == [
        f"imagenet32-{g}: not in the manifest" for g in ("terrier", "fish", "lizard", "insect")
    ]
    for name, b in built.items():
        entry = manifest["datasets"][f"imagenet32-{name}"]
        assert b.file == entry["file"] and list(b.train_counts) == entry["train_counts"]
        assert b.num_train == entry["num_train"] and b.num_test == entry["num_test"]
        assert len(b.test_counts) == SIZES[name] and min(b.test_counts) >= 1
    assert table6.built_counts(out, ["truck"], size=64) == ({}, ["imagenet64-truck: not in the manifest"])
    # an entry built from other classes is not used
    manifest["datasets"]["imagenet32-truck"]["wnids"].reverse()
    (out / "manifest.json").write_text(json.dumps(manifest))
    built, problems = table6.built_counts(out, ["automobile", "truck"])
    assert set(built) == {"automobile"} and "imagenet32-truck: built with other classes" in problems[0]
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable manifest"):
        table6.built_counts(out)


def _meta_copy(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in (LABEL_ORDER_FILE, LEMMAS_FILE):
        shutil.copy(f, folder / f.name)
    (folder / table6.SORTED_WNIDS_FILE).write_text("\n".join(sorted(label_order())) + "\n")
    return folder


def test_the_metadata_check(tmp_path: Path) -> None:
    assert table6.find_meta(tmp_path) is None
    meta = _meta_copy(tmp_path / "imagenet-meta")
    assert table6.find_meta(tmp_path) == meta and table6.find_meta(meta) == meta
    checks = table6.check_meta(meta)
    assert [c[0] for c in checks] == [*table6.META_FILES, table6.SORTED_WNIDS_FILE]
    assert all(ok for _, ok, _ in checks), checks
    lemmas = meta / LEMMAS_FILE.name
    lemmas.write_text(lemmas.read_text().replace("beach wagon", "station wagon", 1))
    (meta / table6.SORTED_WNIDS_FILE).write_text("\n".join(label_order()))  # not sorted
    assert [ok for _, ok, _ in table6.check_meta(meta)] == [True, False, False]
    (meta / LABEL_ORDER_FILE.name).unlink()
    assert table6.check_meta(meta)[0] == (LABEL_ORDER_FILE.name, False, "missing")


@pytest.mark.skipif(not SHARED_META.is_dir(), reason="no ../shared/data/imagenet-meta (a user's clone)")
def test_the_committed_class_files_are_the_shared_ones() -> None:
    assert all(ok for _, ok, _ in table6.check_meta(SHARED_META)), table6.check_meta(SHARED_META)


def test_the_notebook_parameters_are_typed_and_documented() -> None:
    import papermill

    nb = json.loads(NOTEBOOK.read_text())
    assert "".join(nb["cells"][0]["source"]).startswith("# 12 · Table 6: ")
    assert "".join(nb["cells"][-1]["source"]).startswith("## Reading")
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    for line in "".join(cell["source"]).splitlines():
        assert re.match(r'^\w+: ("[^"=]+"|\w+) = [^#]+  # [^=]+$', line), line
    params = papermill.inspect_notebook(str(NOTEBOOK))
    assert list(params) == ["profile", "data_root", "groups", "image_size"]
    assert all(p["help"] and p["inferred_type_name"] != "None" for p in params.values()), params
    assert params["data_root"]["inferred_type_name"] == "Optional[str]"
