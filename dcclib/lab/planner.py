"""A notebook's jobs, found by running its code with a planner in place of the computations.

``plan_notebook`` runs the notebook's code cells in this process, as papermill would (the
parameters cell, then the given parameters, in the notebook's folder), while a ``Planner`` is
active (``dcclib.lab.experiments.PLANNER``). Every ``Lab`` made then hands its computations to
the planner: ``Lab._set`` and ``Lab._evaluation`` get a stand-in back (the set's initial images,
an empty record) and the planner notes a ``Job``: the store config of the result (its key is the
store key), the call that computes it, its cost (``dcclib.lab.cost``) and whether it is stored.
The analyses of ``dcclib.lab.analysis_runs`` are wrapped for the run: where the store lacks their
result, the wrapper notes the job instead of computing. Without the data, ``Lab.data`` gets a
placeholder of the right shape (zeros): the plan and its cost are complete, and its jobs are
marked "no data" (their keys are provisional; they cannot run here).

Nothing is computed and nothing is written; tables and figures are not saved.

``Job.run`` is what the notebook would have called; ``dcclib.lab.job_run.execute`` calls it in a
worker, with the planner off (``computing``), after planning the same notebook there.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from dcclib.condense import CondenseConfig, initial_synthetic
from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.evaluate import random_subset
from dcclib.lab import cost
from dcclib.lab.experiments import PLANNER, Lab
from dcclib.lab.store import (
    RESULTS_ENV,
    STALE_ENV,
    TENSOR_LIMIT_ENV,
    ResultStore,
    canonical,
    config_key,
    tensor_limit,
)

PLACEHOLDER = "placeholder: the data are not on this machine"
ANALYSES = ("alignment_point", "velocity_experiment", "continual_experiment")
STAGE_OF = {"condense": 0, "select": 0, "velocity": 0, "continual": 0, "evaluate": 1, "alignment": 1}


@dataclass
class Job:
    """One result a notebook needs: computed by one call, stored under `key`."""

    key: str  # the store key of its result
    kind: str  # condense | select | evaluate | velocity | alignment | continual
    notebook: str
    label: str
    config: dict = field(repr=False)
    available: bool = True  # False: the data are not here (the key is provisional)
    stage: int = 0  # stages run in order: sets (0), what needs them (1), the rest (2)
    deps: tuple[str, ...] = ()
    flops: float = 0.0
    state: str = "missing"  # done | missing | failed | running | no data
    note: dict | None = None  # what the store noted about it (error, host, attempts)
    also: list[str] = field(default_factory=list)  # other notebooks that need it
    lab: Lab | None = field(default=None, repr=False, compare=False)
    run: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    dataset: str | None = None  # a set or an evaluation: what `Lab.compute` loads (None: an analysis)


class _Planned(Exception):
    """Raised inside a wrapped analysis where it would compute: the result is not stored."""

    def __init__(self, config: dict, available: bool) -> None:
        super().__init__(config.get("kind"))
        self.config, self.available = config, available


class _Probe:
    """The store as an analysis sees it while planning: a miss raises _Planned."""

    def __init__(self, store: ResultStore) -> None:
        self.store, self.seen = store, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get(self, config: dict) -> dict | None:
        record = self.store.get(config)
        if record is None:
            raise _Planned(config, True)
        self.seen = config
        return record

    def find_requested(self, config: dict) -> list[dict]:
        hits = self.store.find_requested(config)
        if not hits:
            raise _Planned(config, False)
        self.seen = config
        return hits


class Planner:
    """Collects the jobs of one notebook run (see the module doc); Lab calls the first five methods."""

    def __init__(self, notebook: str) -> None:
        self.notebook = notebook
        self.jobs: dict[str, Job] = {}
        self.labs: list[Lab] = []
        self._features: set[str] = set()

    def adopt(self, lab: Lab) -> None:
        self.labs.append(lab)

    def is_placeholder(self, source: str) -> bool:
        return PLACEHOLDER in source

    def placeholder(self, name: str, error: UserError) -> ImageDataset | UserError:
        """Zeros of the dataset's shape (50 images a class) when its data are not here."""
        try:
            s = cost.shape_of(name)
        except UserError:
            return error
        x = torch.zeros(s.classes * 50, s.channels, s.size, s.size)
        y = torch.arange(s.classes).repeat_interleave(50)
        names = [f"class {c}" for c in range(s.classes)]
        stats = (0.0,) * s.channels
        return ImageDataset(name, x, y, x[: s.classes], y[::50], names, stats, stats, PLACEHOLDER)

    def want_set(self, lab: Lab, config: dict, data: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
        record = lab.store.get(config)
        loaded = lab.store.load_set(config, record) if record is not None else None
        done = self._set_stored(lab, config, data.name, exact=False)
        self._set_job(lab, config, data.name, not self.is_placeholder(data.source), done)
        if loaded is not None:
            return loaded[0].to(data.device), loaded[1].to(data.device)
        if config["kind"] == "condense":
            return initial_synthetic(data, CondenseConfig(**config["config"]))
        return random_subset(data, config["ipc"], config["seed"])

    def want_evaluation(
        self, lab: Lab, use: Any, method: str, ipc: int, model: str, run: int, overrides: dict
    ) -> dict:
        set_config = lab.set_config(use, method, ipc, run, **overrides)
        config = lab.eval_config(set_config, model, run)
        if use.available:
            record = lab.store.get(config)
        else:
            record = next(iter(lab.store.find_requested(config)[-1:]), None)
        deps = ()
        if record is None:
            stored = self._set_stored(lab, set_config, use.name)
            deps = (self._set_job(lab, set_config, use.name, use.available, stored),)
        job = partial(lab._evaluation, use, method, ipc, model, run, overrides)
        flops = _safe(lambda: cost.evaluation_flops(config, self._shape(lab, use.name)))
        label = f"{_set_label(set_config)} -> {model} x{config['eval']['num_nets']}"
        self._add(lab, config, label, use.available, record is not None, job, flops, deps, use.name)
        return record or {"key": config_key(config), "result": {"accuracies": []}}

    def _set_stored(self, lab: Lab, config: dict, name: str, exact: bool = True) -> bool:
        """The set's record is stored with its tensors (or they are too large to be stored at all);
        `exact`: of this algorithm version (a set that new results are computed from)."""
        record = lab.store.exact(config) if exact else lab.store.get(config)
        if record is None or record.get("tensors"):
            return record is not None
        try:
            s = self._shape(lab, name)
        except UserError:
            return True
        return s.classes * config["ipc"] * (4 * s.channels * s.size**2 + 8) > tensor_limit()

    def _set_job(self, lab: Lab, config: dict, name: str, available: bool, done: bool) -> str:
        flops = 0.0
        if config["kind"] == "condense":
            flops = _safe(lambda: cost.condense_flops(config["config"], self._shape(lab, name)))
        job = partial(_compute_set, lab, config, name)
        return self._add(lab, config, _set_label(config), available, done, job, flops, dataset=name)

    def _add(
        self,
        lab: Lab,
        config: dict,
        label: str,
        available: bool,
        done: bool,
        run: Callable[[], Any],
        flops: float,
        deps: tuple[str, ...] = (),
        dataset: str | None = None,
    ) -> str:
        key, kind, cfg = config_key(config), config["kind"], canonical(config)
        if key not in self.jobs:
            job = Job(key, kind, self.notebook, label, cfg, available, STAGE_OF.get(kind, 1), deps, flops)
            job.state = "done" if done else ("missing" if available else "no data")
            job.lab, job.run, job.dataset = lab, run, dataset
            self.jobs[key] = job
        return key

    def _shape(self, lab: Lab, name: str) -> cost.Shape:
        data = lab._data.get(name)
        if isinstance(data, ImageDataset) and not self.is_placeholder(data.source):
            return cost.shape_of_data(data)
        return cost.shape_of(name)

    # ---------------------------------------------------------------------------- analyses
    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        """`real` (an analysis_runs function) that, while this planner plans, notes its job."""

        def planned(lab: Lab, *args: Any, **kwargs: Any) -> Any:
            if lab.planner is not self:
                return real(lab, *args, **kwargs)
            store, probe = lab.store, _Probe(lab.store)
            lab.store = probe
            try:
                out = real(lab, *args, **kwargs)
            except _Planned as missing:
                lab.store = store
                self._analysis(lab, real, args, kwargs, missing.config, missing.available, False)
                if name == "velocity_experiment":
                    return None, CondenseConfig(**missing.config["config"])
                return None
            finally:
                lab.store = store
            if probe.seen is not None:
                self._analysis(lab, real, args, kwargs, probe.seen, True, True)
            return out

        return planned

    def _analysis(
        self, lab: Lab, real: Callable, args: tuple, kwargs: dict, config: dict, available: bool, done: bool
    ) -> None:
        kind, name, deps, flops, stage = config["kind"], config["dataset"]["name"], (), 0.0, None
        if kind == "velocity":
            flops = _safe(lambda: cost.condense_flops(config["config"], self._shape(lab, name)))
            label = f"velocity {name} {config['config']['method']} {config['kernel']} run {config['run']}"
        elif kind == "alignment":
            set_config, feature = config["set"], config["feature"]
            if not done:
                stored = available and self._set_stored(lab, set_config, name)
                deps = (self._set_job(lab, set_config, name, available, stored),)
            fkey = json.dumps([name, feature], sort_keys=True)
            stage = 2  # after the first point of its feature network, which trains and caches it
            if fkey not in self._features:  # one training per feature network: the first point pays
                self._features.add(fkey)
                flops = _safe(lambda: cost.feature_net_flops(feature, self._shape(lab, name)))
                stage = 1
            label = f"alignment {_set_label(set_config)} under {feature['model']} seed {feature['seed']}"
        else:
            flops = _safe(lambda: _continual_flops(lab, config, args, kwargs))
            label = f"continual {name} {config['continual']['method']} run {config['run']}"
        key = self._add(lab, config, label, available, done, partial(real, lab, *args, **kwargs), flops, deps)
        self.jobs[key].stage = stage if stage is not None else self.jobs[key].stage


def _continual_flops(lab: Lab, config: dict, args: tuple, kwargs: dict) -> float:
    from dcclib.analyses.continual import condenses
    from dcclib.analyses.task_sequences import SEQUENCES

    tasks, sequence = args[0], args[1]
    shapes = (
        [cost.shape_of_data(t) for t in tasks] if tasks else [cost.shape_of(t) for t in SEQUENCES[sequence]]
    )
    cont = config["continual"]
    memory = None
    if condenses(cont["method"]):
        base = CondenseConfig(method=cont["method"], ipc=cont["memory_per_class"], **kwargs)
        memory = asdict(lab.profile.condense_config(base))
    return cost.continual_flops(config, shapes, memory)


def _safe(f: Callable[[], float]) -> float:
    try:
        return f()
    except UserError:
        return math.nan  # no shape known: the cost is shown as unknown


def _set_label(config: dict) -> str:
    text = f"{config['dataset']['name']} {config['method']} ipc {config['ipc']} run {config['run']}"
    cfg = config.get("config") or {}
    defaults = asdict(CondenseConfig())
    shown = [k for k in ("warmup", "simple_gamma_inner", "model", "batchnorm", "init") if k in cfg]
    shown = [
        k for k in shown if cfg[k] != defaults[k] and (k != "simple_gamma_inner" or cfg["warmup"] == "inner")
    ]
    return text + "".join(f" {k}={cfg[k]}" for k in shown)


def _compute_set(lab: Lab, config: dict, name: str) -> None:
    lab._set(config, lab.data(name))


# ------------------------------------------------------------------------------ running cells
@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block (restored after)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    here = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def _run_cells(path: Path, parameters: dict) -> None:
    """Execute the notebook's code cells in one namespace, the parameters after their cell."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cells = json.loads(path.read_text())["cells"]
    namespace: dict[str, Any] = {"__name__": "__main__", "display": lambda *a, **k: None}
    try:
        for i, cell in enumerate(cells):
            if cell.get("cell_type") != "code":
                continue
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            # dont_inherit: the cell compiles as in a kernel, not under this module's PEP 563 import
            exec(compile(source, f"{path.name}, cell {i}", "exec", dont_inherit=True), namespace)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                namespace.update(parameters)
    finally:
        plt.close("all")


@dataclass
class NotebookPlan:
    """The jobs one notebook run asked for (and the error that cut its run short, if any)."""

    notebook: str
    path: str
    parameters: dict
    jobs: dict[str, Job]
    error: str | None = None
    seconds: float = 0.0


_PLANS: dict[tuple, NotebookPlan] = {}  # one plan per notebook and settings in a process


def forget_plans() -> None:
    """Drop the plans made in this process (the next `plan_notebook` runs the notebook again)."""
    _PLANS.clear()


def plan_notebook(
    path: Path, parameters: dict, results: Path, allow_stale: bool = False, max_tensor_mb: float = 0
) -> NotebookPlan:
    """The jobs of notebook `path` run with `parameters` against the store at `results` (cached);
    sets larger than `max_tensor_mb` (0: none) are done once their record exists without them."""
    path = Path(path).resolve()
    params = json.dumps(canonical(parameters), sort_keys=True)
    cache = (str(path), params, str(results), allow_stale, max_tensor_mb)
    if cache in _PLANS:
        return _PLANS[cache]
    from dcclib.lab import analysis_runs

    planner, tic, error = Planner(path.stem), time.perf_counter(), None
    saved = {n: getattr(analysis_runs, n) for n in ANALYSES}
    token = PLANNER.set(planner)
    env = {RESULTS_ENV: str(results), STALE_ENV: str(int(allow_stale)), TENSOR_LIMIT_ENV: str(max_tensor_mb)}
    try:
        for n, f in saved.items():
            setattr(analysis_runs, n, planner.wrap(n, f))
        with environment(**env), _in_folder(path.parent), contextlib.redirect_stdout(io.StringIO()):
            _run_cells(path, parameters)
    except Exception as exc:  # the notebook's own error: its plan is incomplete, say where
        frames = traceback.extract_tb(exc.__traceback__)
        where = [f for f in frames if f.filename.startswith(path.name)] or frames
        error = f"{type(exc).__name__}: {exc} ({where[-1].filename}, line {where[-1].lineno})"
    finally:
        PLANNER.reset(token)
        for n, f in saved.items():
            setattr(analysis_runs, n, f)
    plan = NotebookPlan(path.stem, str(path), parameters, planner.jobs, error, time.perf_counter() - tic)
    _PLANS[cache] = plan
    return plan


@contextlib.contextmanager
def computing(lab: Lab) -> Iterator[None]:
    """`lab` computes for the block (its planner is off)."""
    planner, lab.planner = lab.planner, None
    try:
        yield
    finally:
        lab.planner = planner
