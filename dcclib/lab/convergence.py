"""Notebook 13: test accuracy against the number of outer iterations K_o (when does DCC pay off?).

One condensation run per (dataset, method) of the longest K_o studied, at the profile's
per-step settings (K_i, T, real batch, the scaled warm-up), is checkpointed and its set is
evaluated at every point of the study along the way (`snapshots`). Its warm-up is the longest
run's, gamma_o = K_o / 4: at a point before gamma_o a contrastive run is still in its class-wise
warm-up (and equals DC's run step for step: same seeds, same networks, same real batches), so a
point is *not* a separate run of that K_o (whose warm-up would end at a quarter of it) except the
last one. DC and DSA never switch, so for them every point equals a separate run.

Every snapshot and every evaluation goes into the Lab's results store (resumable: the run
checkpoints in the store's scratch folder, a rerun computes only what is missing). Each
record of a set keeps the run's trajectory per network: the matching loss, the mean L2 norm
of an image update's gradient and the L2 distance of the set from its initialisation.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch

from dcclib.condense import CondenseConfig, condense
from dcclib.errors import UserError
from dcclib.evaluate import evaluate_set
from dcclib.lab.experiments import Lab
from dcclib.lab.store import config_key
from dcclib.methods import CLASSWISE_TWIN
from dcclib.runs import synthetic_metadata

TRAJECTORY_KEYS = ("outer", "loss", "grad_norm", "moved", "classwise_steps", "collective_steps", "seconds")


@dataclass(frozen=True)
class Study:
    """What one convergence study runs: datasets x methods, evaluated at `points` (K_o)."""

    runs: tuple[tuple[str, str], ...]  # (paper dataset, method)
    points: tuple[int, ...]  # K_o at which the set is evaluated; the last is the run's length
    ipc: int = 1
    model: str = "convnet"

    @property
    def longest(self) -> int:
        return max(self.points)


def set_configs(lab: Lab, paper: str, method: str, study: Study, run: int = 0) -> dict[int, dict]:
    """The store key of the set at every point of one run (the last one is the whole run)."""
    use = lab.use(paper)
    base = lab.set_config(use, method, study.ipc, run)
    longer = replace(lab.profile, outer_iterations=study.longest)
    cfg = CondenseConfig(dataset=use.name, method=method, ipc=study.ipc, seed=lab.seed + run)
    full = {**base, "config": asdict(longer.condense_config(cfg))}
    return {k: full if k == study.longest else {**full, "snapshot": k} for k in sorted(study.points)}


def _condense_snapshots(lab: Lab, paper: str, method: str, study: Study, configs: dict[int, dict]) -> None:
    """Run the longest condensation once, storing the set at every point still missing."""
    missing = [k for k, c in configs.items() if lab.store.exact(c) is None]
    if not missing:
        return
    lab.store.may_compute(configs[missing[0]], f"the {paper} {method} snapshot at K_o {missing[0]}")
    data = lab.data(lab.use(paper).name)
    full = configs[study.longest]
    cfg = CondenseConfig(**full["config"])
    run_dir = lab.store.root / ".runs" / config_key(full)
    for k in missing:
        tic = time.perf_counter()
        resume = (run_dir / "checkpoint.safetensors").is_file()
        out = condense(cfg, data, run_dir=run_dir, resume=resume, stop_after=k, progress=lab.progress)
        trajectory = [{key: row.get(key) for key in TRAJECTORY_KEYS} for row in out.metrics]
        result = {
            "final_loss": trajectory[-1]["loss"] if trajectory else None,
            "outer_iterations": len(trajectory),
            "trajectory": trajectory,
            "seconds": time.perf_counter() - tic,  # this leg of the run only
        }
        meta = {**synthetic_metadata(cfg, data), "snapshot_outer_iterations": k}
        lab.store.put(configs[k], result, out.images, out.labels, meta, device=str(data.device))
        lab.log.append(f"computed {paper} {method} snapshot at K_o {k} in {result['seconds']:.1f} s")
    shutil.rmtree(run_dir, ignore_errors=True)


def _evaluation(
    lab: Lab, paper: str, method: str, study: Study, set_cfg: dict, run: int, compute: bool
) -> dict | None:
    config = lab.eval_config(set_cfg, study.model, run)
    record = lab.store.get(config)
    if record is not None or not compute:
        return record
    lab.store.may_compute(config, f"the evaluation of {paper} {method}")
    shared = _twin_evaluation(lab, paper, method, study, set_cfg, run)
    if shared is not None:  # still in the warm-up: the class-wise twin's very set, evaluated once
        return lab.store.put(config, shared)
    data = lab.data(lab.use(paper).name)
    stored = lab.store.load_set(set_cfg, lab.store.exact(set_cfg))
    images, labels = stored[0].to(data.device), stored[1].to(data.device)
    ev = lab.eval_settings(set_cfg, study.model, run)
    tic = time.perf_counter()
    (res,) = evaluate_set(images, labels, data, method, ev, progress=lab.progress)
    return lab.store.put(
        config, {**res.as_dict(), "seconds": time.perf_counter() - tic}, device=str(data.device)
    )


def _twin_evaluation(lab: Lab, paper: str, method: str, study: Study, set_cfg: dict, run: int) -> dict | None:
    """The twin's evaluation of a point before gamma_o, where the contrastive run *is* the
    class-wise one (same seeds, networks, real batches: the set is bit-identical, checked here),
    evaluated with the same protocol and networks: stored under this point's key with a note.
    None where the sets differ or the twin's point is not evaluated yet."""
    base = CLASSWISE_TWIN.get(method)  # same protocol: the same switches but the loss
    if base is None:
        return None
    k = set_cfg.get("snapshot", study.longest)
    twin_cfg = set_configs(lab, paper, base, study, run)[k]
    mine, twins = lab.store.exact(set_cfg), lab.store.exact(twin_cfg)
    twin_eval = lab.store.get(lab.eval_config(twin_cfg, study.model, run))
    if mine is None or twins is None or twin_eval is None:
        return None
    a, b = lab.store.load_set(set_cfg, mine), lab.store.load_set(twin_cfg, twins)
    if a is None or b is None or not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])):
        return None
    if lab.eval_settings(set_cfg, study.model, run) != lab.eval_settings(twin_cfg, study.model, run):
        return None
    lab.log.append(
        f"reused  {paper} {base.upper()}'s evaluation for {method.upper()} at K_o {k} (the same set)"
    )
    note = f"equals {base.upper()}'s set bit for bit (in the warm-up); its evaluation {twin_eval['key']}"
    return {**twin_eval["result"], "seconds": 0.0, "same_set_as": note}


def run_study(lab: Lab, study: Study, run: int = 0, compute: bool = True) -> pd.DataFrame:
    """Every point of the study, from the store or computed now (`compute` False: only what the
    store holds, each missing point noted in the Lab's log): one row per (dataset, method, K_o).

    Columns: accuracy mean and std over the profile's evaluation networks, the networks' count,
    the mean image-gradient norm over the image updates of the last quarter of networks before
    the point, the set's L2 distance from its initialisation at the point, and how many image
    updates so far were class-collective (DCC's loss).
    """
    rows = []
    for paper, method in study.runs:
        configs = set_configs(lab, paper, method, study, run)
        if not lab.use(paper).available:
            continue
        if compute:
            _condense_snapshots(lab, paper, method, study, configs)
        for k, set_cfg in configs.items():
            stored = lab.store.exact(set_cfg)
            record = _evaluation(lab, paper, method, study, set_cfg, run, compute) if stored else None
            if record is None:
                lab.log.append(f"not in the store: {paper} {method.upper()} at K_o {k} (not shown)")
                continue
            trajectory = stored["result"]["trajectory"]
            recent = trajectory[k - max(1, k // 4) : k]
            rows.append(
                {
                    "dataset": paper,
                    "data": lab.use(paper).label,
                    "method": method,
                    "K_o": k,
                    "acc_mean": 100 * record["result"]["mean"],
                    "acc_std": 100 * record["result"]["std"],
                    "networks": len(record["result"]["accuracies"]),
                    "grad_norm": sum(r["grad_norm"] for r in recent) / len(recent),
                    "moved": trajectory[k - 1]["moved"],
                    "collective_updates": sum(r["collective_steps"] for r in trajectory[:k]),
                    "image_updates": sum(
                        r["classwise_steps"] + r["collective_steps"] for r in trajectory[:k]
                    ),
                }
            )
    return pd.DataFrame(rows)


def trajectories(lab: Lab, study: Study, run: int = 0) -> pd.DataFrame:
    """Per network of each whole run: loss, image-gradient norm, distance from the start."""
    frames = []
    for paper, method in study.runs:
        configs = set_configs(lab, paper, method, study, run)
        stored = [r for r in (lab.store.exact(configs[k]) for k in sorted(configs, reverse=True)) if r]
        if not stored:
            continue
        record = stored[0]  # the longest stored part of the run
        frame = pd.DataFrame(record["result"]["trajectory"])
        frames.append(frame.assign(dataset=paper, method=method, network=frame["outer"] + 1))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# What notebook 13 runs at each profile, at 1 img/cls (the paper's K_o is 1000 everywhere):
# - smoke: DC and DCC on the stand-in digits at K_o 2 and 4 (a pipeline check);
# - cpu: DC and DCC on MNIST and CIFAR-10 at K_o = 20 (the cpu profile's), 50, 100 and 200; DSA and
#   DSAC on MNIST at 20 and 50 (the study's budget, about two hours of 2 CPU cores: an MNIST
#   evaluation, E = 1000 with augmentation, costs minutes per point);
# - quick: DC and DCC on CIFAR-10 at K_o = 100, 250, 500 and 1000 at the paper's per-step settings
#   (quick's): does the gain measured at cpu's per-step settings hold, and how close does K_o 1000 come
#   to the paper's cell? Not in `dcc sweep --plan`: two runs of K_o 1000, about 10 GPU-minutes by the
#   cost model (dcclib.lab.cost.study_flops);
# - paper: all four methods on CIFAR-10 at K_o = 100, 250, 500 and 1000.
STUDIES: dict[str, tuple[Study, ...]] = {
    "smoke": (Study(runs=(("mnist", "dc"), ("mnist", "dcc")), points=(2, 4)),),
    "cpu": (
        Study(
            runs=(("mnist", "dc"), ("mnist", "dcc"), ("cifar10", "dc"), ("cifar10", "dcc")),
            points=(20, 50, 100, 200),
        ),
        Study(runs=(("mnist", "dsa"), ("mnist", "dsac")), points=(20, 50)),
    ),
}
STUDIES["quick"] = (Study(runs=(("cifar10", "dc"), ("cifar10", "dcc")), points=(100, 250, 500, 1000)),)
STUDIES["paper"] = (
    Study(
        runs=(("cifar10", "dc"), ("cifar10", "dcc"), ("cifar10", "dsa"), ("cifar10", "dsac")),
        points=(100, 250, 500, 1000),
    ),
)


def studies_for(
    profile: str, runs: list[str] | None = None, points: list[int] | None = None
) -> tuple[Study, ...]:
    """The profile's studies, or one study of the given `runs` ("dataset:method") and `points`."""
    if runs is None and points is None:
        return STUDIES[profile]
    default = STUDIES[profile]
    pairs = tuple(tuple(r.split(":", 1)) for r in runs) if runs else default[0].runs
    for pair in pairs:
        if len(pair) != 2 or not all(pair):
            raise UserError(f"a study run is 'dataset:method' (e.g. mnist:dcc), got '{':'.join(pair)}'")
    chosen = tuple(points) if points else default[0].points
    if any(not isinstance(k, int) or k < 1 for k in chosen):
        raise UserError(f"study points are positive numbers of outer iterations, got {list(chosen)}")
    return (Study(runs=pairs, points=chosen),)


def run_studies(
    lab: Lab, studies: tuple[Study, ...], run: int = 0, compute: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every point of every study (`run_study`) and every whole run's trajectory (`trajectories`)."""
    points = [run_study(lab, s, run, compute) for s in studies]
    paths = [trajectories(lab, s, run) for s in studies]
    points = [f for f in points if not f.empty]
    paths = [f for f in paths if not f.empty]
    return (
        pd.concat(points, ignore_index=True) if points else pd.DataFrame(),
        pd.concat(paths, ignore_index=True) if paths else pd.DataFrame(),
    )


def main(argv: list[str] | None = None) -> int:
    """Fill the store for notebook 13 (e.g. two processes with disjoint --only in the background)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dcclib.lab.convergence", description=main.__doc__)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", default=None, help="dataset:method,... (default: the whole study)")
    args = parser.parse_args(argv)
    lab = Lab("13_convergence", profile=args.profile, data_root=args.data_root, threads=args.threads)
    only = {tuple(item.split(":")) for item in args.only.split(",")} if args.only else None
    for study in STUDIES[args.profile]:
        for one in study.runs:
            if only is not None and one not in only:
                continue
            tic = time.perf_counter()
            frame = run_study(lab, replace(study, runs=(one,)))
            print(frame.round(3).to_string(), f"\n{one}: {time.perf_counter() - tic:.0f} s", flush=True)
            print("\n".join(lab.log), flush=True)
            lab.log.clear()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
