"""Every method the project knows, as one record each: the only home of a method's properties.

A condensation method (DC, DSA, DCC, DSAC) is defined by two switches of Algorithm 1:
- `uses_dsa`: Siamese DSA while matching, DSA while the matching network trains, and DSA in the
  evaluation protocol (E = 1000) for the set it produces;
- `contrastive`: the class-collective (DCC) loss once the warm-up is over; only these methods
  have a warm-up setting (Tables 4-5).
The selection baselines (Random, C-score, GraNd, EL2N), KIP and the whole dataset are listed
too, so that every table, the evaluation protocol and the CLI ask one place. An unknown name is
a UserError with the list of known ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcclib.errors import UserError

KINDS = ("condense", "select", "kernel", "reference")


@dataclass(frozen=True)
class Method:
    """One method: its name (the CLI's and the store's), the paper's label, and its switches."""

    name: str
    label: str  # as the paper's tables write it
    kind: str  # condense | select (a subset of real images) | kernel (KIP) | reference
    uses_dsa: bool = False  # DSA in matching, in network training and in the evaluation protocol
    contrastive: bool = False  # DCC's class-collective loss after the warm-up

    @property
    def condenses(self) -> bool:
        """A set learned by gradient matching (Algorithm 1)."""
        return self.kind == "condense"

    @property
    def eval_augment(self) -> str | None:
        """The evaluation protocol's augmentation fixed by the method (None: by dataset/model)."""
        return "dsa" if self.uses_dsa else None


_ALL = (
    Method("random", "Random", "select"),
    Method("cscore", "C-score", "select"),
    Method("grand", "GraNd", "select"),
    Method("el2n", "EL2N", "select"),
    Method("kip", "KIP", "kernel"),
    Method("dc", "DC", "condense"),
    Method("dsa", "DSA", "condense", uses_dsa=True),
    Method("dcc", "DCC", "condense", contrastive=True),
    Method("dsac", "DSAC", "condense", uses_dsa=True, contrastive=True),
    Method("whole", "Whole dataset", "reference"),
)
METHODS: dict[str, Method] = {m.name: m for m in _ALL}
CONDENSATION_METHODS: tuple[str, ...] = tuple(m.name for m in _ALL if m.condenses)
CONTRASTIVE_METHODS: tuple[str, ...] = tuple(m.name for m in _ALL if m.contrastive)
LABELS: dict[str, str] = {m.name: m.label for m in _ALL}
# a contrastive method's class-wise twin: the same switches but the loss (dcc -> dc, dsac -> dsa)
CLASSWISE_TWIN: dict[str, str] = {
    m.name: next(b.name for b in _ALL if b.condenses and not b.contrastive and b.uses_dsa == m.uses_dsa)
    for m in _ALL
    if m.contrastive
}


def get_method(name: str, among: tuple[str, ...] | None = None) -> Method:
    """The record of `name`; a UserError when it is unknown (or not one of `among`)."""
    choices = among if among is not None else tuple(METHODS)
    if name not in choices:
        raise UserError(f"unknown method '{name}'; choose one of: {', '.join(choices)}")
    return METHODS[name]


def condensation_method(name: str) -> Method:
    """A method that Algorithm 1 can run (dc | dsa | dcc | dsac); a UserError otherwise."""
    return get_method(name, CONDENSATION_METHODS)
