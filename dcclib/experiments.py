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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import dcclib
from dcclib import reports
from dcclib.condense import CondenseConfig, condense, synthetic_metadata
from dcclib.data import ImageDataset, load_dataset
from dcclib.errors import UserError
from dcclib.evaluate import evaluate_set, random_subset
from dcclib.paper_results import (CONTRASTIVE, DATASET_LABELS, METHOD_LABELS, MODEL_LABELS,
                                  WARMUP_LABELS, paper_value)
from dcclib.profiles import Profile, get_profile
from dcclib.seeding import resolve_device
from dcclib.store import ResultStore, config_key

METHODS = ("random", "dc", "dsa", "dcc", "dsac")


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


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
                 progress: bool = False) -> None:
        self.notebook = notebook
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
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
                f"dcclib {dcclib.__version__}")

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
             **overrides) -> Cell:
        """All runs x networks of one table cell (empty when the data are missing and unstored)."""
        use = self.use(paper)
        warmup = overrides.get("warmup", "bilevel") if method in CONTRASTIVE else "-"
        cell = Cell(table, use, method, ipc, model, warmup)
        for run in range(self.profile.num_runs):
            record, source = self._evaluation(use, method, ipc, model, run, overrides)
            if record is None:
                return Cell(table, use, method, ipc, model, warmup)
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


def comparison_frame(cells: list[Cell], profile: str) -> pd.DataFrame:
    """The tidy ours-vs-paper table: one row per cell (accuracies in percent)."""
    rows = []
    for c in cells:
        paper = paper_value(c.table, c.use.paper, c.ipc, c.method, c.model, c.warmup)
        p_mean, p_std = paper if paper is not None else (math.nan, math.nan)
        comparable = not c.use.stand_in and (c.use.available or bool(c.source))
        notes = []
        if c.use.stand_in:
            notes.append("stand-in data: not comparable with the paper")
        if not c.accuracies:
            notes.append("not run: data missing" if not c.use.available else "no result")
        if c.source:
            notes.append(c.source)
        rows.append({
            "table": c.table, "profile": profile, "dataset": dataset_label(c.use.paper),
            "data used": c.use.label, "ipc": c.ipc, "method": METHOD_LABELS[c.method],
            "model": MODEL_LABELS.get(c.model, c.model), "warm-up": WARMUP_LABELS[c.warmup],
            "ours": c.mean, "ours std": c.std, "runs": c.runs, "accuracies": len(c.accuracies),
            "paper": p_mean, "paper std": p_std,
            "difference": c.mean - p_mean if comparable and c.accuracies else math.nan,
            "note": "; ".join(notes),
        })
    return pd.DataFrame(rows)


def _fmt(v: float, decimals: int = 1, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.{decimals}f}" if sign else f"{v:.{decimals}f}"


def rounded(df: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """The tidy table for display: numbers as fixed-decimal strings, '-' where there is none."""
    out = df.drop(columns=["table", "accuracies"], errors="ignore").copy()
    for col in ("ours", "ours std"):
        out[col] = [_fmt(v, decimals) for v in out[col]]
    out["paper"] = [_fmt(v, 2 if round(v, 1) != v else 1) if not math.isnan(v) else "-" for v in df["paper"]]
    out["paper std"] = [_fmt(v, 1) for v in df["paper std"]]
    out["difference"] = [_fmt(v, decimals, sign=True) for v in df["difference"]]
    return out


def wide_view(df: pd.DataFrame, index: list[str], columns: str) -> pd.DataFrame:
    """A paper-shaped view: each cell 'ours ± std (paper P)' as a string."""
    def cell(r) -> str:
        ours = f"{_fmt(r['ours'])} ± {_fmt(r['ours std'])}" if not math.isnan(r["ours"]) else "-"
        return f"{ours} (paper {_fmt(r['paper'], 2 if round(r['paper'], 1) != r['paper'] else 1)})" \
            if not math.isnan(r["paper"]) else ours
    view = df.assign(value=[cell(r) for _, r in df.iterrows()])
    return view.pivot_table(index=index, columns=columns, values="value", aggfunc="first", sort=False)


def image_grid(ax, images: torch.Tensor, data: ImageDataset, per_row: int, title: str = "") -> None:
    """Show class-blocked images on `ax`, one class per row (denormalised to pixels)."""
    from torchvision.utils import make_grid

    grid = make_grid(data.denormalise(images.detach().float().cpu()), nrow=per_row, padding=1,
                     pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if grid.shape[0] == 1 else None,
              interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
