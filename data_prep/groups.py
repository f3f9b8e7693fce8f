"""The six fine-grained ImageNet groups of the paper, as data, and the ImageNet-1k class lists.

The wnid lists are the ones behind the paper's numbers (Table 6 of the paper names the same
classes); new labels 0..C-1 follow the list order, which is also the order of the classes in
``imagenet32_label_order_wnids.txt``. Building these groups needs no WordNet: the lists are data.
``hypernyms`` and ``note`` record where the groups come from in WordNet 3.0; ``data_prep.wordnet``
recomputes those facts from WordNet itself (``python -m data_prep --explain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dcclib.errors import UserError

_HERE = Path(__file__).resolve().parent
LABEL_ORDER_FILE = _HERE / "imagenet32_label_order_wnids.txt"
LEMMAS_FILE = _HERE / "imagenet1k_wnid_lemmas.tsv"


@dataclass(frozen=True)
class Group:
    """A paper group: its wnids in new-label order and the WordNet synsets it comes from."""

    name: str
    title: str
    hypernyms: tuple[str, ...]
    note: str
    wnids: tuple[str, ...]


@dataclass(frozen=True)
class Subset:
    """A class subset to build: a paper group or a set cut below a WordNet synset.

    ``name`` gives the file name ``imagenet{S}-{name}.npz``; ``origin`` says where the classes
    come from (``"paper group"`` or ``"hypernym dog.n.01"``).
    """

    name: str
    wnids: tuple[str, ...]
    origin: str

    @property
    def class_names(self) -> tuple[str, ...]:
        """First ImageNet lemma of every class, in label order."""
        lemmas = wnid_lemmas()
        return tuple(lemmas[w][0] for w in self.wnids)


GROUPS: tuple[Group, ...] = (
    Group(
        name="automobile",
        title="Automobile",
        hypernyms=("car.n.01",),
        note=(
            "ImageNet-1k classes below car.n.01, except minivan: WordNet files minivan under both "
            "car.n.01 and passenger_van.n.01 (< van.n.05 < truck.n.01); the paper puts it in "
            "Truck."
        ),
        wnids=(
            "n02701002",  # ambulance
            "n02814533",  # beach wagon
            "n02930766",  # cab
            "n03100240",  # convertible
            "n03594945",  # jeep
            "n03670208",  # limousine
            "n03777568",  # Model T
            "n04037443",  # racer
            "n04285008",  # sports car
        ),
    ),
    Group(
        name="truck",
        title="Truck",
        hypernyms=("truck.n.01",),
        note=(
            "ImageNet-1k classes below truck.n.01 (minivan, moving van and police van via "
            "van.n.05), plus tractor, which WordNet files directly under "
            "self-propelled_vehicle.n.01, not under truck.n.01. Minivan is also below car.n.01."
        ),
        wnids=(
            "n03770679",  # minivan
            "n03345487",  # fire engine
            "n03417042",  # garbage truck
            "n03930630",  # pickup
            "n04461696",  # tow truck
            "n04467665",  # trailer truck
            "n03796401",  # moving van
            "n03977966",  # police van
            "n04465501",  # tractor
        ),
    ),
    Group(
        name="lizard",
        title="Lizard",
        hypernyms=("lizard.n.01",),
        note=("Exactly the ImageNet-1k classes below lizard.n.01."),
        wnids=(
            "n01675722",  # banded gecko
            "n01677366",  # common iguana
            "n01682714",  # American chameleon
            "n01685808",  # whiptail
            "n01687978",  # agama
            "n01688243",  # frilled lizard
            "n01689811",  # alligator lizard
            "n01692333",  # Gila monster
            "n01693334",  # green lizard
            "n01694178",  # African chameleon
            "n01695060",  # Komodo dragon
        ),
    ),
    Group(
        name="fish",
        title="Fish",
        hypernyms=("fish.n.01",),
        note=("Exactly the ImageNet-1k classes below fish.n.01 (sharks and rays included)."),
        wnids=(
            "n01484850",  # great white shark
            "n01491361",  # tiger shark
            "n01494475",  # hammerhead
            "n01496331",  # electric ray
            "n01498041",  # stingray
            "n02514041",  # barracouta
            "n02536864",  # coho
            "n01440764",  # tench
            "n01443537",  # goldfish
            "n02526121",  # eel
            "n02606052",  # rock beauty
            "n02607072",  # anemone fish
            "n02643566",  # lionfish
            "n02655020",  # puffer
            "n02640242",  # sturgeon
            "n02641379",  # gar
        ),
    ),
    Group(
        name="terrier",
        title="Terrier",
        hypernyms=("terrier.n.01",),
        note=(
            "Exactly the ImageNet-1k classes below terrier.n.01 (the schnauzers via "
            "schnauzer.n.01; Lhasa and Boston bull are direct hyponyms of terrier.n.01 in WordNet "
            "3.0)."
        ),
        wnids=(
            "n02096294",  # Australian terrier
            "n02098105",  # soft-coated wheaten terrier
            "n02096437",  # Dandie Dinmont
            "n02096051",  # Airedale
            "n02097130",  # giant schnauzer
            "n02093256",  # Staffordshire bullterrier
            "n02098413",  # Lhasa
            "n02094433",  # Yorkshire terrier
            "n02098286",  # West Highland white terrier
            "n02095889",  # Sealyham terrier
            "n02094114",  # Norfolk terrier
            "n02096177",  # cairn
            "n02093859",  # Kerry blue terrier
            "n02097298",  # Scotch terrier
            "n02096585",  # Boston bull
            "n02093647",  # Bedlington terrier
            "n02097047",  # miniature schnauzer
            "n02093991",  # Irish terrier
            "n02097658",  # silky terrier
            "n02094258",  # Norwich terrier
            "n02095570",  # Lakeland terrier
            "n02097209",  # standard schnauzer
            "n02097474",  # Tibetan terrier
            "n02095314",  # wire-haired fox terrier
            "n02093428",  # American Staffordshire terrier
            "n02093754",  # Border terrier
        ),
    ),
    Group(
        name="insect",
        title="Insect",
        hypernyms=("insect.n.01",),
        note=("Exactly the ImageNet-1k classes below insect.n.01."),
        wnids=(
            "n02219486",  # ant
            "n02165105",  # tiger beetle
            "n02165456",  # ladybug
            "n02167151",  # ground beetle
            "n02168699",  # long-horned beetle
            "n02169497",  # leaf beetle
            "n02172182",  # dung beetle
            "n02174001",  # rhinoceros beetle
            "n02177972",  # weevil
            "n02190166",  # fly
            "n02206856",  # bee
            "n02226429",  # grasshopper
            "n02229544",  # cricket
            "n02231487",  # walking stick
            "n02233338",  # cockroach
            "n02236044",  # mantis
            "n02256656",  # cicada
            "n02259212",  # leafhopper
            "n02264363",  # lacewing
            "n02268443",  # dragonfly
            "n02268853",  # damselfly
            "n02276258",  # admiral
            "n02277742",  # ringlet
            "n02279972",  # monarch
            "n02280649",  # cabbage butterfly
            "n02281406",  # sulphur butterfly
            "n02281787",  # lycaenid
        ),
    ),
)

GROUP_NAMES: tuple[str, ...] = tuple(g.name for g in GROUPS)


def get_group(name: str) -> Group:
    """The paper group called ``name`` (case-insensitive); UserError if there is none."""
    key = name.strip().lower()
    for group in GROUPS:
        if group.name == key:
            return group
    raise UserError(f"unknown group {name!r}: choose from {', '.join(GROUP_NAMES)} or 'all'")


def parse_groups(spec: str) -> list[Group]:
    """Groups named by a comma-separated list (``"automobile,truck"``) or ``"all"``."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise UserError("--groups is empty: name groups such as 'automobile,truck', or 'all'")
    if any(n.lower() == "all" for n in names):
        return list(GROUPS)
    groups: list[Group] = []
    for n in names:
        group = get_group(n)
        if group not in groups:
            groups.append(group)
    return groups


def paper_subset(group: Group) -> Subset:
    """The subset that builds a paper group."""
    return Subset(name=group.name, wnids=group.wnids, origin="paper group")


@lru_cache(maxsize=1)
def label_order() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids; entry k is label k+1 of the downsampled ImageNet files."""
    wnids = tuple(LABEL_ORDER_FILE.read_text().split())
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise UserError(f"{LABEL_ORDER_FILE} must list 1000 distinct wnids")
    return wnids


@lru_cache(maxsize=1)
def wnid_lemmas() -> dict[str, tuple[str, ...]]:
    """ImageNet-1k wnid -> its lemmas (synonyms), first lemma first."""
    lemmas: dict[str, tuple[str, ...]] = {}
    for line in LEMMAS_FILE.read_text().splitlines():
        if line.strip():
            wnid, names = line.split("\t")
            lemmas[wnid] = tuple(n.strip() for n in names.split(","))
    return lemmas


def original_labels(wnids: tuple[str, ...] | list[str]) -> list[int]:
    """The 1-based labels of the downsampled ImageNet files for these wnids."""
    index = {w: i + 1 for i, w in enumerate(label_order())}
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise UserError(f"not ImageNet-1k classes: {', '.join(unknown)}")
    return [index[w] for w in wnids]
