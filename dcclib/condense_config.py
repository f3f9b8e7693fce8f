"""The settings of a condensation run (Algorithm 1), with the paper's values as defaults.

`CondenseConfig.resolved()` fills K_i and T from the per-ipc schedule and validates every
setting before any work (a UserError names the bad one). `condense.py` runs the algorithm.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from dcclib.augment import parse_strategy
from dcclib.errors import UserError
from dcclib.matching import CLASSWISE_MODES, DISTANCES
from dcclib.measured import measured_default
from dcclib.methods import CONDENSATION_METHODS, condensation_method
from dcclib.models import list_models

METHODS = CONDENSATION_METHODS  # alias (dcclib.methods is the home of the methods)
CONDENSE_PRECISIONS = ("fp32", "tf32")  # bf16 is not offered for second-order matching
# classwise_mode "auto": measured on the 2-core CPU (loop 1.4-2.1x faster than vmap, see
# reports/performance.md); cuda: as `make gpu-check` measured it (dcclib/measured_defaults.json),
# else vmap, provisional (dcclib.measured.provenance("cuda", "classwise_mode") says which).
CLASSWISE_AUTO = {
    "cpu": "loop",
    "cuda": measured_default("cuda", "classwise_mode", "vmap", lambda v: v in CLASSWISE_MODES),
}
WARMUPS = ("bilevel", "none", "inner")
INITS = ("real", "noise")
# How BatchNorm layers of a matching network get their statistics (only BatchNorm models):
#   original: as the authors' code, before every image update 16 real images per class go
#             through the network in train mode (running statistics updated with momentum 0.1),
#             then BatchNorm is frozen (eval mode) for the matching; the network-training epochs
#             run the whole network in train mode (batch statistics of the synthetic batch).
#   frozen:   exact running averages over 16 real images per class, set once per network and
#             kept frozen (eval mode) through the image updates and the network training.
BATCHNORM_MODES = ("original", "frozen")
BATCHNORM_PER_CLASS = 16  # real images per class for the statistics (BNSizePC of the original)
MAX_LEARNING_RATE = 1e3  # a larger lr-images / lr-net is refused as absurd (it can only diverge)

# (K_i, T) per images-per-class, from the authors' code (see spec/reference-details.md).
INNER_SCHEDULE: dict[int, tuple[int, int]] = {
    1: (10, 5),
    10: (10, 50),
    20: (20, 25),
    30: (30, 20),
    40: (40, 15),
    50: (50, 10),
}


PAPER_OUTER = 1000  # K_o of every published number
PAPER_GAMMA_OUTER = 250  # gamma_o: the first quarter of the networks warm up
PAPER_GAMMA_INNER = 10  # gamma_i: at ipc 1 and 10 (K_i = 10) every step of a warm-up network


def scale_length(length: int, total: int, paper_total: int) -> int:
    """A warm-up length of `paper_total` steps scaled to `total` steps, keeping its share.

    round(length * total / paper_total) (halves up), at least 1 where length > 0 and at most
    `total`: a reduced run (fewer networks K_o or image updates K_i) warms up the same fraction
    of its steps as the paper's run does (gamma_o 250 of 1000 -> 5 of 20; gamma_i 10 of 10 ->
    5 of 5).
    """
    if length <= 0:
        return 0
    return min(total, max(1, math.floor(length * total / paper_total + 0.5)))


def simple_warmup_default(inner_iterations: int, gamma_inner: int = 10) -> int:
    """The Simple warm-up's inner length when none is given: min(gamma_i, K_i // 2).

    The paper does not state it (Table 5). With gamma_i = 10 itself, every image update at ipc 1
    and 10 (K_i = 10) would be class-wise and "Simple" would be plain DC, yet the paper's Simple
    numbers differ from DC's (CIFAR-100 ipc 1: 13.01 against 12.8; ipc 10: 29.74 against 26.6).
    So the Simple warm-up must leave collective steps on every network. We keep the bi-level
    warm-up's gamma_i where it leaves some (ipc >= 20, K_i >= 20) and warm up the first half of
    the inner loop where it would not (ipc 1 and 10: 5 class-wise then 5 collective steps per
    network). Notebook 06 sweeps this length to show how much the unstated choice matters.
    """
    return max(1, min(gamma_inner, inner_iterations // 2))


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
    # gamma_o of the bi-level warm-up; None: the paper's share of K_o (250 of 1000: K_o / 4)
    gamma_outer: int | None = None
    # gamma_i of the bi-level warm-up; None: the paper's 10, scaled as K_i is scaled from the
    # schedule's (10 of K_i = 10 at ipc 1 and 10, 10 of 50 at ipc 50)
    gamma_inner: int | None = None
    # the Simple warm-up's inner length (warmup="inner" only); None: simple_warmup_default(K_i)
    simple_gamma_inner: int | None = None
    lr_images: float = 0.1
    momentum_images: float = 0.5
    lr_net: float = 0.01
    batch_real: int = 256  # real images per class per image update
    batch_train: int = 256  # batch size when training the network on the synthetic set
    distance: str = "layerwise"  # layerwise | mse | cos
    init: str = "real"  # real | noise
    dsa_strategy: str | None = None  # None: the dataset's default
    model: str = "convnet"
    batchnorm: str = "original"  # BatchNorm matching networks: original | frozen (BATCHNORM_MODES)
    seed: int = 0
    # per-class work (DC's per-class gradients, DCC's real-side gradient): loop (one class at a
    # time) | vmap (all classes in one batched call) | auto (by device, CLASSWISE_AUTO)
    classwise_mode: str = "auto"
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
            (
                self.batchnorm in BATCHNORM_MODES,
                f"unknown batchnorm mode '{self.batchnorm}'; choose one of: {', '.join(BATCHNORM_MODES)}",
            ),
        ]
        for name in ("lr_images", "lr_net"):
            value = getattr(self, name)
            checks.append(
                (
                    isinstance(value, (int, float)) and math.isfinite(value) and value <= MAX_LEARNING_RATE,
                    f"{name.replace('_', '-')} must be a finite number <= {MAX_LEARNING_RATE:g}, got {value}",
                )
            )
        checks.append(
            (
                isinstance(self.momentum_images, (int, float)) and 0 <= self.momentum_images < 1,
                f"momentum-images must be in [0, 1), got {self.momentum_images}",
            )
        )
        positive = ["ipc", "outer_iterations", "batch_real", "batch_train", "lr_images", "lr_net"]
        checks += [
            (
                getattr(self, k) > 0,
                f"{k.replace('_', '-')} must be positive, got {getattr(self, k)}",
            )
            for k in positive
        ]
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
        gamma_o, gamma_i = self.gamma_outer, self.gamma_inner
        if gamma_o is None:
            gamma_o = scale_length(PAPER_GAMMA_OUTER, self.outer_iterations, PAPER_OUTER)
        if gamma_i is None:
            schedule_k = INNER_SCHEDULE.get(self.ipc, (k_i, 0))[0]
            gamma_i = scale_length(PAPER_GAMMA_INNER, k_i, schedule_k)
        if gamma_o < 0 or gamma_i < 0:
            raise UserError("warm-up lengths must be >= 0")
        if self.contrastive and self.warmup == "bilevel":
            # the original asserts both (main.py); beyond them DCC would silently run as DC
            if gamma_o > self.outer_iterations:
                raise UserError(
                    f"gamma-outer {gamma_o} > outer-iterations K_o = {self.outer_iterations}: every network "
                    f"would warm up and the run would be plain {'DSA' if self.uses_dsa else 'DC'}; give "
                    f"gamma-outer <= K_o (default: K_o / 4)"
                )
            if gamma_i > k_i:
                raise UserError(
                    f"gamma-inner {gamma_i} > inner-iterations K_i = {k_i}; give gamma-inner <= K_i "
                    f"(default: 10 of the schedule's K_i, scaled)"
                )
        simple = self.simple_gamma_inner
        if self.warmup == "inner" and self.contrastive:
            simple = simple_warmup_default(k_i, gamma_i) if simple is None else simple
            if not 0 <= simple < k_i:
                raise UserError(
                    f"the Simple warm-up (warmup inner) needs 0 <= simple-gamma-inner < K_i = {k_i}, got "
                    f"{simple}: with {simple} every image update would be class-wise and the run plain "
                    f"{'DSA' if self.uses_dsa else 'DC'}"
                )
        elif simple is not None and simple < 0:
            raise UserError(f"simple-gamma-inner must be >= 0, got {simple}")
        return replace(
            self,
            inner_iterations=k_i,
            net_epochs=t,
            gamma_outer=gamma_o,
            gamma_inner=gamma_i,
            simple_gamma_inner=simple,
        )


def config_from_json(text: str) -> CondenseConfig:
    """Rebuild a CondenseConfig from its JSON form (unknown keys are an error)."""
    values = json.loads(text)
    known = set(CondenseConfig.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise UserError(f"unknown condensation settings: {', '.join(sorted(unknown))}")
    return CondenseConfig(**values)
