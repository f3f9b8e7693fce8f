"""One job of a sweep, run by a worker: `execute(spec)` (what every executor calls).

A set or an evaluation runs from its config alone (``spec["direct"]``: the config, the dataset to
load and the settings that make the notebook's Lab again, with the device and threads as asked
for, so that each worker resolves its own): no notebook is run on the worker. An analysis
(velocity, alignment, continual) plans its notebook again and runs the notebook's own call. Either
way the job's record in the store's ``.jobs`` says running, failed (with the error) or done.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path

from dcclib.errors import UserError
from dcclib.lab import slurm_state
from dcclib.lab.experiments import Lab
from dcclib.lab.planner import Job, computing, environment, plan_notebook
from dcclib.lab.store import TENSOR_LIMIT_ENV, ResultStore, config_key


def execute(spec: dict) -> dict:
    """Run the job `spec['key']` of notebook `spec['notebook']` (see the module doc); the outcome."""
    store, key = ResultStore(spec["results"]), spec["key"]
    tic = time.perf_counter()
    attempts = ((store.job_note(key) or {}).get("attempts") or 0) + 1
    try:
        job = _direct_job(spec) if spec.get("direct") else _planned_job(spec)
        if job.lab.store.get(job.config) is not None:
            return {"key": key, "status": "done", "skipped": True, "label": job.label}
        if not job.available:
            raise UserError("the data of this job are not on this machine")
        here = {"host": socket.gethostname(), "pid": os.getpid(), "attempts": attempts,
                "slurm_job": slurm_state.job_here()}  # fmt: skip
        store.note_job(key, status="running", label=job.label, notebook=job.notebook, error=None, **here)
        print(f"[job] {job.label} [{key}] on {here['host']} ...", flush=True)
        limit = str(spec.get("max_tensor_mb", 0))
        with environment(**{TENSOR_LIMIT_ENV: limit}), computing(job.lab):
            job.run()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        where = {
            "host": socket.gethostname(),
            "attempts": attempts,
            "traceback": traceback.format_exc()[-4000:],
        }
        store.note_job(key, status="failed", label=spec.get("label"), error=error, **where)
        print(f"[job] {spec.get('label')} [{key}]: FAILED: {error}", flush=True)
        return {"key": key, "status": "failed", "error": error, "label": spec.get("label")}
    seconds = time.perf_counter() - tic
    store.note_job(key, status="done", seconds=seconds, error=None)
    print(f"[job] {job.label} [{key}]: done in {seconds:.0f} s", flush=True)
    return {"key": key, "status": "done", "seconds": seconds, "label": job.label}


def _planned_job(spec: dict) -> Job:
    """The job of `spec` as its notebook plans it now (an analysis: the notebook's own call)."""
    notebook = Path(spec["notebook"]), spec["parameters"], Path(spec["results"])
    plan = plan_notebook(*notebook, spec["allow_stale"], spec["max_tensor_mb"])
    if plan.error:
        raise UserError(f"planning {plan.notebook} failed: {plan.error}")
    job = plan.jobs.get(spec["key"])
    if job is None:
        raise UserError("the notebook no longer asks for this job (code or parameters changed): plan again")
    return job


def _direct_job(spec: dict) -> Job:
    """The job of `spec` from its config alone (a set or an evaluation): no notebook is run."""
    direct = spec["direct"]
    lab = Lab(**direct["lab"], results_dir=spec["results"], allow_stale=spec["allow_stale"])
    config, name = direct["config"], direct["dataset"]
    try:
        lab.data(name)
        available = True
    except UserError:
        available = False
    job = Job(spec["key"], config["kind"], direct["lab"]["notebook"], spec["label"], config, available)
    job.lab, job.dataset, job.run = lab, name, lambda: lab.compute(config, name)
    if config_key(config) != spec["key"]:
        raise UserError(f"the job's config does not hash to its key {spec['key']}: plan again")
    return job
