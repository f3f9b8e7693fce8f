"""Where the six groups come from in WordNet 3.0 (--explain), and --hypernym sets.

These tests need NLTK's WordNet 3.0 corpus: NLTK_DATA, NLTK's default folders, or
``<repo>/.cache/nltk_data`` (built offline by ``bash scripts/get_wordnet.sh``). They skip
with the reason when it is absent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.groups import GROUPS, get_group, label_order
from dcclib.errors import UserError

try:
    from test_data_prep import ORDER, expected, load, make_batches, write_batches
except ImportError:  # tests collected as a package
    from tests.test_data_prep import ORDER, expected, load, make_batches, write_batches

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wn():
    from data_prep.wordnet import get_wordnet

    try:
        return get_wordnet()
    except UserError as exc:
        pytest.skip(f"WordNet 3.0 unavailable: {exc}")


def test_get_wordnet_script_is_valid_bash() -> None:
    script = REPO / "scripts" / "get_wordnet.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_every_wnid_is_a_wordnet_30_imagenet_class(wn) -> None:
    from data_prep.wordnet import explain_group

    assert wn.get_version() == "3.0"
    for group in GROUPS:
        report = explain_group(group.name)
        assert report.ok, report.render()
        for m in report.members:
            synset = wn.synset_from_pos_and_offset("n", int(m.wnid[1:]))
            assert m.synset == synset.name() and m.in_imagenet and m.lemmas_match
            assert m.wnid in label_order()


def test_exact_groups_are_plain_hyponym_closures(wn) -> None:
    from data_prep.wordnet import explain_group

    for name, root in [
        ("lizard", "lizard.n.01"),
        ("fish", "fish.n.01"),
        ("terrier", "terrier.n.01"),
        ("insect", "insect.n.01"),
    ]:
        report = explain_group(name)
        assert report.hypernyms == (root,)
        assert report.added == () and report.left_out == (), report.render()
        assert report.closure == get_group(name).wnids  # same classes, same order
        assert all(m.path.startswith(root + " > ") for m in report.members)
        assert report.summary.startswith("exactly the ImageNet-1k classes below")


def test_terrier_paths(wn) -> None:
    from data_prep.wordnet import explain_group

    paths = {m.name: m.path for m in explain_group("terrier").members}
    assert paths["giant schnauzer"] == "terrier.n.01 > schnauzer.n.01 > giant_schnauzer.n.01"
    assert paths["Lhasa"] == "terrier.n.01 > lhasa.n.02"
    assert paths["Boston bull"] == "terrier.n.01 > boston_bull.n.01"
    assert paths["Sealyham terrier"].startswith("terrier.n.01 > wirehair.n.01 > welsh_terrier")


def test_automobile_is_car_minus_minivan(wn) -> None:
    from data_prep.wordnet import explain_group

    report = explain_group("automobile")
    assert report.hypernyms == ("car.n.01",) and report.added == ()
    assert [w for w, _ in report.left_out] == ["n03770679"]  # minivan
    where = report.left_out[0][1]
    assert "Truck" in where and "passenger_van.n.01" in where and "car.n.01" in where
    assert report.summary == "ImageNet-1k classes below car.n.01, minus minivan"
    assert set(report.closure) == set(get_group("automobile").wnids) | {"n03770679"}


def test_truck_is_truck_plus_tractor(wn) -> None:
    from data_prep.wordnet import explain_group

    report = explain_group("truck")
    assert report.hypernyms == ("truck.n.01",) and report.left_out == ()
    assert [w for w, _ in report.added] == ["n04465501"]  # tractor
    assert "under self-propelled_vehicle.n.01" in report.added[0][1]
    assert report.summary == "ImageNet-1k classes below truck.n.01, plus tractor"
    paths = {m.name: m.path for m in report.members}
    assert paths["police van"] == "truck.n.01 > van.n.05 > police_van.n.01"
    assert paths["minivan"] == "truck.n.01 > van.n.05 > passenger_van.n.01 > minivan.n.01"
    assert paths["tractor"] is None
    assert [(w, o) for w, o in report.shared] == [("n03770679", "also below car.n.01 (Automobile)")]


def test_explain_cli(capsys, wn) -> None:
    assert main(["--explain"]) == 0
    text = capsys.readouterr().out
    for line in [
        "Automobile (9 classes): ImageNet-1k classes below car.n.01, minus minivan",
        "Truck (9 classes): ImageNet-1k classes below truck.n.01, plus tractor",
        "Terrier (26 classes): exactly the ImageNet-1k classes below terrier.n.01",
        "Insect (27 classes): exactly the ImageNet-1k classes below insect.n.01",
    ]:
        assert line in text
    assert text.count("every wnid is an ImageNet-1k class: yes") == 6
    assert main(["--explain", "--groups", "none", "--hypernym", "bird.n.01"]) == 0
    assert capsys.readouterr().out.startswith("bird (59 classes)")


def test_hypernym_subsets(wn) -> None:
    from data_prep.wordnet import hypernym_subset

    dog = hypernym_subset("dog.n.01")
    assert dog.name == "dog" and len(dog.wnids) == 118 and dog.origin == "hypernym dog.n.01"
    assert list(dog.wnids) == [w for w in ORDER if w in set(dog.wnids)]  # label-order order
    assert set(get_group("terrier").wnids) < set(dog.wnids)
    assert hypernym_subset("n02084071") == dog  # the same synset by wnid
    assert hypernym_subset("terrier.n.01").wnids == get_group("terrier").wnids
    assert hypernym_subset("terrier.n.01").name == "terrier"  # same classes, same name
    truck = hypernym_subset("truck.n.01")  # differs from the paper's Truck: renamed
    assert truck.name == "wntruck" and len(truck.wnids) == 8
    assert hypernym_subset("hunting_dog.n.01").name == "huntingdog"  # dcclib drops - and _
    for bad in ("nosuchthing.n.01", "dog", "n99999999", "tractor.n.01"):
        with pytest.raises(UserError):
            hypernym_subset(bad)


def test_build_hypernym_set(capsys, tmp_path, wn) -> None:
    from data_prep.wordnet import hypernym_subset

    lizard = get_group("lizard")
    batches = make_batches(rows=10, groups=("lizard", "automobile"), seed=5)
    src = write_batches(tmp_path / "src", batches, "npz")
    out = tmp_path / "out"
    rc = main(
        [
            "--src",
            str(src),
            "--out",
            str(out),
            "--groups",
            "automobile",
            "--hypernym",
            "saurian.n.01",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    got = load(out / "imagenet32-saurian.npz")
    assert got["wnids"].tolist() == list(hypernym_subset("saurian.n.01").wnids)
    assert got["wnids"].tolist() == list(lizard.wnids)  # saurian = lizards in ImageNet-1k
    assert str(got["group"]) == "saurian"
    want = expected(batches, "lizard", 32)
    np.testing.assert_array_equal(got["train_images"], want["train_images"])
    np.testing.assert_array_equal(got["train_labels"], want["train_labels"])
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-12)
    assert (out / "imagenet32-automobile.npz").is_file()
    data = pytest.importorskip("dcclib.data")
    assert data.load_dataset("imagenet32-saurian", data_root=out).class_names[0] == "banded gecko"


def test_unknown_synset_is_one_line(capsys, tmp_path, wn) -> None:
    assert main(["--explain", "--groups", "none", "--hypernym", "xyzzy.n.01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown WordNet synset 'xyzzy.n.01'") and err.count("\n") == 1
