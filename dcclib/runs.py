"""A condensation run's folder: config.json, metrics.jsonl, checkpoint.safetensors, synthetic.safetensors.

`condense.condense` runs the algorithm; this module owns what it writes: the folder set-up (or
the checkpoint it resumes from), atomic checkpoints of the synthetic images and the image
optimiser's momentum, and the metadata a saved synthetic set carries.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dcclib import io
from dcclib.condense_config import CondenseConfig
from dcclib.data import ImageDataset
from dcclib.errors import UserError


def synthetic_metadata(cfg: CondenseConfig, data: ImageDataset) -> dict:
    """What a saved synthetic set carries: dataset, classes, normalisation, config, versions."""
    return {
        "kind": "synthetic",
        "dataset": data.name,
        "data_source": data.source,
        "class_names": list(data.class_names),
        "mean": list(data.mean),
        "std": list(data.std),
        "method": cfg.method,
        "ipc": cfg.ipc,
        "seed": cfg.seed,
        "config": asdict(cfg),
        "versions": io.library_versions(),
    }


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


def prepare_run_dir(
    run_path: Path,
    cfg: CondenseConfig,
    data: ImageDataset,
    resume: bool,
    syn_images: Tensor,
    image_optimizer: torch.optim.Optimizer,
) -> tuple[int, list[dict]]:
    """Create the run folder, or load its checkpoint when resuming. Returns (start, metrics)."""
    run_path.mkdir(parents=True, exist_ok=True)
    ckpt = run_path / "checkpoint.safetensors"
    config_file = run_path / "config.json"
    if not resume:
        if ckpt.exists() or (run_path / "synthetic.safetensors").exists():
            raise UserError(f"{run_path} already holds a run; pass --resume to continue it, or a new --out")
        io.write_json(
            config_file,
            {
                "config": asdict(cfg),
                "dataset": data.name,
                "data_source": data.source,
                "versions": io.library_versions(),
            },
        )
        (run_path / "metrics.jsonl").unlink(missing_ok=True)
        return 0, []
    if not ckpt.exists():
        raise UserError(f"nothing to resume: {ckpt} does not exist")
    tensors, meta = io.load_checkpoint(ckpt)
    if meta.get("fingerprint") != config_fingerprint(cfg, data):
        raise UserError(f"{ckpt} was written with other settings; resume with the same ones or a new --out")
    with torch.no_grad():
        syn_images.copy_(tensors["images"].to(syn_images.device))
    if "momentum" in tensors:
        image_optimizer.state[syn_images]["momentum_buffer"] = (
            tensors["momentum"].to(syn_images.device).clone()
        )
    start = int(meta["next_outer"])
    metrics = [r for r in io.read_jsonl(run_path / "metrics.jsonl") if r["outer"] < start]
    io.write_jsonl(run_path / "metrics.jsonl", metrics)  # drop rows past the checkpoint
    return start, metrics


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
    io.save_checkpoint(run_path / "checkpoint.safetensors", tensors, meta)
