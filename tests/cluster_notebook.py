"""A test notebook for the cluster tests (tests/test_slurm_cluster.py, tests/test_ray_cluster.py).

The shape of test_sweep's tiny notebook (a parameters cell, a Lab, cells through `lab.cell`) with
more parameters: `outer` (K_o of a condensation: long enough to cancel or preempt it mid-run),
`name`, the Lab's profile name (the Lab checkpoints condensations, every 10 outer iterations,
under <results>/.runs/<key>, at any profile but "smoke"), and `progress` (a condensation's
progress bar on stderr: where a resumed run starts shows in its log).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from test_sweep import CELLS, contents

from dcclib.lab import executors, sweep

PARAMETERS = """profile = "smoke"
seed = 0
methods = ["random", "dc"]
extra = []
data_root = "/nonexistent"
outer = 2
name = "smoke"
progress = False
"""
CODE = """import torch
from dcclib.data import ImageDataset
from dcclib.lab.experiments import Lab
from dcclib.lab.profiles import Profile

TINY = Profile(name, outer_iterations=outer, max_inner_iterations=2, max_net_epochs=1, batch_real=4,
               num_runs=1, num_nets=1, eval_epochs=2, default_dataset="tiny", device="cpu")
lab = Lab("60_cluster", profile=TINY, seed=seed, threads=1, stand_in=None, data_root=data_root,
          progress=progress)
g = torch.Generator().manual_seed(0)
protos = torch.randn(3, 3, 16, 16, generator=g)


def split(n):
    y = torch.arange(3).repeat_interleave(n)
    return protos[y] + 0.5 * torch.randn(len(y), 3, 16, 16, generator=g), y


lab.add_dataset(ImageDataset("tiny", *split(12), *split(4), ["a", "b", "c"], (0.0,) * 3, (1.0,) * 3, "test"))
"""


def notebook(folder: Path) -> Path:
    """The notebook's folder (the sweep's --notebooks)."""

    def cell(source: str, tags: tuple[str, ...] = ()) -> dict:
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": []}

    folder.mkdir(parents=True, exist_ok=True)
    cells = [cell(PARAMETERS, ("parameters",)), cell(CODE), cell(CELLS)]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4}
    (folder / "60_cluster.ipynb").write_text(json.dumps(nb))
    return folder


def plan(notebooks: Path, results: Path, **parameters: object) -> sweep.Sweep:
    return sweep.plan("smoke", parameters=parameters, results=results, notebooks=notebooks)


def local_contents(notebooks: Path, results: Path, **parameters: object) -> dict:
    """The store a local run of the same plan leaves (what a cluster must reproduce)."""
    outcomes = sweep.run(plan(notebooks, results, **parameters))
    assert {o["status"] for o in outcomes} == {"done"}, outcomes
    return contents(results)


def argv(notebooks: Path, results: Path, **parameters: object) -> list[str]:
    """`dcc sweep` options for this notebook and store (parameters as --param KEY=JSON)."""
    params = [a for k, v in parameters.items() for a in ("--param", f"{k}={json.dumps(v)}")]
    return ["--notebooks", str(notebooks), "--results", str(results), *params]


class Background:
    """`sweep.run` in a thread (it waits for its jobs): the test acts on the jobs meanwhile."""

    def __init__(
        self, s: sweep.Sweep, executor: str, options: executors.Options, max_jobs: int | None = None
    ) -> None:
        self.outcomes: list[dict] | None = None
        self.error: BaseException | None = None
        args = (s, executor, options, max_jobs)
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, s: sweep.Sweep, executor: str, options: executors.Options, max_jobs: int | None) -> None:
        try:
            self.outcomes = sweep.run(s, executor, options, max_jobs)
        except BaseException as exc:  # noqa: BLE001 - re-raised by `result`
            self.error = exc

    def result(self, timeout: float) -> list[dict]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the sweep did not end within {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.outcomes is not None
        return self.outcomes


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 0.5) -> object:
    """`check()`'s first true value within `timeout` seconds (else the test fails, saying `what`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def running_note(results: Path) -> dict | None:
    """The note of a job that noted "running" (the first one found), or None."""
    for path in sorted((results / ".jobs").glob("*.json")) if (results / ".jobs").is_dir() else []:
        note = json.loads(path.read_text())
        if note.get("status") == "running":
            return note
    return None


def checkpoint_digest(results: Path) -> str | None:
    """The sha256 of the first condensation checkpoint under <results>/.runs, if any."""
    found = sorted(results.glob(".runs/*/checkpoint.safetensors"))
    return hashlib.sha256(found[0].read_bytes()).hexdigest() if found else None


def bar_starts(log: str) -> list[int]:
    """Where each condensation progress bar in `log` started (0: from scratch; k: resumed at k)."""
    firsts = [int(m) for m in re.findall(r"condense:[^\r\n|]*\|[^|]*\|\s*(\d+)/\d+ \[00:00<\?", log)]
    return [c for i, c in enumerate(firsts) if i == 0 or c != firsts[i - 1]]


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
