"""The paper's analyses run through a notebook's Lab: from its results store, or computed now.

Each function builds the store key of one result (the full config, the dataset's identity and
the library version), returns the stored result when there is one, and otherwise computes it
with the pure analysis code in ``dcclib.analyses`` and stores it. When the data are not here,
only a result stored by another machine can be shown (None otherwise).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from dcclib.analyses.alignment import FeatureNetConfig, feature_metrics, load_or_train_feature_network
from dcclib.analyses.continual import ContinualConfig, ContinualResult, condenses, run_continual
from dcclib.analyses.kernel_velocity import VelocityTrace, track_velocity
from dcclib.condense import CondenseConfig, condense
from dcclib.data import ImageDataset, dataset_identity
from dcclib.fingerprint import ALGORITHM_VERSION
from dcclib.runs import synthetic_metadata

if TYPE_CHECKING:  # for the hints only (experiments does not import this module: no cycle)
    from dcclib.lab.experiments import Lab


# ---------------------------------------------------------------------------------------------
# Figure 6: one point (a synthetic set under a feature network)
# ---------------------------------------------------------------------------------------------
def alignment_point(
    lab: Lab,
    paper: str,
    method: str,
    ipc: int,
    run: int,
    feature: FeatureNetConfig,
    cache_dir: str | Path,
    alpha: float = 2.0,
    t: float = 2.0,
    **overrides: Any,
) -> dict | None:
    """One point of Figure 6 (a synthetic set under a feature network), from `lab`'s results
    store or computed now (the set via `lab.synthetic_set`, the network from the cache).
    None when the data are missing and nothing is stored. `lab` is an experiments.Lab."""

    use = lab.use(paper)
    set_config = lab.set_config(use, method, ipc, run, **overrides)
    config = {
        "kind": "alignment",
        "profile": lab.profile.name,
        "dataset": set_config["dataset"],
        "set": set_config,
        "feature": asdict(feature),
        "alpha": alpha,
        "t": t,
        "algorithm": ALGORITHM_VERSION,
    }
    if not use.available:
        hits = lab.store.find_requested(config)
        return hits[-1]["result"] if hits else None
    record = lab.store.get(config)
    if record is not None:
        lab.log.append(f"reused  alignment point {record['key']} ({method}, run {run}, {feature.model})")
        return record["result"]
    lab.store.may_compute(config, f"the alignment point ({method}, run {run}, {feature.model})")
    tic = time.perf_counter()
    images, labels, data = lab.synthetic_set(paper, method, ipc, run, **overrides)
    net, meta, hit = load_or_train_feature_network(feature, data, cache_dir)
    result = {
        **feature_metrics(net, images, labels, alpha, t),
        "feature_key": meta["key"],
        "feature_test_accuracy": meta["test_accuracy"],
    }
    seconds = time.perf_counter() - tic
    lab.store.put(config, {**result, "seconds": seconds}, device=str(lab.device))
    lab.log.append(
        f"computed alignment point ({method}, run {run}, {feature.model}"
        f"{', cached network' if hit else ', network trained'}) in {seconds:.1f} s"
    )
    return result


# ---------------------------------------------------------------------------------------------
# Figure 4: one kernel-velocity trace
# ---------------------------------------------------------------------------------------------
def velocity_experiment(
    lab: Lab,
    paper: str,
    method: str,
    ipc: int,
    kind: str = "full",
    lag: int = 1,
    run: int = 0,
    schedule: dict | None = None,
    **overrides: Any,
) -> tuple[VelocityTrace | None, CondenseConfig]:
    """Figure 4's trace for one method, from `lab`'s results store or computed now.

    `lab` is an experiments.Lab. `overrides` go into the paper's CondenseConfig before the
    profile scales it; `schedule` replaces fields after scaling (e.g. outer_iterations,
    inner_iterations, net_epochs, batch_real). None when the data are missing and nothing is stored.
    """

    use = lab.use(paper)
    lab.ran_sets = True  # its outputs depend on the profile's loops
    base = CondenseConfig(dataset=use.name, method=method, ipc=ipc, seed=lab.seed + run, **overrides)
    cfg = replace(lab.profile.condense_config(base), **(schedule or {})).resolved()
    config = {
        "kind": "velocity",
        "profile": lab.profile.name,
        "dataset": dataset_identity(lab.data(use.name)) if use.available else {"name": use.name},
        "config": asdict(cfg),
        "kernel": kind,
        "lag": lag,
        "run": run,
        "algorithm": ALGORITHM_VERSION,
    }
    if not use.available:
        hits = lab.store.find_requested(config)
        return (VelocityTrace.from_result(hits[-1]["result"]) if hits else None), cfg
    record = lab.store.get(config)
    if record is not None:
        lab.log.append(f"reused  velocity trace {record['key']} ({method})")
        return VelocityTrace.from_result(record["result"]), cfg
    lab.store.may_compute(config, f"the velocity trace ({method})")
    tic = time.perf_counter()
    trace, _ = track_velocity(cfg, lab.data(use.name), kind, lag, progress=lab.progress)
    seconds = time.perf_counter() - tic
    record = lab.store.put(config, {**trace.as_result(), "seconds": seconds}, device=str(lab.device))
    lab.log.append(f"computed velocity trace {record['key']} ({method}) in {seconds:.1f} s")
    return trace, cfg


# ---------------------------------------------------------------------------------------------
# Figures 7/8: one continual-learning run (with its condensed memories)
# ---------------------------------------------------------------------------------------------
def _memory_set(
    lab: Lab, task: ImageDataset, method: str, ipc: int, run: int, overrides: dict
) -> tuple[Tensor, Tensor, dict]:
    """A task's condensed memory, stored like `Lab.set_config` stores a synthetic set."""

    cfg = lab.profile.condense_config(
        CondenseConfig(dataset=task.name, method=method, ipc=ipc, seed=lab.seed + run, **overrides)
    )
    config = {
        "profile": lab.profile.name,
        "dataset": dataset_identity(task),
        "method": method,
        "ipc": ipc,
        "run": run,
        "algorithm": ALGORITHM_VERSION,
        "kind": "condense",
        "config": asdict(cfg),
    }
    record = lab.store.get(config)
    loaded = lab.store.load_set(config, record) if record is not None else None
    if loaded is not None:
        lab.log.append(f"reused  memory {record['key']} ({method}, {task.name})")
        return loaded[0].to(task.device), loaded[1].to(task.device), config
    lab.store.may_compute(config, f"the {method} memory of {task.name}")
    tic = time.perf_counter()
    out = condense(cfg, task, progress=lab.progress)
    record = lab.store.put(
        config,
        {"seconds": time.perf_counter() - tic},
        out.images,
        out.labels,
        synthetic_metadata(cfg, task),
        device=str(task.device),
    )
    lab.log.append(
        f"computed memory {record['key']} ({method}, {task.name}) in {time.perf_counter() - tic:.1f} s"
    )
    return out.images, out.labels, config


def continual_experiment(
    lab: Lab,
    tasks: list[ImageDataset] | None,
    sequence: str,
    cfg: ContinualConfig,
    run: int = 0,
    **condense_overrides: Any,
) -> ContinualResult | None:
    """One run of one method on a loaded sequence, from `lab`'s results store or computed now.

    `tasks` None means the data are not here: only a stored result can be returned (or None).
    DSA/DSAC memories are condensed at the lab's profile (`condense_overrides` first).
    """

    cfg = replace(cfg, seed=lab.seed + run)
    cfg.check()
    lab.ran_sets = True  # its memories are condensed at the profile's loops
    tasks_key = [dataset_identity(t) for t in tasks] if tasks is not None else None
    config = {
        "kind": "continual",
        "profile": lab.profile.name,
        "dataset": {"name": sequence, **({"tasks": tasks_key} if tasks is not None else {})},
        "continual": asdict(cfg),
        "condense": condense_overrides,
        "run": run,
        "algorithm": ALGORITHM_VERSION,
    }
    if tasks is None:
        hits = lab.store.find_requested(config)
        return (
            ContinualResult(**{k: v for k, v in hits[-1]["result"].items() if k != "average"})
            if hits
            else None
        )
    record = lab.store.get(config)
    if record is not None:
        lab.log.append(f"reused  continual run {record['key']} ({cfg.method}, run {run})")
        return ContinualResult(**{k: v for k, v in record["result"].items() if k != "average"})
    lab.store.may_compute(config, f"the continual run ({cfg.method}, run {run})")
    memories = None
    if condenses(cfg.method):
        memories = [
            _memory_set(lab, t, cfg.method, cfg.memory_per_class, run, condense_overrides)[:2]
            for t in tasks[:-1]
        ]
    tic = time.perf_counter()
    result = run_continual(tasks, cfg, memories=memories)
    result.config["condense_overrides"] = condense_overrides
    seconds = time.perf_counter() - tic
    record = lab.store.put(config, result.as_dict(), device=str(lab.device), seconds=seconds)
    lab.log.append(f"computed continual run {record['key']} ({cfg.method}, run {run}) in {seconds:.1f} s")
    return result
