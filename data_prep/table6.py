"""Table 6 of the paper as data, next to the groups that data_prep builds (notebook 12).

Table 6 lists, for each fine-grained set, the ImageNet classes it was cut from. This module
holds that table as the paper prints it and puts it next to ``data_prep.groups`` (the wnids
behind the paper's numbers, their ImageNet lemmas and labels), which are committed with the
package: nothing here needs WordNet, the ImageNet files or ``../shared``. What does need them
is read only when it is there:

* ``wordnet_reports``: where every class sits in WordNet 3.0 (``data_prep.wordnet``, the same
  facts as ``python -m data_prep --explain``), or the reason it cannot say;
* ``built_counts``: the image counts per class of sets built by ``python -m data_prep --src
  ... --out DIR``, read from ``DIR/manifest.json``;
* ``check_meta``: the committed class files compared with an ``imagenet-meta/`` folder (the
  project's ``../shared/data/imagenet-meta``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.build import dataset_name, read_manifest
from data_prep.groups import (
    LABEL_ORDER_FILE,
    LEMMAS_FILE,
    get_group,
    label_order,
    original_labels,
    wnid_lemmas,
)
from dcclib.errors import UserError

# The rows of Table 6, in the paper's order, each as printed (classes separated by commas).
PAPER_TABLE6: dict[str, str] = {
    "automobile": "beach wagon, convertible, sports car, ambulance, jeep, limousine, racer, cab, Model T",
    "terrier": (
        "Lakeland terrier, Scotch terrier, cairn, Airedale, Tibetan terrier, Yorkshire terrier, "
        "Norfolk terrier, Staffordshire bullterrier, Sealyham terrier, standard schnauzer, Norwich "
        "terrier, Bedlington terrier, Lhasa, Irish terrier, silky terrier, Dandie Dinmont, Boston "
        "bull, Border terrier, soft-coated wheaten terrier, Australian terrier, American "
        "Staffordshire terrier, West Highland white terrier, giant schnauzer, miniature schnauzer, "
        "Kerry blue terrier, wire-haired fox terrier"
    ),
    "fish": (
        "tench, stingray, tiger shark, barracouta, coho, gar, electric ray, great white shark, "
        "sturgeon puffer, anemone fish, goldfish, eel, rock beauty, lionfish, hammerhead"
    ),
    "lizard": (
        "agama, banded gecko, Komodo dragon, frilled lizard, African chameleon, American "
        "chameleon, green lizard, whiptail, common iguana, alligator lizard, Gila monster"
    ),
    "truck": (
        "pickup, police van, trailer truck, minivan, moving van, tow truck, fire engine, garbage truck, "
        "tractor"
    ),
    "insect": (
        "cricket, ant, leafhopper, walking stick, grasshopper, dung beetle, tiger beetle, lacewing, "
        "rhinoceros beetle, ringlet, long-horned beetle, ladybug, ground beetle, cicada, cabbage "
        "butterfly, leaf beetle, lycaenid, bee, monarch, damselfly, admiral, sulphur butterfly, "
        "dragonfly, fly, weevil, cockroach, mantis"
    ),
}
PAPER_ORDER: tuple[str, ...] = tuple(PAPER_TABLE6)

# Entries of the printed table that name two classes: the comma between them is missing.
PAPER_READINGS: dict[str, tuple[str, ...]] = {"sturgeon puffer": ("sturgeon", "puffer")}

# Where each group sits in WordNet 3.0, as a formula over the hyponym closure of its
# ``hypernyms`` (``data_prep.groups``). With WordNet present, ``explain_group(name).summary``
# recomputes it (tests/test_table6.py checks that the two agree).
RULES: dict[str, str] = {
    "automobile": "ImageNet-1k classes below car.n.01, minus minivan",
    "terrier": "exactly the ImageNet-1k classes below terrier.n.01",
    "fish": "exactly the ImageNet-1k classes below fish.n.01",
    "lizard": "exactly the ImageNet-1k classes below lizard.n.01",
    "truck": "ImageNet-1k classes below truck.n.01, plus tractor",
    "insect": "exactly the ImageNet-1k classes below insect.n.01",
}

# ImageNet32's test split is ImageNet's validation set: 50 images of every class.
TEST_IMAGES_PER_CLASS = 50

META_FILES: tuple[str, ...] = (LABEL_ORDER_FILE.name, LEMMAS_FILE.name)
SORTED_WNIDS_FILE = "ilsvrc2012_sorted_wnids.txt"


def paper_entries(name: str) -> tuple[str, ...]:
    """The comma-separated entries of a group's Table 6 row, as printed."""
    return tuple(e.strip() for e in PAPER_TABLE6[get_group(name).name].split(",") if e.strip())


def paper_classes(name: str) -> tuple[str, ...]:
    """The classes a Table 6 row names (``PAPER_READINGS`` applied), in the paper's order."""
    out: list[str] = []
    for entry in paper_entries(name):
        out += PAPER_READINGS.get(entry, (entry,))
    return tuple(out)


@dataclass(frozen=True)
class PaperComparison:
    """One group of data_prep next to its row of Table 6 (classes by their first ImageNet lemma)."""

    group: str
    ours: tuple[str, ...]  # label order
    paper: tuple[str, ...]  # the paper's order, readings applied
    printed_entries: int  # comma-separated entries of the printed row
    readings: tuple[str, ...]  # printed entries read as two classes
    missing: tuple[str, ...]  # in the paper's row, not in the group
    extra: tuple[str, ...]  # in the group, not in the paper's row

    @property
    def same(self) -> bool:
        """The group holds exactly the classes of the paper's row, each once."""
        return not self.missing and not self.extra and len(self.paper) == len(set(self.paper))

    def sentence(self) -> str:
        """The comparison in one line."""
        title = get_group(self.group).title
        text = f"{title}: {len(self.ours)} classes; Table 6 lists {len(self.paper)}"
        if self.readings:
            text += f" ({self.printed_entries} comma-separated entries: " + "; ".join(
                f"'{r}' read as {' + '.join(PAPER_READINGS[r])}" for r in self.readings
            )
            text += ")"
        if self.same:
            return text + ": the same classes"
        parts = []
        if self.missing:
            parts.append("not in ours: " + ", ".join(self.missing))
        if self.extra:
            parts.append("not in the paper: " + ", ".join(self.extra))
        return text + ": DIFFERENT (" + "; ".join(parts) + ")"


def compare_with_paper(name: str) -> PaperComparison:
    """A group's classes against its row of Table 6."""
    group = get_group(name)
    lemmas = wnid_lemmas()
    ours = tuple(lemmas[w][0] for w in group.wnids)
    paper = paper_classes(group.name)
    return PaperComparison(
        group=group.name,
        ours=ours,
        paper=paper,
        printed_entries=len(paper_entries(group.name)),
        readings=tuple(e for e in paper_entries(group.name) if e in PAPER_READINGS),
        missing=tuple(c for c in paper if c not in ours),
        extra=tuple(c for c in ours if c not in paper),
    )


def group_rows(names: tuple[str, ...] | list[str] = PAPER_ORDER) -> list[dict[str, Any]]:
    """One row per group: its size against Table 6, its WordNet ancestor and selection rule (as
    recorded in data_prep), the expected test images and its classes in label order."""
    rows = []
    for name in names:
        group = get_group(name)
        cmp = compare_with_paper(group.name)
        rows.append(
            {
                "group": group.title,
                "classes": len(group.wnids),
                "classes in Table 6": len(cmp.paper),
                "same as Table 6": "yes" if cmp.same else "NO",
                "WordNet ancestor": ", ".join(group.hypernyms),
                "selection rule": RULES[group.name],
                "test images (50/class)": TEST_IMAGES_PER_CLASS * len(group.wnids),
                "classes (label order)": ", ".join(cmp.ours),
            }
        )
    return rows


def class_rows(names: tuple[str, ...] | list[str] = PAPER_ORDER) -> list[dict[str, Any]]:
    """One row per class: group, new label, wnid, label in the downsampled ImageNet files
    (1..1000), first ImageNet lemma, the other lemmas, and its place in the paper's row."""
    lemmas = wnid_lemmas()
    rows = []
    for name in names:
        group = get_group(name)
        paper = paper_classes(group.name)
        for label, (wnid, orig) in enumerate(zip(group.wnids, original_labels(group.wnids), strict=True)):
            first = lemmas[wnid][0]
            rows.append(
                {
                    "group": group.title,
                    "label": label,
                    "wnid": wnid,
                    "ImageNet32 label": orig,
                    "class": first,
                    "other lemmas": ", ".join(lemmas[wnid][1:]),
                    "Table 6 position": paper.index(first) + 1 if first in paper else None,
                }
            )
    return rows


# ----------------------------------------------------------------- what needs more than the repo
@dataclass(frozen=True)
class BuiltSet:
    """Image counts of one built set, from the manifest that ``python -m data_prep`` writes."""

    group: str
    file: str
    train_counts: tuple[int, ...]  # per class, label order
    test_counts: tuple[int, ...]

    @property
    def num_train(self) -> int:
        """Training images in all."""
        return sum(self.train_counts)

    @property
    def num_test(self) -> int:
        """Test images in all."""
        return sum(self.test_counts)


def built_counts(
    root: str | Path, names: tuple[str, ...] | list[str] = PAPER_ORDER, size: int = 32
) -> tuple[dict[str, BuiltSet], list[str]]:
    """The image counts of the groups built under ``root`` (``root/manifest.json``).

    Returns the sets found, by group name, and one line for each group that the manifest lacks
    or whose entry does not match data_prep's group (other wnids or order): such counts are not
    used. No manifest: nothing found, no line. An unreadable manifest is a UserError (as for
    ``python -m data_prep``).
    """
    root = Path(root)
    if not (root / "manifest.json").is_file():
        return {}, []
    datasets = read_manifest(root)["datasets"]
    found: dict[str, BuiltSet] = {}
    problems: list[str] = []
    for name in names:
        group = get_group(name)
        stem = dataset_name(size, group.name)
        entry = datasets.get(stem)
        if not isinstance(entry, dict):
            problems.append(f"{stem}: not in the manifest")
            continue
        try:
            wnids = tuple(entry["wnids"])
            train = tuple(int(n) for n in entry["train_counts"])
            test = tuple(int(n) for n in entry["test_counts"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{stem}: its manifest entry lacks wnids or counts")
            continue
        if wnids != group.wnids or len(train) != len(wnids) or len(test) != len(wnids):
            problems.append(f"{stem}: built with other classes than data_prep's {group.title}: rebuild it")
            continue
        found[group.name] = BuiltSet(group.name, str(entry.get("file", f"{stem}.npz")), train, test)
    return found, problems


def find_meta(root: str | Path) -> Path | None:
    """The ImageNet metadata folder: ``root/imagenet-meta``, or ``root`` itself if it holds
    the class files; None if neither does."""
    root = Path(root)
    for folder in (root / "imagenet-meta", root):
        if all((folder / f).is_file() for f in META_FILES):
            return folder
    return None


def check_meta(folder: str | Path) -> list[tuple[str, bool, str]]:
    """The committed class files against an imagenet-meta folder: (file, agrees, detail) each.

    The label order and the lemmas are compared entry by entry (whitespace aside); the
    sorted list, when there, must be the label order sorted.
    """
    folder = Path(folder)
    checks: list[tuple[str, bool, str]] = []
    for committed, parse in ((LABEL_ORDER_FILE, _words), (LEMMAS_FILE, _lemma_table)):
        other = folder / committed.name
        if not other.is_file():
            checks.append((committed.name, False, "missing"))
            continue
        ours, theirs = parse(committed.read_text()), parse(other.read_text())
        same = ours == theirs
        what = "the same as" if same else "NOT the same as"
        checks.append((committed.name, same, f"{len(theirs)} entries, {what} data_prep/{committed.name}"))
    sorted_file = folder / SORTED_WNIDS_FILE
    if sorted_file.is_file():
        listed = _words(sorted_file.read_text())
        same = listed == sorted(label_order())
        what = "the same as" if same else "NOT the same as"
        checks.append(
            (SORTED_WNIDS_FILE, same, f"{len(listed)} wnids, {what} data_prep's label order sorted")
        )
    return checks


def _words(text: str) -> list[str]:
    return text.split()


def _lemma_table(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if line.strip():
            wnid, _, names = line.partition("\t")
            table[wnid.strip()] = tuple(n.strip() for n in names.split(","))
    return table


def wordnet_reports(names: tuple[str, ...] | list[str] = PAPER_ORDER) -> tuple[dict[str, Any], str | None]:
    """``data_prep.wordnet.explain_group`` for every group (what ``--explain`` prints), or ({},
    the reason) when WordNet 3.0 is not installed."""
    from data_prep.wordnet import explain_group, get_wordnet

    try:
        get_wordnet()
    except UserError as exc:
        return {}, str(exc)
    return {get_group(n).name: explain_group(n) for n in names}, None
