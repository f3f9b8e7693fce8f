"""What runs: the paper's shapes (a GPU) or tiny ones (a CPU, the test suite), and the constants
every section shares."""

from __future__ import annotations

from dataclasses import dataclass, replace

OUTER_INDEX = 300  # past the bi-level warm-up (gamma_o = 250): DCC/DSAC use the contrastive loss
PAPER_OUTER_ITERATIONS = 1000  # K_o
MODES = ("fast-loop", "fast-vmap", "literal")
MIN_START_S = 2.0  # a measurement whose estimate is unknown starts only with this much time left
# A correctness difference above this (relative) is wrong, not rounding: that class-wise mode is
# never chosen as a default. Below it and above the reported tolerance, the row says passed=false.
WRONG = 5e-2


@dataclass(frozen=True)
class Plan:
    model: str  # the matching / evaluation network
    inner_iterations: int | None  # K_i (None: the paper's per-ipc schedule)
    net_epochs: int | None  # T (None: the paper's)
    batch_real: int
    condense: dict[str, tuple[str, int, tuple[str, ...]]]  # section -> (dataset, ipc, methods)
    memory: tuple[str, int, tuple[str, ...], str]  # dataset, ipc, methods (one update), full method
    eval_nets: int
    eval_ipcs: tuple[int, ...]
    eval_epochs: dict[int, tuple[int, int]]  # ipc -> (E1, E2) timed
    eval_groups: tuple[int, ...]  # grouped group sizes (the largest is also timed with vmap)
    check_size: int  # image side of the correctness cases
    check_classes: int
    check_outers: tuple[int, ...]  # outer indices of fast == literal (0: warm-up, then contrastive)
    caps: dict[str, float]  # planned seconds per section
    budget: float  # seconds for all sections, from the start of the process
    repeats: int  # timed outer iterations per mode at most


PAPER = Plan(
    model="convnet",
    inner_iterations=None,
    net_epochs=None,
    batch_real=256,
    condense={
        "condense_main": ("cifar10", 10, ("dc", "dsa", "dcc", "dsac")),
        "condense_ipc1": ("cifar10", 1, ("dsac", "dc", "dsa", "dcc")),
        "condense_ipc50": ("cifar10", 50, ("dsac", "dc")),
        "condense_cifar100_ipc10": ("cifar100", 10, ("dsac", "dc")),
    },
    memory=("cifar100", 50, ("dcc", "dsac", "dc", "dsa"), "dsac"),
    eval_nets=20,
    eval_ipcs=(10, 50),
    eval_epochs={10: (10, 30), 50: (4, 12)},
    eval_groups=(5, 10, 20),
    check_size=16,  # a small case: the paper's ConvNet on 16 x 16 images (the CPU side is slow)
    check_classes=4,
    check_outers=(0, 1),
    caps={
        "env": 5,
        "data": 60,
        "correctness_matching": 12,
        "correctness_outer": 15,
        "correctness_evaluate": 10,
        "condense_main": 75,
        "evaluate": 60,
        "condense_ipc1": 25,
        "condense_ipc50": 60,
        "condense_cifar100_ipc10": 70,
        "memory_cifar100_ipc50": 45,
        "precision": 15,
        "decisions": 0,
        "targets": 0,
    },
    budget=430.0,
    repeats=2,
)

TINY = replace(
    PAPER,
    model="convnet_w32",
    inner_iterations=2,
    net_epochs=1,
    batch_real=4,
    condense={
        "condense_main": ("cifar10", 2, ("dc", "dsa", "dcc", "dsac")),
        "condense_ipc1": ("cifar10", 1, ("dsac",)),
        "condense_ipc50": ("cifar10", 3, ("dc",)),
        "condense_cifar100_ipc10": ("cifar100", 2, ("dsac",)),
    },
    memory=("cifar100", 3, ("dcc", "dc"), "dsac"),
    eval_nets=4,
    eval_ipcs=(2,),
    eval_epochs={2: (1, 2)},
    eval_groups=(2, 4),
    check_size=16,
    check_classes=3,
    check_outers=(0,),
    caps={name: 120.0 for name in PAPER.caps},  # a loaded CPU is slow, and tiny work is short anyway
    budget=300.0,
    repeats=1,
)
