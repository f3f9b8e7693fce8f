"""A condensation run's folder: config.json, metrics.jsonl, checkpoint.safetensors, synthetic.safetensors.

`condense.condense` runs the algorithm; this module owns what it writes and what it trusts:

- `check_run_dir`, before any work, refuses a folder that cannot or must not be used (a file,
  a folder under a file or without write permission, a non-empty folder that is not a run of
  this tool, a run with a result but no --resume, a resume without a checkpoint) and leaves
  the disk as it was;
- `check_result_file`, before any work, refuses a result file (`dcc evaluate --out`) that is
  an input, or an existing file that is not an earlier result of the same kind;
- `owned` creates the folder and holds its lock (`dcclib.run_lock`: one process per folder);
- `prepare_run_dir` writes config.json (marked "kind": "dcc-run"), or loads the checkpoint
  (`io.load_checkpoint` validates it like a saved set; the shapes and `next_outer` are checked
  here against the run's settings); it removes temporary files left by a kill during a write;
- checkpoints and the final set are written atomically (`dcclib.io`); a write that fails is
  one line saying what is kept.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import Tensor

from dcclib import io, run_lock
from dcclib.condense_config import CondenseConfig
from dcclib.data import ImageDataset, get_loader, source_id
from dcclib.errors import DivergedError, UserError

RUN_KIND = "dcc-run"  # config.json's marker of a run folder
CONFIG, METRICS = "config.json", "metrics.jsonl"
CHECKPOINT, SYNTHETIC = "checkpoint.safetensors", "synthetic.safetensors"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, SYNTHETIC)
_PROBE = ".dcc-probe-"  # check_writable's probe file


# ------------------------------------------------------------------ before any work: the checks
def check_writable(path: Path, folder: bool) -> None:
    """Refuse an output that cannot be written: `path` (a folder when `folder`, else a file) must
    be creatable or replaceable. A probe file is created and removed in the nearest existing
    folder; nothing else on disk changes."""
    if path.exists() and path.is_dir() != folder:
        kind, wanted = ("a file", "a folder") if folder else ("a folder", "a file name")
        raise UserError(f"{path} is {kind}; give {wanted} as the output")
    base = path if folder else path.parent
    while not base.exists() and not base.is_symlink():
        base = base.parent
    if not base.is_dir():
        raise UserError(f"cannot create {path}: {base} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=_PROBE, dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to {base} ({exc.strerror or exc}); choose another output") from None


def check_result_file(out: Path, inputs: list[str | None], kind: str) -> None:
    """A result file `out` (JSON marked `"kind": kind`) may be created, or replace an earlier
    result of that kind: never one of `inputs`, a checkpoint, a set or any other file (a
    UserError, before any work)."""
    check_writable(out, folder=False)
    for given in inputs:
        if given is not None and out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise UserError(f"--out {out} is an input of this command; give another file for the results")
    if not out.exists() and not out.is_symlink():
        return
    try:
        earlier = json.loads(io.read_regular_bytes(out, 16 << 20).decode())
    except (OSError, ValueError, RecursionError, UserError):
        earlier = None
    legacy = isinstance(earlier, dict) and {"set", "eval_config", "results"} <= set(earlier)  # no marker
    if not (isinstance(earlier, dict) and (earlier.get("kind") == kind or legacy)):
        raise UserError(
            f"--out {out} exists and is not a result of dcc evaluate; an output replaces only an "
            "earlier result: give a new file"
        )


def check_run_dir(run_path: Path, resume: bool) -> None:
    """Refuse, before any work and leaving the disk as it was, a run folder that cannot or must
    not be used (see the module docstring)."""
    check_writable(run_path, folder=True)
    _check_contents(run_path, resume)
    run_lock.check_free(run_path)


def is_run_folder(run_path: Path) -> bool:
    """`run_path` holds the config.json of a run of this tool (the marker, or the CondenseConfig
    fields of a run written before the marker existed). A config.json that is not a regular
    file (a FIFO would block the read for ever) is a UserError naming it."""
    try:
        written = json.loads(io.read_regular_bytes(run_path / CONFIG).decode())
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(written, dict):
        return False
    config = written.get("config")
    legacy = isinstance(config, dict) and {"method", "ipc", "outer_iterations", "seed"} <= set(config)
    return written.get("kind") == RUN_KIND or legacy


def _own_leftover(name: str) -> bool:
    """A file this tool may leave in a run folder before writing config.json (lock, temporaries)."""
    return name == run_lock.LOCK_NAME or name.startswith(_PROBE) or io.is_temp_name(name)


def _check_contents(run_path: Path, resume: bool) -> None:
    names = {p.name for p in run_path.iterdir()} if run_path.is_dir() else set()
    for name in sorted(names & set(RUN_FILES)):  # a FIFO would block its reader for ever
        io.check_regular(run_path / name)
    if names and not is_run_folder(run_path) and not all(map(_own_leftover, names)):
        raise UserError(f"{run_path} is a non-empty folder that is not a dcc run; give a new or empty --out")
    if not resume and (CHECKPOINT in names or SYNTHETIC in names):
        raise UserError(f"{run_path} already holds a run; pass --resume to continue it, or a new --out")
    if resume and CHECKPOINT not in names:
        raise UserError(f"nothing to resume: {run_path / CHECKPOINT} does not exist")


# ---------------------------------------------------------------------- the folder, owned
@contextmanager
def owned(run_path: Path | None) -> Iterator[None]:
    """Create `run_path` if needed and hold its lock for the block (nothing to do for None).
    A folder created here is removed again when the block fails before writing into it."""
    if run_path is None:
        yield
        return
    created = run_path
    while not created.parent.exists():
        created = created.parent
    created = None if run_path.exists() else created
    try:
        run_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {run_path} ({exc.strerror or exc})") from None
    try:
        with run_lock.holding(run_path):
            yield
    except BaseException:
        folder = run_path
        while created is not None:  # empty folders made here, innermost first
            try:
                folder.rmdir()
            except OSError:
                break
            if folder == created:
                break
            folder = folder.parent
        raise


def prepare_run_dir(
    run_path: Path,
    cfg: CondenseConfig,
    data: ImageDataset,
    resume: bool,
    syn_images: Tensor,
    image_optimizer: torch.optim.Optimizer,
) -> tuple[int, list[dict]]:
    """Start the run in the owned folder, or load its checkpoint when resuming. Returns (start, metrics)."""
    _check_contents(run_path, resume)  # again, now under the lock: another run may have written
    if not resume:
        config = {
            "kind": RUN_KIND,
            "config": asdict(cfg),
            "dataset": data.name,
            "data_source": data.source,
            "versions": io.library_versions(),
        }
        with writing(run_path / CONFIG, "nothing else was written"):
            io.write_json(run_path / CONFIG, config)
            (run_path / METRICS).unlink(missing_ok=True)
        _remove_leftovers(run_path)
        return 0, []
    ckpt = run_path / CHECKPOINT
    io.check_regular(run_path / METRICS)  # before the checkpoint is trusted: nothing waits on a FIFO
    tensors, meta = io.load_checkpoint(ckpt)
    changed = resume_changes(ckpt, meta["fingerprint"], config_fingerprint(cfg, data))
    start = check_checkpoint(ckpt, tensors, meta, syn_images, cfg.outer_iterations)
    with torch.no_grad():
        syn_images.copy_(tensors["images"].to(syn_images.device))
    if "momentum" in tensors:
        image_optimizer.state[syn_images]["momentum_buffer"] = (
            tensors["momentum"].to(syn_images.device).clone()
        )
    rows = [r for r in io.read_jsonl(run_path / METRICS) if _before(r, start)]  # drop rows past it
    if changed:
        rows.append({"event": RESUME_EVENT, "at_outer": start, "changed": changed})
        shown = ", ".join(f"{name} {new} (was {old})" for name, (old, new) in changed.items())
        print(f"dcc: note: {run_path}: resuming at outer iteration {start} with {shown}", file=sys.stderr)
    with writing(run_path / METRICS, "the checkpoint is untouched"):
        io.write_jsonl(run_path / METRICS, rows)
    _remove_leftovers(run_path)
    return start, [r for r in rows if "event" not in r]


# settings a resume may lower (after a divergence: `diverged` says so); any other change is refused
LOWERABLE = ("lr_images", "lr_net")
RESUME_EVENT = "resumed with lower learning rates"  # the metrics.jsonl row that records it


def resume_changes(ckpt: Path, written: dict, now: dict) -> dict[str, list]:
    """{setting: [old, new]} of the learning rates lowered since the checkpoint `ckpt` was
    written with the fingerprint `written`; a UserError when any other setting differs or a
    learning rate is higher (only lowering can help a run that diverged)."""
    now = json.loads(json.dumps(now, default=str))  # as the checkpoint holds it (JSON)
    other = sorted(k for k in set(written) | set(now) if k not in LOWERABLE and written.get(k) != now.get(k))
    if other:
        raise UserError(
            f"{ckpt} was written with other settings ({', '.join(other[:4])}); resume with the same ones "
            "(only --lr-images and --lr-net may be lowered) or a new --out"
        )
    changed = {}
    for name in LOWERABLE:
        old, new = written.get(name), now.get(name)
        if old == new:
            continue
        if type(old) not in (int, float) or not new < old:
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{ckpt} was written with {flag} {old}; resume with it or a lower one (not {new}), "
                "or start a new --out"
            )
        changed[name] = [old, new]
    return changed


def _before(row: object, start: int) -> bool:
    """A metrics row of an outer iteration before `start`, or a resume event at or before it."""
    if not isinstance(row, dict):
        return False
    if "event" in row:
        return row["event"] == RESUME_EVENT and type(row.get("at_outer")) is int and row["at_outer"] <= start
    return type(row.get("outer")) is int and row["outer"] < start


def check_checkpoint(
    path: Path, tensors: dict[str, Tensor], meta: dict, like: Tensor, outer_iterations: int
) -> int:
    """The checkpoint's next outer iteration, once what `io.load_checkpoint` cannot check without
    the run's settings is checked: the images (and momentum) have exactly the shape of `like`, the
    run's synthetic images, and `next_outer` is at most `outer_iterations`. A UserError otherwise."""
    problems = [
        f"{name} have shape {list(t.shape)}, this run's are {list(like.shape)}"
        for name, t in tensors.items()
        if t.shape != like.shape
    ]
    if meta["next_outer"] > outer_iterations:
        problems.append(
            f"next_outer is {meta['next_outer']}, this run has {outer_iterations} outer iterations"
        )
    if problems:
        raise UserError(f"{path} is not a usable checkpoint of this run: {'; '.join(problems)}")
    return meta["next_outer"]


def _remove_leftovers(run_path: Path) -> None:
    """Temporary files of a write that a kill interrupted (the lock is held: none is in use)."""
    io.clean_stale_temp(run_path)
    for probe in run_path.glob(f"{_PROBE}*"):
        probe.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- writing
@contextmanager
def writing(path: Path, kept: str) -> Iterator[None]:
    """Turn an OSError of the block (disk full, `ulimit -f`, permissions; safetensors' own error
    type too) into one line: what failed, what is kept."""
    try:
        yield
    except (OSError, SafetensorError) as exc:
        error = exc if isinstance(exc, OSError) else io.as_os_error(exc)
        raise UserError(f"could not write {path} ({error.strerror or error}); {kept}") from None


def append_metrics(run_path: Path, row: dict) -> None:
    """Append one row to metrics.jsonl."""
    with writing(run_path / METRICS, "the last checkpoint is kept: continue from it with --resume"):
        io.append_jsonl(run_path / METRICS, row)


def save_checkpoint(
    run_path: Path,
    cfg: CondenseConfig,
    data: ImageDataset,
    syn_images: Tensor,
    image_optimizer: torch.optim.Optimizer,
    next_outer: int,
) -> None:
    """Write the images and the image optimiser's momentum atomically, with the resume fingerprint."""
    tensors = {"images": syn_images.detach()}
    buf = image_optimizer.state.get(syn_images, {}).get("momentum_buffer")
    if buf is not None:
        tensors["momentum"] = buf
    meta = {"next_outer": next_outer, "fingerprint": config_fingerprint(cfg, data)}
    path = run_path / CHECKPOINT
    with writing(path, "any earlier checkpoint is kept: continue from it with --resume"):
        io.save_checkpoint(path, tensors, meta)


def save_set(
    run_path: Path,
    images: Tensor,
    labels: Tensor,
    meta: dict,
    kept: str = "the final checkpoint is kept: run again with --resume to write the set",
) -> Path:
    """Write the run's synthetic set (synthetic.safetensors) atomically; its path."""
    path = run_path / SYNTHETIC
    with writing(path, kept):
        io.save_synthetic(path, images, labels, meta)
    return path


# ---------------------------------------------------------------------- what a run records
def image_folder_of(data: ImageDataset) -> str | None:
    """The image folder `data` was read from (train/ and test/, or their .tar.gz), or None for a
    registered dataset."""
    source = Path(data.source) if data.source else None
    if source is None or get_loader(data.name) is not None or not source.is_dir():
        return None
    layouts = (("train", "test"), ("train.tar.gz", "test.tar.gz"))
    return str(source) if any(all((source / n).exists() for n in names) for names in layouts) else None


def synthetic_metadata(cfg: CondenseConfig, data: ImageDataset) -> dict:
    """What a saved synthetic set carries: dataset (and its folder when read from one), classes,
    normalisation, config, versions."""
    meta = {
        "kind": "synthetic",
        "dataset": data.name,
        "data_source": source_id(data.source),  # the folder's name: no path of this machine
        "class_names": list(data.class_names),
        "mean": list(data.mean),
        "std": list(data.std),
        "method": cfg.method,
        "ipc": cfg.ipc,
        "seed": cfg.seed,
        "config": asdict(cfg),
        "versions": io.library_versions(),
    }
    folder = image_folder_of(data)
    if folder is not None:
        meta["dataset_path"] = folder  # `dcc evaluate` loads it from here without --dataset
    return meta


def diverged(
    outer: int, cfg: CondenseConfig, run_path: Path | None, checkpointed: int | None
) -> DivergedError:
    """The error of a run whose loss or images became non-finite in outer iteration `outer`."""
    if run_path is None:
        kept = "nothing was saved"
    elif checkpointed is None:
        kept = "no checkpoint was written yet and no synthetic set is written"
    else:
        kept = (
            f"{run_path / CHECKPOINT} (after {checkpointed} outer iterations) is kept "
            "and no synthetic set is written: continue from it with --resume and a lower rate"
        )
    return DivergedError(
        f"the run diverged in outer iteration {outer}: the matching loss or the synthetic images "
        f"became NaN or infinite; lower --lr-images (now {cfg.lr_images}) or --lr-net "
        f"(now {cfg.lr_net}); {kept}"
    )


def progress_bar(start: int, total: int, enabled: bool) -> Any:
    """A tqdm bar over the outer iterations (disabled when not `enabled`)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="condense", unit="net", disable=not enabled)


def config_fingerprint(cfg: CondenseConfig, data: ImageDataset) -> dict:
    """The settings a checkpoint must agree with to be resumed (everything but the schedule)."""
    d = asdict(cfg)
    d.pop("checkpoint_every")
    d["dataset_name"] = data.name
    d["train_shape"] = list(data.train_images.shape)
    return d
