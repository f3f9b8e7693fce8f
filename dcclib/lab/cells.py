"""What one table cell is made of: the data standing for a paper dataset, and its accuracies.

`Lab` (``dcclib.lab.experiments``) fills these; ``dcclib.lab.views`` displays them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from dcclib.lab.paper_results import dataset_label


@dataclass(frozen=True)
class DataUse:
    """Which data stand for one of the paper's datasets in this run, and whether they loaded."""

    paper: str  # the paper's dataset (dcclib name)
    name: str  # the dataset used (== paper unless a stand-in)
    available: bool
    detail: str  # the source of the data, or why they could not be loaded

    @property
    def stand_in(self) -> bool:
        """True when another dataset stands in for the paper's."""
        return self.name != self.paper

    @property
    def label(self) -> str:
        """What the 'data used' column says."""
        if not self.available:
            return f"{dataset_label(self.name)}: not available here"
        if self.stand_in:
            return f"{self.name} (stand-in for {dataset_label(self.paper)})"
        return f"{dataset_label(self.name)} [{self.detail}]"

    def __str__(self) -> str:
        return self.label


@dataclass
class Cell:
    """Every accuracy (percent) measured for one cell of a table: runs x networks."""

    table: str
    use: DataUse
    method: str
    ipc: int
    model: str
    warmup: str
    accuracies: list[float] = field(default_factory=list)
    runs: int = 0
    source: str = ""  # where the numbers came from when the data were not here ("" otherwise)
    paper_ipc: int | None = None  # the paper's img/cls for this cell, when a smoke run uses fewer

    @property
    def compared_ipc(self) -> int:
        """The img/cls of the paper's cell this one is compared with."""
        return self.paper_ipc if self.paper_ipc is not None else self.ipc

    @property
    def mean(self) -> float:
        """Mean accuracy (NaN when there is none)."""
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Population std of the accuracies (NaN with fewer than two)."""
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else math.nan
