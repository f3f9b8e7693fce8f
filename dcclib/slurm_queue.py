"""What the Slurm queue says of a job: the job this process runs in, and whether a job is gone.

Core, so that a run lock (``dcclib.run_lock``) can tell a lock of a job the scheduler no longer
runs (a node lost, a job requeued elsewhere) from a live one; the sweep's Slurm code
(``dcclib.lab.slurm_state``) builds on it. Every function answers None ("cannot say") where the
Slurm commands are missing or fail: callers then keep what they knew.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess

# squeue's states of a job that still runs or will run again (a requeued job is PENDING)
LIVE = set(
    "PENDING CONFIGURING RUNNING COMPLETING REQUEUED REQUEUE_FED REQUEUE_HOLD RESIZING SUSPENDED "
    "STOPPED SIGNALING STAGE_OUT RESV_DEL_HOLD PREEMPTED".split()
)


def slurm_command(command: list[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    """`command` run (a Slurm tool), or None where it is missing or fails to run."""
    if shutil.which(command[0]) is None:
        return None
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def queue() -> dict[str, str] | None:
    """{job id: state} of this user's jobs in the queue ('123' or, per array task, '123_4');
    None when squeue cannot say."""
    out = slurm_command(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"])
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


def job_here() -> str | None:
    """The Slurm job this process runs in ('123', or '123_4' for an array task), else None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None
