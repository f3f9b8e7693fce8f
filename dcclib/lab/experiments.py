"""Experiments behind the notebooks: one table cell = condensation runs + evaluation, via the store.

A notebook makes one ``Lab`` from its papermill parameters (profile, device, data root, stand-in
rule, seed) and asks it for cells: ``lab.cell("table2", "cifar10", "dcc", 10)`` condenses
``profile.num_runs`` synthetic sets (or draws the Random subsets), trains ``profile.num_nets``
networks on each and returns every accuracy; each set and each evaluation is looked up in the
results store first (``dcclib.lab.store``) and saved there after it is computed. ``lab.compare``
puts the cells next to the paper's numbers (``dcclib.lab.paper_results``) in a tidy DataFrame.

Which data a cell uses (``stand_in``): "auto" uses the profile's offline dataset (embedded-mnist)
in place of every paper dataset at profile smoke, and the paper's dataset otherwise; a dataset
name forces that stand-in everywhere; None never substitutes. A stand-in is labelled as one in
every output, and its difference to the paper is left empty: it is not a reproduction.

One module for one concept, the Lab, at about 460 lines: everything a notebook asks of it (settings,
data, store keys, computing a set or an evaluation, saving tables and figures) shares its state,
and the pieces that stand alone already live elsewhere (cells, views, writers, store, planner).
"""

from __future__ import annotations

import shutil
import time
import warnings
from contextvars import ContextVar
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

with warnings.catch_warnings():  # tqdm.auto warns once in Jupyter without ipywidgets: not here
    warnings.simplefilter("ignore")
    import tqdm.auto  # noqa: F401

import dcclib
from dcclib.condense import CondenseConfig, condense, initial_synthetic
from dcclib.data import ImageDataset, dataset_identity, default_data_root, load_dataset, source_id
from dcclib.errors import UserError
from dcclib.evaluate import EvalConfig, evaluate_set, random_subset
from dcclib.fingerprint import ALGORITHM_VERSION
from dcclib.lab import writers
from dcclib.lab.cells import Cell, DataUse
from dcclib.lab.paper_results import dataset_label  # noqa: F401  (re-exported)
from dcclib.lab.parameters import list_parameter
from dcclib.lab.portable import portable_path
from dcclib.lab.profiles import PROFILES, Profile, get_profile
from dcclib.lab.store import ResultStore, config_key
from dcclib.lab.views import (  # noqa: F401  re-exported: notebooks may import all helpers from here
    comparison_frame,
    half_shares,
    image_grid,
    plot_comparison,
    rounded,
    wide_view,
)
from dcclib.methods import CONDENSATION_METHODS, CONTRASTIVE_METHODS, get_method
from dcclib.runs import synthetic_metadata
from dcclib.runtime import resolve_device

if TYPE_CHECKING:  # for the hints only
    from matplotlib.figure import Figure

# What a Lab set can be: the Random subset (`random_subset`) or a condensed set (`condense`).
METHODS = ("random", *CONDENSATION_METHODS)
# Smoke numbers are checked by nbval; CPU results depend on the thread count (the partition of
# reductions), so profile smoke fixes it. Other profiles keep torch's default.
SMOKE_THREADS = 2
# While a sweep plans (dcclib.lab.sweep), every Lab made reports to this planner instead of
# computing: `_set` and `_evaluation` hand their work to it and get placeholders back.
PLANNER: ContextVar[Any] = ContextVar("dcc_lab_planner", default=None)


class Lab:
    """The settings of one notebook run, its data, its results store and its output folder."""

    def __init__(
        self,
        notebook: str,
        profile: str | Profile = "smoke",
        device: str | None = None,
        data_root: str | None = None,
        stand_in: str | None = "auto",
        seed: int = 0,
        results_dir: str | None = None,
        output_dir: str | None = None,
        progress: bool = False,
        threads: int | None = None,
        allow_stale: bool | None = None,
    ) -> None:
        self.notebook = notebook
        self.requested = {"device": device, "threads": threads}  # as given (``settings``)
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        threads = threads or (SMOKE_THREADS if self.profile.name == "smoke" else None)
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device or self.profile.device)
        self.data_root = data_root
        self.stand_in = stand_in
        self.seed = seed
        self.store = ResultStore(results_dir, allow_stale)  # None: $DCC_ALLOW_STALE
        self.output_dir = Path(output_dir) if output_dir else writers.default_reports_dir()
        self.progress = progress
        self.log: list[str] = []  # what was computed or reused, with timings
        self.ran_sets = False  # set by set_config: tables and figures then carry the reductions
        self.settings: str | None = None  # a notebook's own settings line (else the profile's)
        self._data: dict[str, ImageDataset | UserError] = {}
        self._uses: dict[str, DataUse] = {}
        self._made_here: set[str] = set()  # datasets made by the notebook (``add_dataset``)
        self.planner = PLANNER.get()  # a sweep's planner, or None (compute)
        if self.planner is not None:
            self.planner.adopt(self)

    # ----------------------------------------------------------------------------- settings
    def header(self) -> str:
        """One line for every notebook's output: profile, device, runs, networks, seed."""
        p = self.profile
        epochs = p.eval_epochs if p.eval_epochs is not None else "protocol"
        return (
            f"profile {p.name} | device {self.device.type} | runs per cell {p.num_runs} | "
            f"networks per run {p.num_nets} | evaluation epochs {epochs} | seed {self.seed} | "
            f"{self._stand_in_words()} | dcclib {dcclib.__version__}"
        )

    def _stand_in_words(self) -> str:
        """The `stand_in` setting in words (the header's data rule)."""
        if self.stand_in == "auto" and self.profile.name != "smoke" or not self.stand_in:
            return "data: the paper's datasets, no stand-ins"
        name = self.profile.default_dataset if self.stand_in == "auto" else self.stand_in
        return f"data: {name} stands in for the paper's datasets"

    def plan(self, paper: dict, reduced: dict[str, dict] | None = None, **given: list | None) -> dict:
        """What the notebook runs, list by list: a list the user `given` runs as given; one left
        None runs the profile's reduction (`reduced[profile]`, e.g. {"cpu": {"ipcs": [1]}}) where
        the profile has one, and the paper's list (`paper`) otherwise."""
        unknown = set(given) - set(paper) | {k for sub in (reduced or {}).values() for k in sub} - set(paper)
        if unknown:
            raise UserError(f"plan names lists the paper has not: {', '.join(sorted(unknown))}")
        own = (reduced or {}).get(self.profile.name, {})
        out = {}
        for key, full in paper.items():
            value = given.get(key)
            out[key] = list_parameter(key, value) if value is not None else list(own.get(key, full))
        return out

    def choose(self, value: Any, default: Any = None, **by_profile: Any) -> Any:
        """`value` when the user gave one (not None), else this profile's entry of `by_profile`,
        else `default`: e.g. lab.choose(model, "convnet", smoke="convnet_w32")."""
        if value is not None:
            return value
        return by_profile.get(self.profile.name, default)

    def settings_for_worker(self, dataset: str) -> dict | None:
        """What makes this Lab again in another process, to compute on `dataset` there (plain data;
        the device and threads as asked for, so a worker resolves its own); None where that cannot
        be: a profile that is not a named one, or a dataset made in the notebook (``add_dataset``)."""
        if PROFILES.get(self.profile.name) != self.profile or dataset in self._made_here:
            return None
        root = None if self.data_root is None else str(self.data_root)
        return {"notebook": self.notebook, "profile": self.profile.name, "data_root": root,
                "stand_in": self.stand_in, "seed": self.seed, **self.requested}  # fmt: skip

    def reductions(self) -> str:
        """What this run changes from the paper's settings (printed next to every number): the
        profile's line, or `settings` where the notebook states its own (notebook 13's K_o)."""
        return self.settings or self.profile.reductions()

    def environment(self) -> str:
        """Machine-specific facts (paths, threads, versions): for an output nbval ignores."""
        import dcclib
        from dcclib.fingerprint import SOURCE_HASH, source_hash
        from dcclib.io import library_versions

        now = source_hash()
        source = "as released" if now == SOURCE_HASH else "EDITED since the version was set"
        return (
            f"dcclib imported from: {_shown(Path(dcclib.__file__).parent)} (algorithm {ALGORITHM_VERSION}, "
            f"numeric source {now[:12]}: {source})\n"
            f"results store: {_shown(self.store.root)}\noutputs: {_shown(self.output_dir)}\n"
            f"data root: {_shown(self.data_root or default_data_root())}\n"
            f"torch threads: {torch.get_num_threads()}\n"
            f"versions: {library_versions()}"
        )

    def stand_in_for(self, paper: str) -> str:
        if self.stand_in == "auto":
            if self.profile.name == "smoke":
                return self.profile.default_dataset
            return self.profile.dataset_for(paper)
        return self.stand_in or self.profile.dataset_for(paper)

    def data(self, name: str) -> ImageDataset:
        """The dataset `name`, loaded once (a UserError if it cannot be)."""
        if name not in self._data:
            try:
                self._data[name] = load_dataset(name, self.data_root, self.device, download=False)
            except UserError as exc:  # a planner plans without the data (placeholder shapes)
                self._data[name] = self.planner.placeholder(name, exc) if self.planner else exc
        got = self._data[name]
        if isinstance(got, UserError):
            raise got
        return got

    def add_dataset(self, data: ImageDataset, based_on: str | None = None) -> DataUse:
        """Register a dataset made in the notebook (e.g. a class subset) under its own name;
        `based_on` says what it was made from (for the labels)."""
        self._data[data.name] = data
        self._made_here.add(data.name)
        detail = based_on or source_id(data.source)
        self._uses[data.name] = DataUse(data.name, data.name, True, detail)
        return self._uses[data.name]

    def use(self, paper: str) -> DataUse:
        """Which data stand for the paper's dataset `paper` (loading them if possible)."""
        if paper not in self._uses:
            name = self.stand_in_for(paper)
            try:
                source = self.data(name).source
                use = DataUse(paper, name, not self._placeholder(source), source_id(source))
            except UserError as exc:
                use = DataUse(paper, name, False, str(exc))
            self._uses[paper] = use
        return self._uses[paper]

    def _placeholder(self, source: str) -> bool:
        return self.planner is not None and self.planner.is_placeholder(source)

    # ---------------------------------------------------------------------------- configs
    def _dataset_key(self, use: DataUse) -> dict:
        return dataset_identity(self.data(use.name)) if use.available else {"name": use.name}

    def set_config(self, use: DataUse, method: str, ipc: int, run: int, **overrides: Any) -> dict:
        """The full config of one synthetic (or Random) set: the store key of the set."""
        get_method(method, METHODS)  # a UserError naming the known ones
        self.ran_sets = True  # outputs now depend on the profile's loops: they say its reductions
        base = {
            "profile": self.profile.name,
            "dataset": self._dataset_key(use),
            "method": method,
            "ipc": ipc,
            "run": run,
            "algorithm": ALGORITHM_VERSION,
        }
        if method == "random":
            return {**base, "kind": "select", "seed": self.seed + run}
        cfg = CondenseConfig(dataset=use.name, method=method, ipc=ipc, seed=self.seed + run, **overrides)
        return {**base, "kind": "condense", "config": asdict(self.profile.condense_config(cfg))}

    def eval_settings(self, set_config: dict, model: str, run: int) -> EvalConfig:
        """The profile's evaluation of one set with `model`; a condensed set is evaluated with its
        condensation's DSA strategy (as the original passes it on)."""
        ev = self.profile.eval_config((model,), seed=self.seed + run)
        if set_config["kind"] == "condense":
            ev = replace(ev, dsa_strategy=set_config["config"].get("dsa_strategy"))
        return ev

    def eval_config(self, set_config: dict, model: str, run: int) -> dict:
        """The full config of evaluating one set with `model`: the store key of the accuracies."""
        ev = self.eval_settings(set_config, model, run)
        return {
            "kind": "evaluate",
            "profile": self.profile.name,
            "dataset": set_config["dataset"],
            "set": set_config,
            "eval": asdict(ev),
            "algorithm": ALGORITHM_VERSION,
        }

    # ------------------------------------------------------------------------- computing
    def synthetic_set(
        self, paper: str, method: str, ipc: int, run: int = 0, **overrides: Any
    ) -> tuple[torch.Tensor, torch.Tensor, ImageDataset]:
        """One synthetic (or Random) set, from the store or computed now; needs the data."""
        use = self.use(paper)
        data = self.data(use.name)
        return (*self._set(self.set_config(use, method, ipc, run, **overrides), data), data)

    def initial_set(
        self, paper: str, method: str, ipc: int, run: int = 0, **overrides: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The real images a condensation run starts from (seeded, as `condense` draws them)."""
        use = self.use(paper)
        config = self.set_config(use, method, ipc, run, **overrides)
        if config["kind"] != "condense":
            raise UserError("only condensation runs have an initial set")
        return initial_synthetic(self.data(use.name), CondenseConfig(**config["config"]))

    def _set(
        self, config: dict, data: ImageDataset, exact: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The set of `config` from the store (`exact`: never an older algorithm's) or computed now."""
        if self.planner is not None:  # a sweep plans: the job is noted, the initial images stand in
            return self.planner.want_set(self, config, data)
        record = self.store.exact(config) if exact else self.store.get(config)
        if record is not None:
            loaded = self.store.load_set(config, record)
            if loaded is not None:
                self.log.append(f"reused  set {record['key']} ({config['method']}, ipc {config['ipc']})")
                return loaded[0].to(data.device), loaded[1].to(data.device)
        self.store.may_compute(config, f"the {config['method']} set (ipc {config['ipc']})")
        tic = time.perf_counter()
        if config["kind"] == "select":
            images, labels = random_subset(data, config["ipc"], config["seed"])
            meta = {
                "dataset": data.name,
                "class_names": data.class_names,
                "mean": list(data.mean),
                "std": list(data.std),
                "method": "random",
                "ipc": config["ipc"],
            }
            result: dict = {}
        else:
            cfg = CondenseConfig(**config["config"])
            # long runs checkpoint (and resume after an interruption) in a scratch folder
            run_dir = None if self.profile.name == "smoke" else self.store.root / ".runs" / config_key(config)
            resume = run_dir is not None and (run_dir / "checkpoint.safetensors").is_file()
            out = condense(cfg, data, run_dir=run_dir, resume=resume, progress=self.progress)
            images, labels, meta = out.images, out.labels, synthetic_metadata(cfg, data)
            keep = ("outer", "loss", "grad_norm", "moved", "classwise_steps", "collective_steps", "seconds")
            result = {
                "final_loss": out.metrics[-1]["loss"] if out.metrics else None,
                "outer_iterations": len(out.metrics),
                # per network: matching loss, image-gradient norm, distance from the start
                "trajectory": [{k: row.get(k) for k in keep} for row in out.metrics],
            }
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
        seconds = time.perf_counter() - tic
        record = self.store.put(
            config, {**result, "seconds": seconds}, images, labels, meta, device=str(data.device)
        )
        self.log.append(
            f"computed set {record['key']} ({config['method']}, ipc {config['ipc']}) in {seconds:.1f} s"
        )
        return images, labels

    def _evaluation(
        self, use: DataUse, method: str, ipc: int, model: str, run: int, overrides: dict
    ) -> tuple[dict | None, str]:
        if self.planner is not None:  # a sweep plans: the job is noted, an empty record stands in
            return self.planner.want_evaluation(self, use, method, ipc, model, run, overrides), ""
        set_cfg = self.set_config(use, method, ipc, run, **overrides)
        config = self.eval_config(set_cfg, model, run)
        if not use.available:  # no data here: only what another machine stored can be shown
            hits = self.store.find_requested(config)
            sources = {h["config"]["dataset"].get("source") for h in hits}
            if len(sources) != 1:
                return None, ""
            note = f"from the results store ({sources.pop()}; the data are not here)"
            return hits[-1], "; ".join(filter(None, [note, _stale(hits[-1])]))
        record = self.store.get(config)
        if record is not None:
            self.log.append(f"reused  evaluation {record['key']} ({method}, ipc {ipc}, {model})")
            return record, _stale(record)
        self.store.may_compute(config, f"the evaluation of {method} (ipc {ipc}, {model})")
        return self.compute(config, use.name), ""

    def compute(self, config: dict, name: str) -> dict | None:
        """Compute the result of `config` (a set, or an evaluation of one) on the dataset `name`
        and store it: what a sweep's worker runs, from the job's config alone (no notebook).
        An evaluation's record is returned."""
        data = self.data(name)
        if config["kind"] != "evaluate":
            self._set(config, data, exact=True)
            return None
        set_cfg = config["set"]
        images, labels = self._set(set_cfg, data, exact=True)  # a new result never rests on a stale set
        ev = EvalConfig(**{**config["eval"], "models": tuple(config["eval"]["models"])})
        tic = time.perf_counter()
        (res,) = evaluate_set(images, labels, data, set_cfg["method"], ev, progress=self.progress)
        seconds = time.perf_counter() - tic
        record = self.store.put(config, {**res.as_dict(), "seconds": seconds}, device=str(data.device))
        what = f"{set_cfg['method']}, ipc {set_cfg['ipc']}, {ev.models[0]}"
        self.log.append(f"computed evaluation {record['key']} ({what}) in {seconds:.1f} s")
        return record

    def cell(
        self,
        table: str,
        paper: str,
        method: str,
        ipc: int,
        model: str = "convnet",
        paper_ipc: int | None = None,
        **overrides: Any,
    ) -> Cell:
        """All runs x networks of one table cell (empty when the data are missing and unstored).

        `overrides` are CondenseConfig fields (e.g. warmup="none"); `paper_ipc` names the
        paper's img/cls when it differs from `ipc` (then the cell is not compared)."""
        use = self.use(paper)
        warmup = overrides.get("warmup", "bilevel") if method in CONTRASTIVE_METHODS else "-"
        cell = Cell(table, use, method, ipc, model, warmup, paper_ipc=paper_ipc)
        for run in range(self.profile.num_runs):
            record, source = self._evaluation(use, method, ipc, model, run, overrides)
            if record is None:
                return Cell(table, use, method, ipc, model, warmup, paper_ipc=paper_ipc)
            cell.accuracies += [100 * a for a in record["result"]["accuracies"]]
            cell.runs += 1
            cell.source = cell.source or source
        return cell

    # ------------------------------------------------------------------- tables, figures
    def compare(self, cells: list[Cell]) -> pd.DataFrame:
        """Ours next to the paper's number, with the difference (empty for a stand-in)."""
        return comparison_frame(cells, self.profile.name)

    def save_table(
        self,
        df: pd.DataFrame,
        name: str,
        title: str,
        view: pd.DataFrame | None = None,
        data: list[str] | None = None,
        status: str | None = None,
    ) -> list[Path]:
        """Write `df` as CSV and `view` (or `df`) as Markdown under <output>/tables, with labels;
        `status` states the result for reports/index.md where the table alone cannot (e.g. a
        comparison with the paper that is not a number); None: derived from the table."""
        if self.planner is not None:
            return []  # a sweep plans: nothing is written
        return writers.write_table(
            df, view if view is not None else df, self._stem(name), title, self._meta(data, status)
        )

    def save_figure(
        self, fig: Figure, name: str, title: str, data: list[str] | None = None, status: str | None = None
    ) -> list[Path]:
        """Write `fig` as PNG and SVG under <output>/figures, with labels (and `status`, as above)."""
        if self.planner is not None:
            return []
        return writers.write_figure(fig, self._stem(name), title, self._meta(data, status))

    def record_not_run(self, kind: str, name: str, title: str, data: list[str]) -> None:
        """List a table or figure that cannot be made here (`data`: labels saying "not available
        here") in the index as not run, with the command that runs it; nothing is drawn."""
        if self.planner is None:
            writers.write_not_run(kind, self._stem(name), title, self._meta(data))

    def _stem(self, name: str) -> str:
        return f"{self.notebook.split('_')[0]}_{name}"

    def _meta(self, data: list[str] | None, status: str | None = None) -> dict:
        labels = data if data is not None else sorted({u.label for u in self._uses.values()})
        stale = sorted({h["version"] for h in self.store.stale_hits})  # --allow-stale reused these
        return {
            "notebook": self.notebook,
            "profile": self.profile.name,
            "device": self.device.type,
            "data": labels,
            "output_dir": str(self.output_dir),
            **({"stale": stale, "algorithm": ALGORITHM_VERSION} if stale else {}),
            **({"status": status} if status else {}),
            **({"settings": self.reductions()} if self.ran_sets else {}),
        }


def _shown(path: str | Path | None) -> str:
    """A path as outputs show it (``portable_path``: no absolute path of the machine that ran the
    notebook lands in a committed report)."""
    return "None" if path is None else portable_path(Path(path).absolute())  # a link shows as named


def _stale(record: dict) -> str:
    """The note of a result reused from an older algorithm version ('' for a current one)."""
    if not record.get("stale"):
        return ""
    return f"stale: computed by {record['stale']} (now {ALGORITHM_VERSION}), reused with --allow-stale"
