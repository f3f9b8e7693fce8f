"""The settings of a condensation run (Algorithm 1), with the paper's values as defaults.

`CondenseConfig.resolved()` fills K_i and T from the per-ipc schedule and validates every
setting before any work (a UserError names the bad one). `condense.py` runs the algorithm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from dcclib.augment import parse_strategy
from dcclib.errors import UserError
from dcclib.matching import CLASSWISE_MODES, DISTANCES
from dcclib.methods import CONDENSATION_METHODS, condensation_method
from dcclib.models import list_models

METHODS = CONDENSATION_METHODS  # alias (dcclib.methods is the home of the methods)
CONDENSE_PRECISIONS = ("fp32", "tf32")  # bf16 is not offered for second-order matching
# classwise_mode "auto": measured on the 2-core CPU (loop 1.4-2.1x faster than vmap, see
# reports/performance.md); cuda: vmap, provisional until benchmarks/bench_condense.py runs on a GPU.
CLASSWISE_AUTO = {"cpu": "loop", "cuda": "vmap"}
WARMUPS = ("bilevel", "none", "inner")
INITS = ("real", "noise")

# (K_i, T) per images-per-class, from the authors' code (see spec/reference-details.md).
INNER_SCHEDULE: dict[int, tuple[int, int]] = {
    1: (10, 5),
    10: (10, 50),
    20: (20, 25),
    30: (30, 20),
    40: (40, 15),
    50: (50, 10),
}


@dataclass
class CondenseConfig:
    """Every setting of a condensation run; the defaults are the paper's."""

    dataset: str = "embedded-mnist"
    method: str = "dcc"  # one of dcclib.methods.CONDENSATION_METHODS
    ipc: int = 10  # images per class
    outer_iterations: int = 1000  # K_o
    inner_iterations: int | None = None  # K_i; None: from INNER_SCHEDULE
    net_epochs: int | None = None  # T; None: from INNER_SCHEDULE
    warmup: str = "bilevel"  # bilevel | none | inner ("Simple" of Table 5)
    gamma_outer: int = 250
    gamma_inner: int = 10
    lr_images: float = 0.1
    momentum_images: float = 0.5
    lr_net: float = 0.01
    batch_real: int = 256  # real images per class per image update
    batch_train: int = 256  # batch size when training the network on the synthetic set
    distance: str = "layerwise"  # layerwise | mse | cos
    init: str = "real"  # real | noise
    dsa_strategy: str | None = None  # None: the dataset's default
    model: str = "convnet"
    seed: int = 0
    classwise_mode: str = "auto"  # DC's per-class gradients: loop | vmap | auto (by device)
    # split the real batch (DSA, DCC's gradient, DC's vmap gradients) into chunks of this many
    # images: an int, None (never), or "auto" (as many as fit chunk_budget_mb of activations)
    real_chunk: int | str | None = "auto"
    chunk_budget_mb: int = 16384
    precision: str = "fp32"  # fp32 | tf32 (TF32 matmuls/convs on CUDA; opt-in)
    checkpoint_every: int = 10  # outer iterations between checkpoints (0: only at the end)

    @property
    def uses_dsa(self) -> bool:
        """The method uses DSA (dcclib.methods); a UserError for an unknown method."""
        return condensation_method(self.method).uses_dsa

    @property
    def contrastive(self) -> bool:
        """The method uses the class-collective loss after the warm-up (dcclib.methods)."""
        return condensation_method(self.method).contrastive

    def resolved(self) -> CondenseConfig:
        """Fill K_i and T from the schedule and validate every setting (UserError if bad)."""
        condensation_method(self.method)  # the method first: a UserError naming the known ones
        checks = [
            (
                self.warmup in WARMUPS,
                f"unknown warm-up '{self.warmup}'; choose one of: {', '.join(WARMUPS)}",
            ),
            (
                self.distance in DISTANCES,
                f"unknown distance '{self.distance}'; choose one of: {', '.join(DISTANCES)}",
            ),
            (self.init in INITS, f"unknown init '{self.init}'; choose one of: {', '.join(INITS)}"),
            (
                self.classwise_mode in (*CLASSWISE_MODES, "auto"),
                f"unknown class-wise mode '{self.classwise_mode}'; choose loop, vmap or auto",
            ),
            (
                self.precision in CONDENSE_PRECISIONS,
                f"unknown precision '{self.precision}'; choose one of: {', '.join(CONDENSE_PRECISIONS)}",
            ),
            (
                self.real_chunk is None
                or self.real_chunk == "auto"
                or (isinstance(self.real_chunk, int) and self.real_chunk > 0),
                f"real-chunk must be a positive integer, 'auto' or None, got {self.real_chunk!r}",
            ),
            (self.chunk_budget_mb > 0, f"chunk-budget-mb must be positive, got {self.chunk_budget_mb}"),
        ]
        positive = ["ipc", "outer_iterations", "batch_real", "batch_train", "lr_images", "lr_net"]
        checks += [
            (
                getattr(self, k) > 0,
                f"{k.replace('_', '-')} must be positive, got {getattr(self, k)}",
            )
            for k in positive
        ]
        checks += [(self.gamma_outer >= 0 and self.gamma_inner >= 0, "warm-up lengths must be >= 0")]
        checks += [(self.checkpoint_every >= 0, "checkpoint-every must be >= 0")]
        checks += [
            (
                self.model in list_models(),
                f"unknown model '{self.model}'; choose one of: {', '.join(list_models())}",
            )
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.dsa_strategy is not None:
            parse_strategy(self.dsa_strategy)  # raises UserError for an unknown family
        k_i, t = self.inner_iterations, self.net_epochs
        if k_i is None or t is None:
            if self.ipc not in INNER_SCHEDULE:
                raise UserError(
                    f"ipc {self.ipc} has no default (K_i, T): give --inner-iterations, --net-epochs "
                    f"(defaults exist for ipc {sorted(INNER_SCHEDULE)})"
                )
            default_k, default_t = INNER_SCHEDULE[self.ipc]
            k_i = default_k if k_i is None else k_i
            t = default_t if t is None else t
        if k_i <= 0 or t < 0:
            raise UserError(f"inner-iterations must be positive and net-epochs >= 0, got {k_i}, {t}")
        return replace(self, inner_iterations=k_i, net_epochs=t)


def config_from_json(text: str) -> CondenseConfig:
    """Rebuild a CondenseConfig from its JSON form (unknown keys are an error)."""
    values = json.loads(text)
    known = set(CondenseConfig.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise UserError(f"unknown condensation settings: {', '.join(sorted(unknown))}")
    return CondenseConfig(**values)
