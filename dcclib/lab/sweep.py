"""Sweeps: every job the notebooks ask for, with its cost, run where the GPUs are.

    dcc sweep --plan --profile paper                    # the paper's jobs, their cost, what is stored
    dcc sweep --profile quick --only 04 --data-root data            # run them here, one after another
    dcc sweep --profile paper --data-root data --executor pool      # one process per visible GPU
    dcc sweep --profile paper --data-root data --executor slurm --partition gpu --time 12:00:00
    dcc sweep --profile paper --data-root data --executor ray --address auto
    dcc sweep --status --profile paper                  # done / to run / failed, with each error
    dcc sweep --cost-table                              # the README's cost table

(also ``python -m dcclib.lab.sweep``.) What a notebook asks for is found by running its code with
a planner in place of the computations (``dcclib.lab.planner``): the notebooks' loops are the one
place that says what a table needs, so a sweep cannot drift from them, and its jobs are stored
under exactly the keys the notebook looks up when rendered: rendered after a sweep, a notebook
reads every result from the store and recomputes nothing. Jobs write only to the results store
(``dcclib.lab.store``: atomic, content-addressed, safe for many writers). A rerun plans again and
runs only what the store lacks, so a killed or partly failed sweep loses only the jobs in flight;
each failure is kept with its job and shown by ``--status``. Jobs run in stages, each on an
executor of ``dcclib.lab.executors``: 0, sets and self-contained analyses; 1, what needs a set
(evaluations, the first alignment point of each feature network, which trains and caches it);
2, the other alignment points. A worker runs a set or an evaluation from the job's config alone,
without running its notebook again (``dcclib.lab.job_run``); an analysis plans its notebook again.
``--allow-stale`` counts results of an older algorithm version as done (tables say so).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dcclib.errors import UserError
from dcclib.lab import cost, executors, reconcile
from dcclib.lab.job_run import execute
from dcclib.lab.planner import Job, NotebookPlan, forget_plans, plan_notebook
from dcclib.lab.profiles import PROFILES
from dcclib.lab.reports import (
    NOTEBOOK_GLOB,
    check_parameters,
    notebook_parameters,
    notebooks_dir,
    parse_param,
    select,
)
from dcclib.lab.store import ResultStore, default_results_dir

NOT_SWEPT = {
    "00_quickstart": "condenses one set inline, not through the store (minutes at any profile)",
    "01_motivating_example": "exact 2-D analysis in float64 on a CPU (seconds)",
    "11_table2_selection_kip": "makes its selection and KIP sets in the notebook, not through Lab: "
    "the reports runner renders it",
    "12_table6_fine_grained_groups": "reads class lists only (no jobs)",
    "13_convergence": "evaluates checkpoints of one run along the way, not through Lab's jobs: "
    "python -m dcclib.lab.convergence fills the store, the reports runner renders it",
}
TO_RUN = ("missing", "failed", "running")


@dataclass
class Sweep:
    """The planned jobs of some notebooks at one profile, against one results store."""

    profile: str
    results: Path
    plans: list[NotebookPlan]
    skipped: dict[str, str] = field(default_factory=dict)
    allow_stale: bool = False
    max_tensor_mb: float = 0  # sets larger than this are not stored (0: every set)

    def jobs(self) -> list[Job]:
        """Every job once (the first notebook that asks for it owns it; `also` names the others)."""
        seen: dict[str, Job] = {}
        for plan in self.plans:
            for job in plan.jobs.values():
                first = seen.setdefault(job.key, job)
                if first is not job and plan.notebook not in first.also and plan.notebook != first.notebook:
                    first.also.append(plan.notebook)
        return list(seen.values())

    def spec(self, job: Job) -> dict:
        """What a worker needs to run `job` (plain data: it travels to other processes and hosts)."""
        plan = next(p for p in self.plans if p.notebook == job.notebook)
        lab = job.lab.settings_for_worker(job.dataset) if job.lab is not None and job.dataset else None
        return {
            "key": job.key,
            "label": job.label,
            "notebook": plan.path,
            "parameters": plan.parameters,
            "results": str(self.results),
            "allow_stale": self.allow_stale,
            "max_tensor_mb": self.max_tensor_mb,
            # a set or an evaluation runs from its config alone; an analysis plans its notebook again
            **({"direct": {"config": job.config, "dataset": job.dataset, "lab": lab}} if lab else {}),
        }


def plan(
    profile: str = "smoke",
    only: str | None = None,
    parameters: dict | None = None,
    results: Path | None = None,
    notebooks: Path | None = None,
    allow_stale: bool = False,
    max_tensor_mb: float = 0,
) -> Sweep:
    """Plan the notebooks (all, or those `only` names) at `profile`; nothing runs."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'; choose one of: {', '.join(PROFILES)}")
    chosen = select(sorted((notebooks or notebooks_dir()).glob(NOTEBOOK_GLOB)), only)
    params = {"profile": profile, **(parameters or {})}
    check_parameters(chosen, params)
    results = Path(results or default_results_dir()).resolve()
    sweep = Sweep(profile, results, [], allow_stale=allow_stale, max_tensor_mb=max_tensor_mb)
    forget_plans()  # plan afresh (the store may have changed); workers of this process reuse these
    for nb in chosen:
        if nb.stem in NOT_SWEPT:
            sweep.skipped[nb.stem] = NOT_SWEPT[nb.stem]
            continue
        known = notebook_parameters(nb)
        given = {k: v for k, v in params.items() if k in known}
        sweep.plans.append(plan_notebook(nb, given, results, allow_stale, max_tensor_mb))
    store = ResultStore(results)
    for job in sweep.jobs():
        if job.state in TO_RUN:
            job.note = store.job_note(job.key)
            if job.note and job.note.get("status") in ("failed", "running"):
                job.state = job.note["status"]
    reconcile.reconcile(store, [j for j in sweep.jobs() if j.state == "running"])
    return sweep


def run(
    sweep: Sweep,
    executor: str = "local",
    options: executors.Options | None = None,
    max_jobs: int | None = None,
) -> list[dict]:
    """Run the jobs the store lacks (at most `max_jobs`), stage by stage; their outcomes."""
    todo = sorted((j for j in sweep.jobs() if j.state in TO_RUN), key=lambda j: j.stage)
    todo = todo[:max_jobs] if max_jobs is not None else todo
    outcomes: list[dict] = []
    for stage in sorted({j.stage for j in todo}):
        specs = [sweep.spec(j) for j in todo if j.stage == stage]
        print(f"[sweep] stage {stage}: {len(specs)} job(s) on {executor}", flush=True)
        done = executors.run(executor, execute, specs, options)
        reconcile.note_failures(ResultStore(sweep.results), done)
        failed = [o for o in done if o["status"] == "failed"]
        print(f"[sweep] stage {stage}: {len(done) - len(failed)} done, {len(failed)} failed", flush=True)
        for out in failed:
            print(f"[sweep]   FAILED {out.get('label')}: {out['error']}", flush=True)
        outcomes += done
    return outcomes


# ------------------------------------------------------------------------------------- reports
def _flops(jobs: list[Job]) -> float:
    return sum(j.flops for j in jobs if not math.isnan(j.flops))


def _hours(jobs: list[Job], gpus: int, rate: float) -> float:
    stages = [[j.flops for j in jobs if j.stage == s and not math.isnan(j.flops)] for s in (0, 1, 2)]
    return cost.wall_hours(stages, gpus, rate)


def duration(hours: float) -> str:
    """0.001 -> '<1 min', 0.5 -> '30 min', 3.25 -> '3.2 h', 100 -> '4.2 d'."""
    if hours * 60 < 1:
        return "<1 min" if hours > 0 else "0"
    if hours < 1:
        return f"{round(hours * 60)} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def summary(sweep: Sweep, rate: float, cluster: int) -> list[dict]:
    """Per notebook and for all (each job once): jobs by state, FLOPs, time on 1, 8, `cluster` GPUs."""
    groups = [(p.notebook, list(p.jobs.values())) for p in sweep.plans] + [
        ("all (each job once)", sweep.jobs())
    ]
    rows = []
    for name, jobs in groups:
        left = [j for j in jobs if j.state in TO_RUN]
        rows.append(
            {
                "notebook": name,
                "jobs": len(jobs),
                "done": sum(j.state == "done" for j in jobs),
                "to run": len(left),
                "no data": sum(j.state == "no data" for j in jobs),
                "FLOP": cost.human_flops(_flops(jobs)),
                "1 GPU": duration(_hours(jobs, 1, rate)),
                "8 GPUs": duration(_hours(jobs, 8, rate)),
                f"{cluster} GPUs": duration(_hours(jobs, cluster, rate)),
                "to run, 1 GPU": duration(_hours(left, 1, rate)),
            }
        )
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])


def show_plan(sweep: Sweep, rate: float, source: str, cluster: int, jobs: bool = True) -> str:
    """The text of --plan (jobs: one line each, then the summary) and of --status (jobs=False)."""
    out = [f"# dcc sweep: profile {sweep.profile}, results store {sweep.results}", f"# throughput: {source}"]
    if jobs:
        out.append(f"{'nb':3s} {'stage':5s} {'kind':9s} {'state':8s} {'FLOP':>8s} {'GPU-h':>7s}  job [key]")
        for j in sorted(sweep.jobs(), key=lambda j: (j.stage, j.notebook)):
            hours = "?" if math.isnan(j.flops) else f"{j.flops / rate / 3600:.2f}"
            also = f" (also {', '.join(n[:2] for n in j.also)})" if j.also else ""
            flops = "?" if math.isnan(j.flops) else cost.human_flops(j.flops)
            out.append(f"{j.notebook[:2]:3s} {j.stage:<5d} {j.kind:9s} {j.state:8s} {flops:>8s} {hours:>7s}  "
                       f"{j.label} [{j.key[:10]}]{also}")  # fmt: skip
    out += ["", cost.hours_note(rate, source), _table(summary(sweep, rate, cluster))]
    for p in sweep.plans:
        if p.error:
            out.append(f"PLAN INCOMPLETE {p.notebook}: {p.error}")
    for n, why in sweep.skipped.items():
        if n == "13_convergence":  # its own runs: priced here by the same model, not in the tables
            flops = cost.study_flops(sweep.profile)
            hours = duration(flops / rate / 3600)
            why += f"; its study at {sweep.profile}: {cost.human_flops(flops)} FLOP, {hours} on 1 GPU"
        out.append(f"not swept: {n}: {why}")
    if any(j.state == "no data" for j in sweep.jobs()):
        out.append("no data: the data of these jobs are not here (placeholder shapes; keys provisional)")
    return "\n".join(out)


def show_status(sweep: Sweep, rate: float, source: str, cluster: int) -> str:
    """--status: the summary, then every failed job with its error and every running one."""
    out = [show_plan(sweep, rate, source, cluster, jobs=False), ""]
    for j in sweep.jobs():
        note = j.note or {}
        if j.state == "failed":
            out.append(f"FAILED  {j.label} [{j.key}] on {note.get('host')} at {note.get('updated')}, "
                       f"attempt {note.get('attempts')}: {note.get('error')}")  # fmt: skip
        elif j.state == "running":
            out.append(f"running {j.label} [{j.key}] on {note.get('host')} (pid {note.get('pid')}) "
                       f"since {note.get('updated')}")  # fmt: skip
    return "\n".join(out)


def cost_table(notebooks: Path | None = None, parameters: dict | None = None, cluster: int = 64) -> str:
    """The README's table: every swept notebook at every profile (all its jobs, an empty store)."""
    rate, source = cost.throughput()
    rows = []
    with tempfile.TemporaryDirectory() as empty:
        for profile in PROFILES:
            sweep = plan(profile, parameters=parameters, results=Path(empty), notebooks=notebooks)
            names = {"jobs": "jobs", "FLOP": "FLOP", "1 GPU": "1 GPU", "8 GPUs": "8-GPU node"}
            names[f"{cluster} GPUs"] = f"Slurm, {cluster} GPUs"
            for r in summary(sweep, rate, cluster):
                rows.append(
                    {"notebook": r["notebook"], "profile": profile, **{v: r[k] for k, v in names.items()}}
                )
    return (
        f"{cost.hours_note(rate, source)}\n\n{_table(rows)}\n\n"
        "Written by `python -m dcclib.lab.sweep --cost-table`."
    )


# ------------------------------------------------------------------------------------------ CLI
def parser() -> argparse.ArgumentParser:
    """The options of `dcc sweep`."""
    ap = argparse.ArgumentParser(prog="dcc sweep", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="list the jobs, their cost and state; run nothing")
    mode.add_argument("--status", action="store_true", help="what is done, to run, failed (with errors)")
    mode.add_argument("--cost-table", action="store_true", help="every notebook's cost at every profile")
    ap.add_argument("--summary", action="store_true", help="--plan: the tables only, not every job")
    ap.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    ap.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 03,04")
    ap.add_argument("--data-root", help="folder with the datasets (the notebooks' data_root)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the profile's)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a notebook parameter")
    ap.add_argument("--results", type=Path, help="results store (default results/ or $DCC_RESULTS_DIR)")
    ap.add_argument("--notebooks", type=Path, help="folder of the notebooks (default notebooks/)")
    ap.add_argument(
        "--allow-stale", action="store_true", help="count older algorithm versions' results as done"
    )
    ap.add_argument("--max-tensor-mb", type=float, default=0, help="store sets up to this size (0: all)")
    ap.add_argument("--executor", default="local", choices=executors.EXECUTORS)
    ap.add_argument("--max-jobs", type=int, help="run at most this many jobs, then stop")
    ap.add_argument("--workers", type=int, help="pool: processes (default: one per GPU); ray: local CPUs")
    ap.add_argument("--partition", help="slurm partition")
    ap.add_argument("--time", help="slurm time limit per job: minutes or [D-]HH:MM:SS")
    ap.add_argument("--gpus-per-job", type=int, help="slurm, ray (default: 1 where there are GPUs, else 0)")
    ap.add_argument("--max-parallel", type=int, help="slurm: array tasks at once")
    ap.add_argument("--slurm-config", type=Path, help="YAML of site settings (submitit keywords)")
    ap.add_argument(
        "--cluster", choices=("slurm", "local", "debug"), help="submitit's cluster (default: detect)"
    )
    ap.add_argument("--log-dir", type=Path, help="slurm: submitit's folder (default <results>/.submitit)")
    ap.add_argument("--address", help="ray: an existing cluster ('auto', 'ray://host:10001')")
    ap.add_argument(
        "--cluster-gpus", type=int, default=cost.CLUSTER_GPUS, help="the cluster of the cost columns"
    )
    ap.add_argument(
        "--throughput", type=float, help="FLOP/s for the GPU-hours (default: measured or assumed)"
    )
    return ap


def check_options(args: argparse.Namespace) -> None:
    """Every option of `dcc sweep`, checked before any planning (which takes seconds): a
    UserError (one line) for the first bad one; nothing is created."""
    for flag in ("max_jobs", "workers", "max_parallel", "cluster_gpus"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.gpus_per_job is not None and args.gpus_per_job < 0:
        raise UserError(f"--gpus-per-job must be 0 or more, got {args.gpus_per_job}")
    if args.throughput is not None and not (math.isfinite(args.throughput) and args.throughput > 0):
        raise UserError(f"--throughput must be a positive number of FLOP/s, got {args.throughput}")
    if not (math.isfinite(args.max_tensor_mb) and args.max_tensor_mb >= 0):
        raise UserError(f"--max-tensor-mb must be a number >= 0 (0: every set), got {args.max_tensor_mb}")
    if args.results is not None and args.results.exists() and not args.results.is_dir():
        raise UserError(f"--results {args.results} is a file; give the folder of a results store")
    if args.notebooks is not None:
        if not args.notebooks.is_dir():
            raise UserError(f"--notebooks {args.notebooks} is not a folder")
        if not any(args.notebooks.glob(NOTEBOOK_GLOB)):
            raise UserError(f"--notebooks {args.notebooks} holds no notebooks ({NOTEBOOK_GLOB})")
    options = _options(args, args.results or Path(default_results_dir()))
    if args.executor == "slurm":
        executors.check_slurm(options)
    elif args.executor == "ray":
        executors.check_ray(options)
    else:  # given but unused would be silent: still checked
        executors.minutes(args.time)
        executors.site_settings(args.slurm_config)


def _options(args: argparse.Namespace, results: Path) -> executors.Options:
    return executors.Options(
        workers=args.workers, partition=args.partition, time=args.time, gpus_per_job=args.gpus_per_job,
        max_parallel=args.max_parallel, slurm_config=args.slurm_config,
        cluster=None if args.cluster == "slurm" else args.cluster,
        log_dir=args.log_dir or Path(results).resolve() / ".submitit", address=args.address,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`dcc sweep`: 0 when all went well, 1 when a job or a plan failed, 2 on bad input."""
    args = parser().parse_args(argv)
    try:
        check_options(args)
        params = dict(parse_param(p) for p in args.param)
        if args.data_root:
            params["data_root"] = str(Path(args.data_root).resolve())
        if args.device:
            params["device"] = args.device
        if args.cost_table:
            print(cost_table(args.notebooks, params, args.cluster_gpus))
            return 0
        rate, source = (args.throughput, "given with --throughput") if args.throughput else cost.throughput()
        sweep = plan(args.profile, args.only, params, args.results, args.notebooks, args.allow_stale,
                     args.max_tensor_mb)  # fmt: skip
        incomplete = any(p.error for p in sweep.plans)
        if args.plan or args.status:
            show = show_status if args.status else show_plan
            print(
                show(
                    sweep,
                    rate,
                    source,
                    args.cluster_gpus,
                    **({"jobs": not args.summary} if args.plan else {}),
                )
            )
            return 1 if incomplete or (args.status and any(j.state == "failed" for j in sweep.jobs())) else 0
        outcomes = run(sweep, args.executor, _options(args, sweep.results), args.max_jobs)
    except UserError as exc:
        print(f"dcc sweep: error: {exc}", file=sys.stderr)
        return 2
    failed = [o for o in outcomes if o["status"] == "failed"]
    print(f"[sweep] {len(outcomes) - len(failed)} done, {len(failed)} failed (details: dcc sweep --status)")
    return 1 if failed or incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
