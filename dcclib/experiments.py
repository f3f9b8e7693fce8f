"""Experiments behind the notebooks: one table cell = condensation runs + evaluation, via the store.

A notebook makes one ``Lab`` from its papermill parameters (profile, device, data root, stand-in
rule, seed) and asks it for cells: ``lab.cell("table2", "cifar10", "dcc", 10)`` condenses
``profile.num_runs`` synthetic sets (or draws the Random subsets), trains ``profile.num_nets``
networks on each and returns every accuracy; each set and each evaluation is looked up in the
results store first (``dcclib.store``) and saved there after it is computed. ``lab.compare``
puts the cells next to the paper's numbers (``dcclib.paper_results``) in a tidy DataFrame.

Which data a cell uses (``stand_in``): "auto" uses the profile's offline dataset (embedded-mnist)
in place of every paper dataset at profile smoke, and the paper's dataset otherwise; a dataset
name forces that stand-in everywhere; None never substitutes. A stand-in is labelled as one in
every output, and its difference to the paper is left empty: it is not a reproduction.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

with warnings.catch_warnings():  # tqdm.auto warns once in Jupyter without ipywidgets: not here
    warnings.simplefilter("ignore")
    import tqdm.auto  # noqa: F401

import dcclib
from dcclib import reports
from dcclib.condense import CondenseConfig, condense, initial_synthetic, synthetic_metadata
from dcclib.data import ImageDataset, load_dataset
from dcclib.errors import UserError
from dcclib.evaluate import evaluate_set, random_subset
from dcclib.paper_results import CONTRASTIVE, dataset_label  # noqa: F401  (dataset_label re-exported)
from dcclib.profiles import Profile, get_profile
from dcclib.seeding import resolve_device
from dcclib.store import ResultStore, config_key
from dcclib.views import (  # noqa: F401  re-exported: notebooks may import all helpers from here
    comparison_frame,
    half_shares,
    image_grid,
    plot_comparison,
    rounded,
    wide_view,
)

METHODS = ("random", "dc", "dsa", "dcc", "dsac")
# Smoke numbers are checked by nbval; CPU results depend on the thread count (the partition of
# reductions), so profile smoke fixes it. Other profiles keep torch's default.
SMOKE_THREADS = 2


@dataclass(frozen=True)
class DataUse:
    """Which data stand for one of the paper's datasets in this run, and whether they loaded."""

    paper: str  # the paper's dataset (dcclib name)
    name: str  # the dataset used (== paper unless a stand-in)
    available: bool
    detail: str  # the source of the data, or why they could not be loaded

    @property
    def stand_in(self) -> bool:
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


def source_id(source: str) -> str:
    """A dataset's source without machine-specific paths: the folder name (MNIST/raw kept whole)."""
    if "/" not in source and "\\" not in source:
        return source
    p = Path(source)
    return f"{p.parent.name}/{p.name}" if p.name == "raw" else p.name


def identity(data: ImageDataset) -> dict:
    """The dataset part of an experiment's key: name, source, sizes and a content fingerprint
    (256 evenly spaced training images as 8-bit pixels, so CPU and GPU loads agree)."""
    n = data.train_images.shape[0]
    idx = torch.linspace(0, n - 1, min(256, n)).long()
    pixels = data.denormalise(data.train_images[idx.to(data.device)].float()).cpu()
    u8 = (pixels * 255).round().to(torch.uint8).numpy().tobytes()
    labels = data.train_labels[idx.to(data.device)].cpu().numpy().astype(np.int64).tobytes()
    return {
        "name": data.name,
        "source": source_id(data.source),
        "train": list(data.train_images.shape),
        "test": int(data.test_images.shape[0]),
        "fingerprint": hashlib.sha256(u8 + labels).hexdigest()[:16],
    }


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
        return self.paper_ipc if self.paper_ipc is not None else self.ipc

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else math.nan


class Lab:
    """The settings of one notebook run, its data, its results store and its output folder."""

    def __init__(self, notebook: str, profile: str | Profile = "smoke", device: str | None = None,
                 data_root: str | None = None, stand_in: str | None = "auto", seed: int = 0,
                 results_dir: str | None = None, output_dir: str | None = None,
                 progress: bool = False, threads: int | None = None) -> None:
        self.notebook = notebook
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        threads = threads or (SMOKE_THREADS if self.profile.name == "smoke" else None)
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device or self.profile.device)
        self.data_root = data_root
        self.stand_in = stand_in
        self.seed = seed
        self.store = ResultStore(results_dir)
        self.output_dir = Path(output_dir) if output_dir else reports.default_reports_dir()
        self.progress = progress
        self.log: list[str] = []  # what was computed or reused, with timings
        self._data: dict[str, ImageDataset | UserError] = {}
        self._uses: dict[str, DataUse] = {}

    # ----------------------------------------------------------------------------- settings
    def header(self) -> str:
        """One line for every notebook's output: profile, device, runs, networks, seed."""
        p = self.profile
        epochs = p.eval_epochs if p.eval_epochs is not None else "protocol"
        return (f"profile {p.name} | device {self.device.type} | runs per cell {p.num_runs} | "
                f"networks per run {p.num_nets} | evaluation epochs {epochs} | seed {self.seed} | "
                f"stand-in rule {self.stand_in!r} | dcclib {dcclib.__version__}")

    def plan(self, smoke: dict, **full: list) -> dict:
        """What the notebook runs: the paper's lists `full`, restricted at profile smoke to `smoke`."""
        if self.profile.name != "smoke":
            return dict(full)
        unknown = set(smoke) - set(full)
        if unknown:
            raise UserError(f"smoke subset names unknown lists: {', '.join(sorted(unknown))}")
        return {k: list(smoke.get(k, v)) for k, v in full.items()}

    def environment(self) -> str:
        """Machine-specific facts (paths, threads, versions): for an output nbval ignores."""
        from dcclib.io import library_versions

        return (f"results store: {self.store.root}\noutputs: {self.output_dir}\n"
                f"data root: {self.data_root}\ntorch threads: {torch.get_num_threads()}\n"
                f"versions: {library_versions()}")

    def stand_in_for(self, paper: str) -> str:
        if self.stand_in == "auto":
            return self.profile.default_dataset if self.profile.name == "smoke" else paper
        return self.stand_in or paper

    def data(self, name: str) -> ImageDataset:
        """The dataset `name`, loaded once (a UserError if it cannot be)."""
        if name not in self._data:
            try:
                self._data[name] = load_dataset(name, self.data_root, self.device, download=False)
            except UserError as exc:
                self._data[name] = exc
        got = self._data[name]
        if isinstance(got, UserError):
            raise got
        return got

    def add_dataset(self, data: ImageDataset, based_on: str | None = None) -> DataUse:
        """Register a dataset made in the notebook (e.g. a class subset) under its own name;
        `based_on` says what it was made from (for the labels)."""
        self._data[data.name] = data
        detail = based_on or source_id(data.source)
        self._uses[data.name] = DataUse(data.name, data.name, True, detail)
        return self._uses[data.name]

    def use(self, paper: str) -> DataUse:
        """Which data stand for the paper's dataset `paper` (loading them if possible)."""
        if paper not in self._uses:
            name = self.stand_in_for(paper)
            try:
                use = DataUse(paper, name, True, source_id(self.data(name).source))
            except UserError as exc:
                use = DataUse(paper, name, False, str(exc))
            self._uses[paper] = use
        return self._uses[paper]

    # ---------------------------------------------------------------------------- configs
    def _dataset_key(self, use: DataUse) -> dict:
        return identity(self.data(use.name)) if use.available else {"name": use.name}

    def set_config(self, use: DataUse, method: str, ipc: int, run: int, **overrides) -> dict:
        """The full config of one synthetic (or Random) set: the store key of the set."""
        if method not in METHODS:
            raise UserError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
        base = {"profile": self.profile.name, "dataset": self._dataset_key(use), "method": method,
                "ipc": ipc, "run": run, "dcclib": dcclib.__version__}
        if method == "random":
            return {**base, "kind": "select", "seed": self.seed + run}
        cfg = CondenseConfig(dataset=use.name, method=method, ipc=ipc, seed=self.seed + run, **overrides)
        return {**base, "kind": "condense", "config": asdict(self.profile.condense_config(cfg))}

    def eval_config(self, set_config: dict, model: str, run: int) -> dict:
        """The full config of evaluating one set with `model`: the store key of the accuracies."""
        ev = self.profile.eval_config((model,), seed=self.seed + run)
        return {"kind": "evaluate", "profile": self.profile.name, "dataset": set_config["dataset"],
                "set": set_config, "eval": asdict(ev), "dcclib": dcclib.__version__}

    # ------------------------------------------------------------------------- computing
    def synthetic_set(self, paper: str, method: str, ipc: int, run: int = 0, **overrides
                      ) -> tuple[torch.Tensor, torch.Tensor, ImageDataset]:
        """One synthetic (or Random) set, from the store or computed now; needs the data."""
        use = self.use(paper)
        data = self.data(use.name)
        return (*self._set(self.set_config(use, method, ipc, run, **overrides), data), data)

    def initial_set(self, paper: str, method: str, ipc: int, run: int = 0, **overrides
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The real images a condensation run starts from (seeded, as `condense` draws them)."""
        use = self.use(paper)
        config = self.set_config(use, method, ipc, run, **overrides)
        if config["kind"] != "condense":
            raise UserError("only condensation runs have an initial set")
        return initial_synthetic(self.data(use.name), CondenseConfig(**config["config"]))

    def _set(self, config: dict, data: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.store.get(config)
        if record is not None:
            loaded = self.store.load_set(config, record)
            if loaded is not None:
                self.log.append(f"reused  set {record['key']} ({config['method']}, ipc {config['ipc']})")
                return loaded[0].to(data.device), loaded[1].to(data.device)
        tic = time.perf_counter()
        if config["kind"] == "select":
            images, labels = random_subset(data, config["ipc"], config["seed"])
            meta = {"dataset": data.name, "class_names": data.class_names, "mean": list(data.mean),
                    "std": list(data.std), "method": "random", "ipc": config["ipc"]}
            result: dict = {}
        else:
            cfg = CondenseConfig(**config["config"])
            # long runs checkpoint (and resume after an interruption) in a scratch folder
            run_dir = None if self.profile.name == "smoke" else self.store.root / ".runs" / config_key(config)
            resume = run_dir is not None and (run_dir / "checkpoint.safetensors").is_file()
            out = condense(cfg, data, run_dir=run_dir, resume=resume, progress=self.progress)
            images, labels, meta = out.images, out.labels, synthetic_metadata(cfg, data)
            result = {"final_loss": out.metrics[-1]["loss"] if out.metrics else None,
                      "outer_iterations": len(out.metrics)}
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
        seconds = time.perf_counter() - tic
        record = self.store.put(config, {**result, "seconds": seconds}, images, labels, meta,
                                device=str(data.device))
        self.log.append(f"computed set {record['key']} ({config['method']}, ipc {config['ipc']}) "
                        f"in {seconds:.1f} s")
        return images, labels

    def _evaluation(self, use: DataUse, method: str, ipc: int, model: str, run: int,
                    overrides: dict) -> tuple[dict | None, str]:
        set_cfg = self.set_config(use, method, ipc, run, **overrides)
        config = self.eval_config(set_cfg, model, run)
        if not use.available:  # no data here: only what another machine stored can be shown
            hits = self.store.find_requested(config)
            sources = {h["config"]["dataset"].get("source") for h in hits}
            if len(sources) != 1:
                return None, ""
            return hits[-1], f"from the results store ({sources.pop()}; the data are not here)"
        record = self.store.get(config)
        if record is not None:
            self.log.append(f"reused  evaluation {record['key']} ({method}, ipc {ipc}, {model})")
            return record, ""
        data = self.data(use.name)
        images, labels = self._set(set_cfg, data)
        ev = self.profile.eval_config((model,), seed=self.seed + run)
        tic = time.perf_counter()
        (res,) = evaluate_set(images, labels, data, method, ev, progress=self.progress)
        seconds = time.perf_counter() - tic
        record = self.store.put(config, {**res.as_dict(), "seconds": seconds}, device=str(data.device))
        self.log.append(f"computed evaluation {record['key']} ({method}, ipc {ipc}, {model}) "
                        f"in {seconds:.1f} s")
        return record, ""

    def cell(self, table: str, paper: str, method: str, ipc: int, model: str = "convnet",
             paper_ipc: int | None = None, **overrides) -> Cell:
        """All runs x networks of one table cell (empty when the data are missing and unstored).

        `overrides` are CondenseConfig fields (e.g. warmup="none"); `paper_ipc` names the
        paper's img/cls when it differs from `ipc` (then the cell is not compared)."""
        use = self.use(paper)
        warmup = overrides.get("warmup", "bilevel") if method in CONTRASTIVE else "-"
        cell = Cell(table, use, method, ipc, model, warmup, paper_ipc=paper_ipc)
        for run in range(self.profile.num_runs):
            record, source = self._evaluation(use, method, ipc, model, run, overrides)
            if record is None:
                return Cell(table, use, method, ipc, model, warmup, paper_ipc=paper_ipc)
            cell.accuracies += [100 * a for a in record["result"]["accuracies"]]
            cell.runs += 1
            cell.source = source
        return cell

    # ------------------------------------------------------------------- tables, figures
    def compare(self, cells: list[Cell]) -> pd.DataFrame:
        """Ours next to the paper's number, with the difference (empty for a stand-in)."""
        return comparison_frame(cells, self.profile.name)

    def save_table(self, df: pd.DataFrame, name: str, title: str, view: pd.DataFrame | None = None,
                   data: list[str] | None = None) -> list[Path]:
        """Write `df` as CSV and `view` (or `df`) as Markdown under <output>/tables, with labels."""
        return reports.write_table(df, view if view is not None else df, self._stem(name), title,
                                   self._meta(data))

    def save_figure(self, fig, name: str, title: str, data: list[str] | None = None) -> list[Path]:
        """Write `fig` as PNG and SVG under <output>/figures, with labels."""
        return reports.write_figure(fig, self._stem(name), title, self._meta(data))

    def _stem(self, name: str) -> str:
        return f"{self.notebook.split('_')[0]}_{name}"

    def _meta(self, data: list[str] | None) -> dict:
        labels = data if data is not None else sorted({u.label for u in self._uses.values()})
        return {"notebook": self.notebook, "profile": self.profile.name, "device": self.device.type,
                "data": labels, "output_dir": str(self.output_dir)}


def subset_classes(data: ImageDataset, classes: list[int], flip: list[int] = ()) -> ImageDataset:
    """A new dataset with only `classes` (relabelled 0..k-1 in that order); the images of the
    classes in `flip` mirrored left-right, train and test (Figure 3's flipped setting)."""
    bad = [c for c in (*classes, *flip) if not 0 <= c < data.num_classes]
    if bad or len(set(classes)) != len(classes) or not set(flip) <= set(classes):
        raise UserError(f"classes {classes} (flip {list(flip)}) do not fit {data.name}'s "
                        f"{data.num_classes} classes")

    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.isin(y, torch.tensor(classes, device=y.device))
        x, y = x[keep].clone(), y[keep]
        for c in flip:
            x[y == c] = x[y == c].flip(-1)
        new = torch.empty_like(y)
        for i, c in enumerate(classes):
            new[y == c] = i
        return x, new

    tag = "v".join(str(c) for c in classes) + "".join(f"-flip{c}" for c in flip)
    return ImageDataset(f"{data.name}-{tag}", *pick(data.train_images, data.train_labels),
                        *pick(data.test_images, data.test_labels),
                        [data.class_names[c] for c in classes], data.mean, data.std,
                        f"{data.source} [classes {tag}]")
