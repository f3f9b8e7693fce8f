"""One setting that scales every experiment: smoke, cpu, quick or paper.

- smoke: CPU, embedded offline data, about a minute per notebook. Numbers show that the
  pipeline runs; they are never paper numbers. nbval checks the notebooks at this profile.
- cpu: 2 CPU cores, the real datasets (MNIST, Fashion-MNIST, CIFAR-10 from --data-root or a
  download), K_o = 20 networks, K_i <= 5, T <= 5, 32 real images per class, 1 run x 3 networks;
  each notebook plans what it runs at this profile so that it ends in about 20 minutes.
- quick: one GPU, real data, K_o = 200 networks and otherwise the paper's loops (K_i, T, 256 real
  images per class, the protocol's E), 2 runs x 5 networks. Notebook 13's convergence study (at
  cpu's per-step settings) saw DCC ahead of DC on CIFAR-10 from K_o about 100 on, by 2.9 points
  at 200 (the paper: K_o 1000). Each notebook plans the cells of its claim that fit: `make
  reports` is about one GPU-hour in all by the cost model (`dcc sweep --plan --profile quick`,
  at an assumed 26.8 TFLOP/s until `make gpu-check` measures it).
- paper: exactly the paper's settings (K_o = 1000, 5 condensation runs x 20 networks).

A profile rewrites a CondenseConfig / EvalConfig; it is recorded in every output. The warm-up
keeps the paper's shares: gamma_o scales with K_o (250 of 1000) and gamma_i with K_i (10 of 10
at ipc 1 and 10), so that a reduced run warms up on entirely class-wise networks, as the paper's
does, and DCC's contrastive phase still exists in short runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from dcclib.condense import CondenseConfig
from dcclib.condense_config import PAPER_GAMMA_OUTER, PAPER_OUTER, scale_length
from dcclib.data.variants import DCC_CIFAR100
from dcclib.errors import UserError
from dcclib.evaluate import EvalConfig


@dataclass(frozen=True)
class Profile:
    name: str
    outer_iterations: int | None  # K_o; None: the paper's 1000
    max_inner_iterations: int | None  # cap on K_i; None: the schedule's
    max_net_epochs: int | None  # cap on T; None: the schedule's
    batch_real: int | None  # real images per class per update; None: 256
    num_runs: int  # condensation runs per table cell (paper: 5)
    num_nets: int  # evaluation networks per run (paper: 20)
    eval_epochs: int | None  # E; None: the protocol's (300 or 1000)
    default_dataset: str  # what notebooks use when the paper's dataset is not available
    device: str  # "cpu" or "auto"
    # (paper's dataset, what this profile loads for it): the paper profile reproduces the DCC
    # code's CIFAR-100 normalisation (CIFAR-10's statistics, dcclib.data.variants)
    dataset_variants: tuple[tuple[str, str], ...] = ()

    def dataset_for(self, paper: str) -> str:
        """The dataset this profile loads for the paper's dataset `paper`."""
        return dict(self.dataset_variants).get(paper, paper)

    def condense_config(self, cfg: CondenseConfig) -> CondenseConfig:
        """The paper's config `cfg`, scaled to this profile (K_i, T from the schedule first).

        The warm-up keeps the paper's shares: gamma_o scales with K_o and gamma_i (and the Simple
        warm-up's default length) with K_i, by `scale_length` (at K_i = 10 -> 5: gamma_i 10 -> 5,
        so the warm-up networks stay entirely class-wise). A Simple length given explicitly is
        run as given.
        """
        given_simple = cfg.simple_gamma_inner
        cfg = cfg.resolved()
        outer = self.outer_iterations or cfg.outer_iterations
        k_i = min(cfg.inner_iterations, self.max_inner_iterations or cfg.inner_iterations)
        simple = given_simple
        if simple is None and cfg.simple_gamma_inner is not None:
            simple = scale_length(cfg.simple_gamma_inner, k_i, cfg.inner_iterations)
            simple = min(simple, k_i - 1)  # the Simple warm-up leaves a collective step
        return replace(
            cfg,
            outer_iterations=outer,
            gamma_outer=scale_length(cfg.gamma_outer, outer, cfg.outer_iterations),
            inner_iterations=k_i,
            gamma_inner=scale_length(cfg.gamma_inner, k_i, cfg.inner_iterations),
            net_epochs=min(cfg.net_epochs, self.max_net_epochs or cfg.net_epochs),
            batch_real=self.batch_real or cfg.batch_real,
            simple_gamma_inner=simple,
        ).resolved()

    def eval_config(self, models: tuple[str, ...] = ("convnet",), seed: int = 0) -> EvalConfig:
        """The evaluation settings of this profile (networks, epochs) for `models`."""
        return EvalConfig(models=tuple(models), num_nets=self.num_nets, epochs=self.eval_epochs, seed=seed)

    def reductions(self) -> str:
        """What this profile changes from the paper's settings, in one line (every output says it)."""
        if self.name == "paper":
            return (
                "profile paper: the paper's settings (K_o 1000, gamma_o 250, K_i and T from the "
                "schedule, gamma_i 10, "
                "256 real/class, 5 runs x 20 networks)"
            )
        outer = self.outer_iterations or PAPER_OUTER
        gamma_o = scale_length(PAPER_GAMMA_OUTER, outer, PAPER_OUTER)
        parts = [f"K_o {outer} of {PAPER_OUTER}", f"gamma_o {gamma_o} (paper {PAPER_GAMMA_OUTER})"]
        parts.append(
            f"K_i <= {self.max_inner_iterations}" if self.max_inner_iterations else "K_i as the paper"
        )
        parts.append("gamma_i scaled with K_i (= K_i at 1 and 10 img/cls, as the paper)")
        parts.append(f"T <= {self.max_net_epochs}" if self.max_net_epochs else "T as the paper")
        parts.append(f"{self.batch_real or 256} real/class")
        parts.append(f"{self.num_runs} run(s) x {self.num_nets} networks (paper 5 x 20)")
        parts.append(f"E {self.eval_epochs}" if self.eval_epochs else "E as the protocol")
        return f"profile {self.name}: " + ", ".join(parts)

    def as_dict(self) -> dict:
        """The profile as a plain dict (for records)."""
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        outer_iterations=4,
        max_inner_iterations=2,
        max_net_epochs=2,
        batch_real=16,
        num_runs=1,
        num_nets=2,
        eval_epochs=30,
        default_dataset="embedded-mnist",
        device="cpu",
    ),
    "cpu": Profile(
        "cpu",
        outer_iterations=20,
        max_inner_iterations=5,
        max_net_epochs=5,
        batch_real=32,
        num_runs=1,
        num_nets=3,
        eval_epochs=None,
        default_dataset="mnist",
        device="cpu",
    ),
    "quick": Profile(
        "quick",
        outer_iterations=200,
        max_inner_iterations=None,
        max_net_epochs=None,
        batch_real=None,
        num_runs=2,
        num_nets=5,
        eval_epochs=None,
        default_dataset="cifar10",
        device="auto",
    ),
    "paper": Profile(
        "paper",
        outer_iterations=None,
        max_inner_iterations=None,
        max_net_epochs=None,
        batch_real=None,
        num_runs=5,
        num_nets=20,
        eval_epochs=None,
        default_dataset="cifar10",
        device="auto",
        dataset_variants=(("cifar100", DCC_CIFAR100),),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name`; a UserError when there is none."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(f"unknown profile '{name}'; choose one of: {', '.join(PROFILES)}") from None
