"""What the Slurm scheduler says: a partition's GPUs, whether ``sacct`` works, the queue.

Used by the slurm executor before it submits (``--gpus-per-job`` against the partition's GPUs),
while it waits (job states from ``squeue`` where accounting is off: submitit's own watcher asks
``sacct``, and without accounting a task cancelled from outside stays UNKNOWN for ever), and by
``dcclib.lab.reconcile`` (is the Slurm job of a "running" note still queued?).

Every function answers None ("cannot say") where the Slurm commands are missing or fail: callers
then keep what they knew.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import time
from typing import Any

from dcclib.errors import UserError

# squeue's states of a job that still runs or will run again (a requeued job is PENDING)
LIVE = set(
    "PENDING CONFIGURING RUNNING COMPLETING REQUEUED REQUEUE_FED REQUEUE_HOLD RESIZING SUSPENDED "
    "STOPPED SIGNALING STAGE_OUT RESV_DEL_HOLD PREEMPTED".split()
)
WAITING = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "PREEMPTED"}  # submitit: not done yet
GONE = "GONE"  # our state of a job the queue no longer lists (finished, cancelled, purged)


def _run(command: list[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def partition_gpus(partition: str | None) -> int | None:
    """The most GPUs one node of `partition` (None: the default partition) has; None when sinfo
    cannot say (no Slurm here), a UserError when the partition does not exist."""
    out = _run(["sinfo", "-h", "-o", "%P|%G"])
    if out is None or out.returncode != 0:
        return None
    rows = [line.split("|", 1) for line in out.stdout.splitlines() if "|" in line]
    if partition is None:
        default = [p for p, _ in rows if p.endswith("*")]
        partition = default[0] if default else None
        if partition is None:
            return None
    name = partition.rstrip("*")
    gres = [g for p, g in rows if p.rstrip("*") == name]
    if not gres:
        known = ", ".join(sorted({p.rstrip("*") for p, _ in rows})) or "none"
        raise UserError(f"--partition {name}: no such Slurm partition (sinfo lists: {known})")
    return max(gpus_in(g) for g in gres)


def gpus_in(gres: str) -> int:
    """'gpu:4', 'gpu:a100:2(S:0-1)', 'gpu:1,shard:8' -> 4, 2, 1; '(null)' -> 0."""
    total = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*?\)", "", item).strip().split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def sacct_problem() -> str | None:
    """None when ``sacct`` answers here; else what it said (e.g. accounting storage is disabled)."""
    out = _run(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"])
    if out is None:
        return "sacct is not installed"
    if out.returncode == 0:
        return None
    said = (out.stderr or out.stdout).strip().splitlines()
    return said[-1] if said else f"exit status {out.returncode}"


def queue() -> dict[str, str] | None:
    """{job id: state} of this user's jobs in the queue ('123' or, per array task, '123_4');
    None when squeue cannot say."""
    out = _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"])
    if out is None or out.returncode != 0:
        return None
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state.strip().upper()
    return states


def job_gone(job: str, states: dict[str, str] | None) -> bool | None:
    """Whether Slurm job `job` ('123' or '123_4') no longer runs nor will (None: cannot say)."""
    if states is None:
        return None
    state = states.get(job)
    return state is None or state not in LIVE


def queue_watcher(delay_s: float = 30) -> Any:
    """A submitit watcher that reads job states from squeue (see the module doc): a task the queue
    no longer lists is done (GONE); its missing result then says it failed."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        def update(self) -> None:
            pending = self._registered - self._finished
            if not pending:
                return
            self._num_calls += 1
            states = queue()
            if states is not None:
                for job in pending:
                    state = states.get(job, GONE)
                    if state in LIVE and state not in WAITING:  # submitit's is_done knows these only
                        state = "RUNNING"
                    self._info_dict[job] = {"JobID": job, "State": state}
            for job in pending:
                if self.is_done(job, mode="cache"):
                    self._finished.add(job)
            self._last_status_check = time.time()

    return QueueWatcher(delay_s=delay_s)


def job_here() -> str | None:
    """The Slurm job this process runs in ('123', or '123_4' for an array task), else None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None
