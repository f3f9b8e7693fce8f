"""Where the groups come from in WordNet 3.0, and new subsets cut below any WordNet synset.

Only ``--explain`` and ``--hypernym`` need WordNet; building the paper's groups does not. NLTK
finds the corpus through ``NLTK_DATA`` or its default folders; this module also looks in
``<repo>/.cache/nltk_data``, where ``scripts/get_wordnet.sh`` builds it offline from Debian's
``wordnet-base``. ImageNet wnids are WordNet 3.0 noun offsets (``n02084071`` is ``dog.n.01``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.groups import GROUP_NAMES, GROUPS, Subset, get_group, label_order, wnid_lemmas
from dcclib.errors import UserError

REPO_NLTK_DATA = Path(__file__).resolve().parents[1] / ".cache" / "nltk_data"
_HOW_TO_GET = (
    "run `bash scripts/get_wordnet.sh` and `export NLTK_DATA=$PWD/.cache/nltk_data` "
    "(offline), or `python -m nltk.downloader wordnet`"
)


def get_wordnet() -> Any:
    """NLTK's WordNet 3.0 corpus reader; UserError (with how to get it) if it is absent."""
    try:
        import nltk
        from nltk.corpus import wordnet
    except ImportError:
        raise UserError(f"--explain and --hypernym need nltk and WordNet 3.0: {_HOW_TO_GET}") from None
    extra = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    for path in [*extra, str(REPO_NLTK_DATA)]:
        if path not in nltk.data.path and Path(path).is_dir():
            nltk.data.path.insert(0 if path in extra else len(nltk.data.path), path)
    try:
        version = wordnet.get_version()
    except LookupError:
        raise UserError(
            "NLTK's WordNet corpus is not installed (looked in NLTK_DATA, "
            f"{REPO_NLTK_DATA} and NLTK's default folders): {_HOW_TO_GET}"
        ) from None
    except OSError as exc:
        raise UserError(f"NLTK's WordNet corpus is incomplete ({exc}): {_HOW_TO_GET}") from None
    if version != "3.0":
        raise UserError(
            f"ImageNet wnids are WordNet 3.0 offsets, but NLTK loaded WordNet {version}: {_HOW_TO_GET}"
        )
    return wordnet


def wnid_of(synset: Any) -> str:
    """The ImageNet-style id of a noun synset (``n`` + 8-digit offset)."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset_of(wn: Any, wnid: str) -> Any | None:
    """The WordNet 3.0 noun synset of a wnid, or None if there is none."""
    try:
        with warnings.catch_warnings():  # nltk warns, then returns None, for unknown offsets
            warnings.simplefilter("ignore")
            return wn.synset_from_pos_and_offset("n", int(wnid[1:]))
    except (ValueError, LookupError, IndexError, AttributeError):
        return None


def resolve_synset(wn: Any, spec: str) -> Any:
    """A synset named like ``dog.n.01`` or given by its wnid ``n02084071``."""
    spec = spec.strip()
    synset = None
    if len(spec) == 9 and spec[0] == "n" and spec[1:].isdigit():
        synset = synset_of(wn, spec)
    else:
        try:
            synset = wn.synset(spec)
        except Exception:  # nltk raises WordNetError, ValueError or others for bad names
            synset = None
    if synset is None:
        raise UserError(
            f"unknown WordNet synset {spec!r}: give a name such as dog.n.01 "
            "(see `wn.synsets('dog')`) or a wnid such as n02084071"
        )
    return synset


def imagenet_below(wn: Any, roots: list[Any]) -> list[str]:
    """ImageNet-1k wnids at or below any of ``roots`` (hyponym closure), in label order."""
    below: set[str] = set()
    for root in roots:
        below.add(wnid_of(root))
        closure = root.closure(lambda s: s.hyponyms() + s.instance_hyponyms())
        below.update(wnid_of(s) for s in closure)
    return [w for w in label_order() if w in below]


def hypernym_subset(spec: str) -> Subset:
    """All ImageNet-1k classes at or below a synset, in label-order-file order.

    The subset is named after the synset's head word, letters only, because ``dcclib`` finds
    sets by names like ``imagenet32dog`` with hyphens and underscores dropped (``dog.n.01`` ->
    ``dog``, ``hunting_dog.n.01`` -> ``huntingdog``). If that is a paper group's name but the
    classes differ (``truck.n.01`` misses the paper's tractor), it gets the prefix ``wn``:
    ``wntruck``.
    """
    wn = get_wordnet()
    synset = resolve_synset(wn, spec)
    wnids = tuple(imagenet_below(wn, [synset]))
    if len(wnids) < 2:
        raise UserError(
            f"{synset.name()} has {len(wnids)} ImageNet-1k classes at or below it; "
            "a fine-grained set needs at least 2"
        )
    word = synset.name().rsplit(".", 2)[0]
    name = "".join(ch for ch in word.lower() if "a" <= ch <= "z")
    if not name:
        raise UserError(f"cannot name a set after {synset.name()}: its head word has no letters")
    if name in GROUP_NAMES and get_group(name).wnids != wnids:
        name = f"wn{name}"
    return Subset(name=name, wnids=wnids, origin=f"hypernym {synset.name()}")


def _paths(synset: Any, keep: int = 5) -> list[str]:
    """The distinct tails (last ``keep`` synsets) of a synset's hypernym paths."""
    tails: list[str] = []
    for path in synset.hypernym_paths():
        tail = " > ".join(s.name() for s in path[-keep:])
        if tail not in tails:
            tails.append(tail)
    return tails


def _path_from(synset: Any, roots: list[Any]) -> str | None:
    """The shortest hypernym path from one of ``roots`` down to ``synset``, or None."""
    best: list[Any] | None = None
    for path in synset.hypernym_paths():
        for i, node in enumerate(path):
            if node in roots and (best is None or len(path) - i < len(best)):
                best = path[i:]
    return " > ".join(s.name() for s in best) if best else None


@dataclass(frozen=True)
class Member:
    """WordNet facts about one class of a group."""

    label: int
    wnid: str
    name: str
    synset: str | None  # None: not a WordNet 3.0 noun synset
    in_imagenet: bool
    lemmas_match: bool  # the ImageNet synonyms are the synset's WordNet lemmas
    path: str | None  # from the group's hypernym down to the class; None: not below it


@dataclass(frozen=True)
class GroupReport:
    """What WordNet 3.0 says about a group (see ``explain_group``)."""

    name: str
    title: str
    hypernyms: tuple[str, ...]
    note: str
    members: tuple[Member, ...]
    closure: tuple[str, ...]  # ImageNet-1k wnids below the hypernyms, label order
    added: tuple[tuple[str, str], ...]  # (wnid, where it sits): members NOT in the closure
    left_out: tuple[tuple[str, str], ...]  # (wnid, where it went): closure minus members
    shared: tuple[tuple[str, str], ...]  # (wnid, other group): members below its hypernyms too

    @property
    def ok(self) -> bool:
        """Every wnid is a WordNet 3.0 noun synset and an ImageNet-1k class with its lemmas."""
        return all(m.synset and m.in_imagenet and m.lemmas_match for m in self.members)

    @property
    def summary(self) -> str:
        """The group as a formula over WordNet, e.g. ``below truck.n.01, plus tractor``."""
        lemmas = wnid_lemmas()
        text = f"ImageNet-1k classes below {' and '.join(self.hypernyms)}"
        if self.left_out:
            text += ", minus " + ", ".join(lemmas[w][0] for w, _ in self.left_out)
        if self.added:
            text += ", plus " + ", ".join(lemmas[w][0] for w, _ in self.added)
        return text if self.added or self.left_out else "exactly the " + text

    def render(self) -> str:
        """The report as text, one fact a line."""
        yes = {True: "yes", False: "NO"}
        ms = self.members
        lines = [
            f"{self.title} ({len(ms)} classes): {self.summary}",
            f"  every wnid is a WordNet 3.0 noun synset: {yes[all(m.synset for m in ms)]}",
            f"  every wnid is an ImageNet-1k class: {yes[all(m.in_imagenet for m in ms)]}",
            f"  ImageNet names = WordNet lemmas: {yes[all(m.lemmas_match for m in ms)]}",
            f"  ImageNet-1k classes below {', '.join(self.hypernyms)}: {len(self.closure)}, "
            f"of which in the group: {len(set(self.closure) & {m.wnid for m in ms})}",
        ]
        lemmas = wnid_lemmas()
        lines.append(
            "  in the group but NOT below "
            + ", ".join(self.hypernyms)
            + ":"
            + ("" if self.added else " none")
        )
        lines += [f"    {w} {lemmas[w][0]}: {where}" for w, where in self.added]
        lines.append(
            "  below "
            + ", ".join(self.hypernyms)
            + " but NOT in the group:"
            + ("" if self.left_out else " none")
        )
        lines += [f"    {w} {lemmas[w][0]}: {where}" for w, where in self.left_out]
        lines.append("  members also below another group's hypernyms:" + ("" if self.shared else " none"))
        lines += [f"    {w} {lemmas[w][0]}: {other}" for w, other in self.shared]
        lines.append(f"  note: {self.note}")
        lines.append("  label  wnid       class / WordNet path")
        for m in ms:
            path = m.path or f"NOT below {', '.join(self.hypernyms)} (see above)"
            lines.append(f"  {m.label:5d}  {m.wnid}  {m.name}: {path}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def explain_group(name: str) -> GroupReport:
    """Check a paper group against WordNet 3.0 and say where every class sits.

    For each member: its synset, whether it is an ImageNet-1k class whose names are the
    synset's lemmas, and its path from the group's hypernym. Then the exceptions: members that
    are NOT in the hyponym closure of the group's hypernyms (with their WordNet parents), and
    ImageNet classes in that closure that the group leaves out (with the paper group that
    holds them instead).
    """
    group = get_group(name)
    wn = get_wordnet()
    roots = [resolve_synset(wn, h) for h in group.hypernyms]
    imagenet, lemmas = set(label_order()), wnid_lemmas()
    members: list[Member] = []
    added: list[tuple[str, str]] = []
    for label, wnid in enumerate(group.wnids):
        synset = synset_of(wn, wnid)
        names = [n.replace("_", " ") for n in synset.lemma_names()] if synset else []
        path = _path_from(synset, roots) if synset else None
        members.append(
            Member(
                label=label,
                wnid=wnid,
                name=lemmas.get(wnid, ("?",))[0],
                synset=synset.name() if synset else None,
                in_imagenet=wnid in imagenet,
                lemmas_match=list(lemmas.get(wnid, ())) == names,
                path=path,
            )
        )
        if synset is not None and path is None:
            parents = ", ".join(s.name() for s in synset.hypernyms())
            meets = ", ".join(sorted({c.name() for r in roots for c in synset.lowest_common_hypernyms(r)}))
            added.append(
                (
                    wnid,
                    f"{synset.name()} sits under {parents} (meets "
                    f"{', '.join(group.hypernyms)} only at {meets}); paths: " + " | ".join(_paths(synset)),
                )
            )
    closure = imagenet_below(wn, roots)
    left_out = []
    for wnid in closure:
        if wnid not in group.wnids:
            holder = [g.title for g in GROUPS if wnid in g.wnids]
            synset = synset_of(wn, wnid)
            where = f"in the paper's {holder[0]} group" if holder else "in no paper group"
            left_out.append(
                (wnid, f"{where}; WordNet files {synset.name()} under " + " | ".join(_paths(synset)))
            )
    shared = []
    for other in GROUPS:
        if other.name != group.name:
            below = imagenet_below(wn, [resolve_synset(wn, h) for h in other.hypernyms])
            shared += [
                (w, f"also below {', '.join(other.hypernyms)} ({other.title})")
                for w in group.wnids
                if w in below
            ]
    return GroupReport(
        name=group.name,
        title=group.title,
        hypernyms=group.hypernyms,
        note=group.note,
        members=tuple(members),
        closure=tuple(closure),
        added=tuple(added),
        left_out=tuple(left_out),
        shared=tuple(shared),
    )


def explain_hypernym(spec: str) -> str:
    """The classes that ``--hypernym spec`` would build, with their WordNet paths."""
    subset = hypernym_subset(spec)
    wn = get_wordnet()
    root = resolve_synset(wn, spec)
    lines = [
        f"{subset.name} ({len(subset.wnids)} classes): every ImageNet-1k class at or "
        f"below {root.name()} ({root.definition()})"
    ]
    for label, (wnid, cname) in enumerate(zip(subset.wnids, subset.class_names, strict=True)):
        lines.append(f"  {label:5d}  {wnid}  {cname}: {_path_from(synset_of(wn, wnid), [root])}")
    return "\n".join(lines)
