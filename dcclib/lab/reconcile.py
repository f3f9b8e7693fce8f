"""The store's job notes (``<results>/.jobs``) made to agree with what really runs.

A job notes "running" when it starts and "done" or "failed" when it ends; a job killed from
outside (``scancel``, an out-of-memory kill, a lost node, ``kill -9`` of a Ray worker) ends
without a word. Before notes are shown or used:

- ``note_failures``: a job its executor reports failed (its worker or Slurm task died) is noted
  failed, with the executor's reason, unless the job noted its own failure;
- ``reconcile``: a "running" note whose Slurm job the queue no longer lists, or whose process on
  this host is gone, becomes "failed" with the reason. A note of another host outside Slurm
  cannot be checked from here and stays "running".
"""

from __future__ import annotations

import os
import socket

from dcclib.lab import slurm_state
from dcclib.lab.planner import Job
from dcclib.lab.store import ResultStore


def note_failures(store: ResultStore, outcomes: list[dict]) -> None:
    """Note every failed outcome the job did not note itself (see the module doc)."""
    for out in outcomes:
        if out.get("status") != "failed":
            continue
        note = store.job_note(out["key"]) or {}
        if note.get("status") != "failed":
            store.note_job(out["key"], status="failed", error=out.get("error"), label=out.get("label"))


def pid_alive(pid: object) -> bool:
    """Whether process `pid` exists on this host."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead(note: dict, queue: dict[str, str] | None) -> str | None:
    """Why the job of a "running" note no longer runs, or None (running, or cannot say)."""
    job = note.get("slurm_job")
    if isinstance(job, str) and job:
        if slurm_state.job_gone(job, queue):
            state = (queue or {}).get(job)
            how = f"ended as {state}" if state else "is no longer in the queue"
            return f"Slurm job {job} {how} and stored no result (cancelled, killed or its node lost)"
        if queue is not None:
            return None
    if note.get("host") == socket.gethostname() and not pid_alive(note.get("pid")):
        return f"its process {note.get('pid')} on {note.get('host')} is gone (killed?) without a result"
    return None


def reconcile(store: ResultStore, running: list[Job]) -> None:
    """Each job whose "running" note is known false becomes "failed" (note and state)."""
    if not running:
        return
    queue = slurm_state.queue() if any((j.note or {}).get("slurm_job") for j in running) else None
    for job in running:
        why = dead(job.note or {}, queue)
        if why is None:
            continue
        fresh = store.job_note(job.key) or {}
        if fresh.get("status") != "running" or fresh.get("updated") != (job.note or {}).get("updated"):
            continue  # it moved on meanwhile (done, or started again)
        job.note = store.note_job(job.key, status="failed", error=why)
        job.state = "failed"
