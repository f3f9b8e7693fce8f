"""What the Slurm scheduler says: a partition's GPUs, whether ``sacct`` works, the queue.

Used by the slurm executor before it submits (``--gpus-per-job`` against the partition's GPUs),
while it waits (job states from ``squeue`` where accounting is off: submitit's own watcher asks
``sacct``, and without accounting a task cancelled from outside stays UNKNOWN for ever), and by
``dcclib.lab.reconcile`` (is the Slurm job of a "running" note still queued?).

Every function answers None ("cannot say") where the Slurm commands are missing or fail: callers
then keep what they knew.
"""

from __future__ import annotations

import re
import time
from typing import Any

from dcclib.errors import UserError
from dcclib.slurm_queue import LIVE, job_gone, job_here, queue, slurm_command  # noqa: F401  (re-exported)

WAITING = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "PREEMPTED"}  # submitit: not done yet
GONE = "GONE"  # our state of a job the queue no longer lists (finished, cancelled, purged)


def partition_gpus(partition: str | None) -> int | None:
    """The most GPUs one node of `partition` (None: the default partition) has; None when sinfo
    cannot say (no Slurm here), a UserError when the partition does not exist."""
    out = slurm_command(["sinfo", "-h", "-o", "%P|%G"])
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
    out = slurm_command(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"])
    if out is None:
        return "sacct is not installed"
    if out.returncode == 0:
        return None
    said = (out.stderr or out.stdout).strip().splitlines()
    return said[-1] if said else f"exit status {out.returncode}"


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
