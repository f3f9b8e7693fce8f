"""Table 2's left half (notebook 11): the selection baselines and KIP through a notebook's Lab.

Random, C-score, GraNd and EL2N keep ipc real training images per class (``dcclib.analyses.
selection``); KIP learns a support set by kernel ridge regression (``dcclib.analyses.kip``). A
`Settings` holds the notebook's parameters as the running profile resolves them; a
`SelectionKIP` holds the candidate data of each paper dataset (optionally restricted to the
first N training images per class) and makes, stores and evaluates the sets. Every set and
evaluation is kept in the Lab's results store under its full config; Random's key is the one
``Lab.set_config`` gives (notebook 04 shares those sets). GraNd/EL2N scores are cached on disk.
Where $DCC_RENDER_ONLY forbids computing, a set or evaluation missing from the store stops the
run with one line (``ResultStore.may_compute``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from dcclib.analyses import kip as kipm
from dcclib.analyses import selection
from dcclib.data import ImageDataset, dataset_identity, default_data_root
from dcclib.errors import UserError
from dcclib.evaluate import evaluate_set, random_subset
from dcclib.fingerprint import ALGORITHM_VERSION
from dcclib.lab.cells import Cell, DataUse
from dcclib.lab.store import NotStoredError

if TYPE_CHECKING:  # for the hints only
    from dcclib.lab.experiments import Lab

METHODS = ("random", "cscore", "grand", "el2n", "kip")
# What the notebook runs: the paper's lists, and each profile's reduction of them.
PAPER_PLAN = {"datasets": ["svhn", "cifar10", "cifar100"], "ipcs": [1, 10, 50], "methods": list(METHODS)}
REDUCED_PLAN = {
    "smoke": {"datasets": ["cifar10"], "ipcs": [1]},  # on its stand-in, the embedded digits
    "cpu": {"datasets": ["mnist", "fashionmnist"], "ipcs": [1]},
}
CSCORE_DATASETS = ("cifar10", "cifar100")  # Jiang et al. published C-scores for these only


def per_profile(value: Any, profile: str) -> Any:
    """A setting given as {profile: value} (missing: None) or as one value for every profile."""
    return value.get(profile) if isinstance(value, dict) else value


@dataclass(frozen=True)
class Settings:
    """The notebook's settings, resolved for one profile."""

    eval_model: str  # the network every set is evaluated with
    pool: int | None  # candidates: the first `pool` training images per class (None: all)
    score: selection.ScoreConfig  # GraNd/EL2N
    kernel: kipm.KernelConfig  # KIP's kernel
    kip_steps: int
    kip_target_batch: int
    kip_lr: float
    kip_reg: float
    kip_learn_labels: bool
    seed: int  # base seed: KIP run r uses seed + r
    cache_dir: Path  # GraNd/EL2N score cache
    cscore_dir: str | None = None  # folder with the C-score files; None: the Lab's data root
    cscore_align: str = "auto"  # see selection.load_cscores

    def kip_config(self, ipc: int, run: int) -> kipm.KIPConfig:
        """The KIP config of run `run` at `ipc` images per class."""
        return kipm.KIPConfig(
            ipc=ipc,
            steps=self.kip_steps,
            lr=self.kip_lr,
            target_batch=self.kip_target_batch,
            reg=self.kip_reg,
            kernel=self.kernel,
            learn_labels=self.kip_learn_labels,
            seed=self.seed + run,
        )

    def lines(self) -> list[str]:
        """The settings as the notebook prints them."""
        pool = "all training images" if not self.pool else f"the first {self.pool} training images per class"
        return [
            f"evaluation network: {self.eval_model}",
            f"candidates: {pool}",
            f"GraNd/EL2N: {self.score}",
            f"KIP: {self.kernel}, steps {self.kip_steps}, target batch {self.kip_target_batch}, "
            f"lr {self.kip_lr}, reg {self.kip_reg}, learn labels {self.kip_learn_labels}",
        ]


def settings_for(
    lab: Lab,
    *,
    model: str | dict[str, str],
    pool_per_class: int | dict[str, int] | None,
    score_model: str | dict[str, str],
    score_nets: int | dict[str, int],
    score_epoch: int | dict[str, int],
    score_cache: str | None,
    cscore_dir: str | None,
    cscore_align: str,
    kip_steps: int | dict[str, int],
    kip_target_batch: int | dict[str, int],
    kip_kernel: str,
    kip_depth: int,
    kip_lr: float,
    kip_reg: float,
    kip_learn_labels: bool,
) -> Settings:
    """`Settings` from the notebook's parameters, each given as {profile: value} taken for
    `lab`'s profile; seeds are `lab.seed`'s, the score cache defaults to .cache/selection-scores
    next to the results store."""
    name = lab.profile.name
    score = selection.ScoreConfig(
        model=per_profile(score_model, name),
        num_nets=per_profile(score_nets, name),
        epoch=per_profile(score_epoch, name),
        seed=lab.seed,
    )
    return Settings(
        eval_model=per_profile(model, name),
        pool=per_profile(pool_per_class, name),
        score=score,
        kernel=kipm.KernelConfig(kind=kip_kernel, depth=kip_depth),
        kip_steps=per_profile(kip_steps, name),
        kip_target_batch=per_profile(kip_target_batch, name),
        kip_lr=kip_lr,
        kip_reg=kip_reg,
        kip_learn_labels=kip_learn_labels,
        seed=lab.seed,
        cache_dir=Path(score_cache) if score_cache else lab.store.root.parent / ".cache" / "selection-scores",
        cscore_dir=cscore_dir,
        cscore_align=cscore_align,
    )


def candidates(lab: Lab, paper: str, pool: int | None) -> tuple[DataUse, ImageDataset | None]:
    """The data standing for `paper` (None when not here), restricted to the first `pool`
    training images per class; the use's name then says so (it keys the stored sets)."""
    use = lab.use(paper)
    data = lab.data(use.name) if use.available else None
    if data is not None and pool:
        data = selection.class_pool(data, pool)  # keeps the name: the protocol depends on it
        use = DataUse(
            paper, f"{data.name}-pool{pool}", True, f"{use.detail}, first {pool} training images per class"
        )
    return use, data


@dataclass
class SelectionKIP:
    """The sets and evaluations of Table 2's left half, for the paper datasets `uses` names."""

    lab: Lab
    settings: Settings
    uses: dict[str, DataUse] = field(default_factory=dict)
    data: dict[str, ImageDataset | None] = field(default_factory=dict)
    _scores: dict[str, selection.Scores] = field(default_factory=dict, repr=False)
    _cscores: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, lab: Lab, settings: Settings, datasets: list[str]) -> SelectionKIP:
        """The candidate data of each paper dataset in `datasets` (see `candidates`)."""
        study = cls(lab, settings)
        for d in datasets:
            study.uses[d], study.data[d] = candidates(lab, d, settings.pool)
        return study

    # ------------------------------------------------------------------------------ scores
    def scores(self, d: str) -> selection.Scores:
        """GraNd/EL2N of `d`'s candidates, from the score cache or computed now (once per run)."""
        if d not in self._scores:
            data = self._have(d)
            s = self._scores[d] = selection.cached_scores(data, self.settings.score, self.settings.cache_dir)
            self.lab.log.append(
                f"{'reused' if s.cache_hit else 'computed'} GraNd/EL2N scores of {data.name} ({s.path})"
            )
        return self._scores[d]

    def cscores(self, d: str) -> Tensor:
        """The published C-scores of the dataset behind `d`, restricted to the candidate pool."""
        name = self.lab.use(d).name
        if name not in CSCORE_DATASETS:
            raise UserError(
                f"no C-scores for {name}: Jiang et al. published them for CIFAR-10/100 (the paper "
                "has none for SVHN)"
            )
        if d not in self._cscores:
            folder = Path(self.settings.cscore_dir or self.lab.data_root or default_data_root())
            full = self.lab.data(name)
            path = folder / selection.cscore_file_name(name)
            scores = selection.load_cscores(path, full, self.settings.cscore_align)
            pool = self.settings.pool
            self._cscores[d] = scores[selection.pool_indices(full, pool)] if pool else scores
        return self._cscores[d]

    # -------------------------------------------------------------------------------- sets
    def set_config(self, d: str, method: str, ipc: int, run: int) -> dict:
        """The full config of one set: its store key (Random's is ``Lab.set_config``'s; a
        GraNd/EL2N/C-score coreset is one per score config, every run reuses it)."""
        use, data, s = self.uses[d], self.data[d], self.settings
        cfg = {
            "profile": self.lab.profile.name,
            "dataset": dataset_identity(data) if data is not None else {"name": use.name},
            "method": method,
            "ipc": ipc,
            "run": run,
            "algorithm": ALGORITHM_VERSION,
        }
        if method == "random":
            return {**cfg, "kind": "select", "seed": self.lab.seed + run}
        if method in ("grand", "el2n"):
            return {
                **cfg,
                "kind": "select",
                "run": 0,
                "scores": dataclasses.asdict(s.score),
                "keep": selection.KEEP[method],
            }
        if method == "cscore":
            file = selection.cscore_file_name(self.lab.use(use.paper).name)
            return {
                **cfg,
                "kind": "select",
                "run": 0,
                "keep": selection.KEEP[method],
                "cscores": {"file": file, "align": s.cscore_align},
            }
        if method == "kip":
            return {**cfg, "kind": "kip", "config": dataclasses.asdict(s.kip_config(ipc, run))}
        raise UserError(f"unknown method '{method}'; choose from {', '.join(METHODS)}")

    def make_set(self, d: str, method: str, ipc: int, run: int) -> tuple[Tensor, Tensor, dict]:
        """(images, labels, what to record) of one set, computed now."""
        data = self._have(d)
        if method == "random":
            return (*random_subset(data, ipc, self.lab.seed + run), {})
        if method in ("grand", "el2n", "cscore"):
            scores = self.cscores(d) if method == "cscore" else self.scores(d).get(method)
            x, y, idx = selection.select_coreset(data, scores, ipc, selection.KEEP[method])
            return x, y, {"indices": idx.tolist(), "scores": scores[idx].tolist()}
        result = kipm.kip(data, self.settings.kip_config(ipc, run))
        krr = kipm.krr_accuracy(
            result.images, result.targets, data, self.settings.kernel, self.settings.kip_reg
        )
        return result.images, result.labels, {"krr_accuracy": krr, "losses": result.losses}

    def stored_set(self, d: str, method: str, ipc: int, run: int) -> tuple[Tensor, Tensor, dict]:
        """(images, labels, store record) of one set, from the store or made and stored now."""
        lab, data, config = self.lab, self._have(d), self.set_config(d, method, ipc, run)
        record = lab.store.get(config)
        loaded = lab.store.load_set(config, record) if record is not None else None
        if loaded is not None:
            return loaded[0].to(data.device), loaded[1].to(data.device), record
        lab.store.may_compute(config, f"the {method} set (ipc {ipc})")
        tic = time.perf_counter()
        images, labels, result = self.make_set(d, method, ipc, run)
        meta = {
            "dataset": data.name,
            "class_names": data.class_names,
            "mean": list(data.mean),
            "std": list(data.std),
            "method": method,
            "ipc": ipc,
        }
        record = lab.store.put(
            config,
            {**result, "seconds": time.perf_counter() - tic},
            images,
            labels,
            meta,
            device=str(data.device),
        )
        lab.log.append(
            f"computed set {record['key']} ({method}, ipc {ipc}) in {record['result']['seconds']:.1f} s"
        )
        return images, labels, record

    def shown_sets(self, d: str, ipc: int, methods: list[str], run: int = 0) -> list[tuple[str, Tensor]]:
        """(method, one image per class) of each stored set of `d` at `ipc` (nothing is computed)."""
        if self.data[d] is None:
            return []
        shown = []
        for m in methods:
            config = self.set_config(d, m, ipc, run)
            record = self.lab.store.get(config)
            loaded = self.lab.store.load_set(config, record) if record is not None else None
            if loaded is not None:
                shown.append((m, loaded[0][::ipc]))
        return shown

    # ------------------------------------------------------------------------------- cells
    def cell(self, d: str, method: str, ipc: int) -> Cell:
        """All runs x networks of one cell of Table 2 (empty when neither data nor stored results exist)."""
        lab, use, data, model = self.lab, self.uses[d], self.data[d], self.settings.eval_model
        cell = Cell("table2", use, method, ipc, model, "-")
        for r in range(lab.profile.num_runs):
            config = self.set_config(d, method, ipc, r)
            ev_config = lab.eval_config(config, model, r)
            if data is None:  # no data here: only what a machine with the data stored can be shown
                hits = lab.store.find_requested(ev_config)
                if not hits:
                    return Cell("table2", use, method, ipc, model, "-")
                record, cell.source = hits[-1], "from the results store (the data are not here)"
            else:
                record = self._evaluation(d, method, ipc, r, ev_config)
            cell.accuracies += [100 * a for a in record["result"]["accuracies"]]
            cell.runs += 1
        return cell

    def _evaluation(self, d: str, method: str, ipc: int, run: int, ev_config: dict) -> dict:
        """The store record of evaluating one set with the evaluation network (computed if new)."""
        lab, data, model = self.lab, self._have(d), self.settings.eval_model
        record = lab.store.get(ev_config)
        if record is not None:
            lab.log.append(f"reused  evaluation {record['key']} ({method}, ipc {ipc}, {model})")
            return record
        lab.store.may_compute(ev_config, f"the evaluation of {method} (ipc {ipc}, {model})")
        images, labels, _ = self.stored_set(d, method, ipc, run)
        ev = lab.profile.eval_config((model,), seed=lab.seed + run)
        tic = time.perf_counter()
        (res,) = evaluate_set(images, labels, data, "kip" if method == "kip" else "random", ev)
        record = lab.store.put(
            ev_config, {**res.as_dict(), "seconds": time.perf_counter() - tic}, device=str(data.device)
        )
        lab.log.append(
            f"computed evaluation {record['key']} ({method}, ipc {ipc}, {model}) "
            f"in {record['result']['seconds']:.1f} s"
        )
        return record

    def cells(self, plan: dict) -> tuple[list[Cell], dict[tuple[str, str, int], str]]:
        """Every cell of `plan` (datasets x ipcs x methods), and why a cell stayed empty, by
        (paper dataset, method, ipc): e.g. no C-score file."""
        cells, why_not = [], {}
        for d in plan["datasets"]:
            for ipc in plan["ipcs"]:
                for m in plan["methods"]:
                    try:
                        cells.append(self.cell(d, m, ipc))
                    except NotStoredError:  # computing is forbidden ($DCC_RENDER_ONLY): stop
                        raise
                    except UserError as exc:
                        why_not[(self.lab.use(d).paper, m, ipc)] = str(exc)
                        cells.append(Cell("table2", self.uses[d], m, ipc, self.settings.eval_model, "-"))
        return cells, why_not

    def _have(self, d: str) -> ImageDataset:
        data = self.data[d]
        if data is None:
            raise UserError(f"{self.uses[d].label}: no data to make a set from")
        return data
