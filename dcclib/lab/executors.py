"""Where a sweep's jobs run: engines that exist already, no scheduler of our own.

Every executor gets a picklable function (``dcclib.lab.job_run.execute``) and a list of job specs
(plain dicts), runs ``fn(spec)`` for each, and returns the outcomes in order; a job that dies
(a killed worker, a Slurm failure) becomes a "failed" outcome with the reason. The sweep calls an
executor once per stage.

- ``local``: one after another, in this process (the default);
- ``pool``: ``concurrent.futures`` with spawned processes: one per visible GPU (each sees only its
  own: ``CUDA_VISIBLE_DEVICES``), or ``workers`` CPU processes;
- ``slurm``: submitit job arrays (``--partition``, ``--time``, ``--gpus-per-job``,
  ``--max-parallel``, and a YAML file of site settings: any ``AutoExecutor.update_parameters``
  keyword, e.g. ``slurm_account``, ``slurm_qos``, ``cpus_per_task``, ``mem_gb``, ``slurm_setup``).
  A job is a ``SweepTask``, which submitit treats as checkpointable: on preemption or time-out
  it requeues the same job, which resumes from its condensation checkpoint
  (``<store>/.runs/<key>``). ``cluster="local"`` runs the same arrays as local processes (tests);
- ``ray``: one Ray task per job, ``num_gpus=gpus_per_job`` where the cluster has GPUs, on an
  existing cluster (``address``, e.g. "auto") or a local one started here.

submitit, PyYAML and ray are imported only when their executor runs (``pip install
dcc-companion[slurm]`` / ``[ray]``).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcclib.errors import UserError
from dcclib.lab import slurm_state

EXECUTORS = ("local", "pool", "slurm", "ray")
Fn = Callable[[dict], dict]


@dataclass
class Options:
    """Settings of the executors (each uses its own)."""

    workers: int | None = None  # pool: processes (None: one per visible GPU, else 2); ray: local CPUs
    partition: str | None = None  # slurm
    time: str | None = None  # slurm: minutes, or [D-]HH:MM[:SS]
    gpus_per_job: int | None = None  # slurm, ray; None: 1 where the partition / cluster has GPUs, else 0
    max_parallel: int | None = None  # slurm: array tasks running at once
    slurm_config: Path | None = None  # slurm: YAML of site settings
    cluster: str | None = None  # slurm: None (Slurm, as submitit detects it) | "local" | "debug"
    log_dir: Path = Path("results/.submitit")  # slurm: submitit's logs and pickles
    address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001"); None: start one
    poll_s: float = 30  # slurm without sacct: seconds between two looks at the queue


def run(name: str, fn: Fn, specs: list[dict], options: Options | None = None) -> list[dict]:
    """Run `fn` on every spec with executor `name`; the outcomes, in order."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor '{name}'; choose one of: {', '.join(EXECUTORS)}")
    if not specs:
        return []
    return {"local": local, "pool": pool, "slurm": slurm, "ray": ray}[name](fn, specs, options or Options())


def failed(spec: dict, error: str) -> dict:
    """The outcome of a job that did not report one itself (its worker died, the engine failed)."""
    return {"key": spec["key"], "status": "failed", "error": error, "label": spec.get("label")}


def local(fn: Fn, specs: list[dict], options: Options) -> list[dict]:
    """In this process, one after another."""
    return [fn(spec) for spec in specs]


# ------------------------------------------------------------------------------------------ pool
def visible_gpus() -> list[str]:
    """The GPUs this process may use: $CUDA_VISIBLE_DEVICES, else every device torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _take_gpu(gpus: Any) -> None:
    """Pool initializer: this worker sees one GPU (one taken from the queue), or none on a CPU pool."""
    gpu = gpus.get() if gpus is not None else None
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def pool(fn: Fn, specs: list[dict], options: Options) -> list[dict]:
    """Spawned worker processes: one per visible GPU, or `workers` of them."""
    gpus = visible_gpus()
    n = options.workers or len(gpus) or 2
    context = multiprocessing.get_context("spawn")  # fresh interpreters: CUDA is never forked
    queue = None
    if gpus:
        queue = context.Manager().Queue()
        for i in range(n):
            queue.put(gpus[i % len(gpus)])
    with ProcessPoolExecutor(n, mp_context=context, initializer=_take_gpu, initargs=(queue,)) as ex:
        futures = [ex.submit(fn, spec) for spec in specs]
        out = []
        for spec, future in zip(specs, futures):
            try:
                out.append(future.result())
            except Exception as exc:  # the worker died (killed, out of memory): the pool says so
                out.append(failed(spec, f"{type(exc).__name__}: {exc}"))
        return out


# ----------------------------------------------------------------------------------------- slurm
class SweepTask:
    """A submitit job: runs one spec; ``checkpoint`` makes submitit requeue the same job on
    preemption or time-out (the protocol of ``submitit.helpers.Checkpointable``; the job resumes
    from its condensation checkpoint, which the Lab keeps under ``<store>/.runs/<key>``)."""

    def __init__(self, fn: Fn) -> None:
        self.fn = fn

    def __call__(self, spec: dict) -> dict:
        return self.fn(spec)

    def checkpoint(self, spec: dict) -> Any:
        """The same call again (submitit requeues it)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, spec)


_TIME_FORM = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (Slurm's forms)"


def minutes(time: str | None) -> int | None:
    """'90' -> 90, '12:00:00' -> 720, '1-00:00' -> 1440 (Slurm's forms); None stays None.
    Anything else, or no time at all, is a UserError."""
    if time is None:
        return None
    days, dash, clock = time.strip().rpartition("-")
    parts = clock.split(":")
    numbers = [days] * bool(dash) + parts
    if len(parts) > 3 or not all(n.isascii() and n.isdigit() for n in numbers):
        raise UserError(f"--time {time!r} is not a Slurm time limit: give {_TIME_FORM}")
    values = [int(n) for n in parts]
    if len(values) == 1:
        total = int(days or 0) * 1440 + values[0] * (60 if dash else 1)
    else:
        h, m, s = (values + [0])[:3] if dash or len(values) == 3 else [0, *values]
        total = int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)
    if total <= 0:
        raise UserError(f"--time {time!r} is no time at all: give a positive limit ({_TIME_FORM})")
    return total


def site_settings(path: Path | None) -> dict:
    """The YAML file of site settings (submitit keywords), or {}; a UserError (one line) when it
    is missing, not YAML, not 'keyword: value' lines, or (with submitit installed) names a
    keyword submitit does not know."""
    if path is None:
        return {}
    import yaml

    from dcclib.io import read_regular_bytes

    try:
        text = read_regular_bytes(path, 1 << 20).decode()
    except FileNotFoundError:
        raise UserError(f"--slurm-config {path}: file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"--slurm-config {path} is not text (a YAML file of submitit keywords)") from None
    try:
        settings = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"--slurm-config {path} is not valid YAML{at} ('keyword: value' lines)") from None
    settings = settings or {}
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise UserError(f"{path}: a Slurm site file holds 'keyword: value' lines (submitit's parameters)")
    _check_keywords(settings, path)
    return settings


def _check_keywords(settings: dict, path: Path) -> None:
    """Every keyword is one submitit's AutoExecutor.update_parameters accepts, generic ones with
    their type (nothing to check without submitit: the slurm executor then refuses itself)."""
    try:
        import submitit
        from submitit.core import plugins
    except ImportError:
        return
    generics = submitit.AutoExecutor._typed_parameters()
    known = plugins.get_executors()
    for key, value in settings.items():
        if key in generics:
            wanted = (int, float) if generics[key] is float else generics[key]
            if not isinstance(value, wanted) or (isinstance(value, bool) and generics[key] is not bool):
                raise UserError(f"{path}: {key} must be a {generics[key].__name__}, not {value!r}")
            continue
        prefix, _, arg = key.partition("_")
        if prefix in known and (arg in known[prefix]._valid_parameters() or arg in generics):
            continue
        raise UserError(
            f"{path}: unknown submitit keyword '{key}'; use a generic one ({', '.join(sorted(generics))}) "
            "or one prefixed by its cluster (slurm_account, slurm_qos, slurm_setup, ...)"
        )


def check_slurm(options: Options) -> None:
    """What the slurm executor needs, checked before any planning: submitit, the time limit, the
    site file (a UserError, nothing created)."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UserError("the slurm executor needs submitit: pip install 'dcc-companion[slurm]'") from None
    minutes(options.time)
    site_settings(options.slurm_config)
    if options.log_dir.exists() and not options.log_dir.is_dir():
        raise UserError(f"--log-dir {options.log_dir} is a file; give a folder for submitit's logs")
    slurm_gpus(options)


def slurm_gpus(options: Options) -> int | None:
    """The GPUs per array task: --gpus-per-job, checked against what the partition's nodes have
    (sinfo), else 1 on a partition with GPUs and 0 on one without; None outside Slurm (submitit's
    local arrays: not passed). More than a node has is a UserError (sbatch would refuse it)."""
    if options.cluster is not None:
        return options.gpus_per_job
    has = slurm_state.partition_gpus(options.partition)
    where = f"partition {options.partition}" if options.partition else "the default partition"
    if has is None:
        return options.gpus_per_job
    if options.gpus_per_job is None:
        return min(has, 1)
    if options.gpus_per_job > has:
        have = f"only {has} GPUs per node" if has else "no GPUs (sinfo -o %G: none)"
        raise UserError(
            f"--gpus-per-job {options.gpus_per_job}: {where} has {have}; "
            f"give --gpus-per-job {has}" + (" or a partition with GPUs" if not has else "")
        )
    return options.gpus_per_job


def slurm(fn: Fn, specs: list[dict], options: Options) -> list[dict]:
    """A submitit job array: one array task per job; waits for them and returns their outcomes."""
    try:
        import submitit
    except ImportError:
        raise UserError("the slurm executor needs submitit: pip install 'dcc-companion[slurm]'") from None
    executor = submitit.AutoExecutor(folder=str(options.log_dir), cluster=options.cluster)
    params = {
        "name": "dcc-sweep",
        "timeout_min": minutes(options.time),
        "gpus_per_node": slurm_gpus(options),
        "slurm_partition": options.partition,
        "slurm_array_parallelism": options.max_parallel,
        **site_settings(options.slurm_config),
    }
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    watcher = None
    if executor.cluster == "slurm":
        problem = slurm_state.sacct_problem()
        if problem is not None:  # submitit asks sacct: a task killed from outside would stay UNKNOWN
            watcher = slurm_state.queue_watcher(options.poll_s)
            print(f"[sweep] sacct does not work here ({problem}): job states come from squeue "
                  "(Slurm accounting, slurmdbd, makes them exact)", flush=True)  # fmt: skip
    try:
        jobs = executor.map_array(SweepTask(fn), specs)
    except Exception as exc:  # sbatch refused (a bad site setting, an unknown account or partition)
        said = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise UserError(f"Slurm refused the job array: {said[-1] if said else type(exc).__name__}") from None
    print(f"[sweep] submitted {len(jobs)} jobs ({jobs[0].job_id.split('_')[0]}); logs in {options.log_dir}")
    for job in jobs:
        if watcher is not None:
            job.watcher = watcher  # this job's states from squeue (the class's watcher asks sacct)
            watcher.register_job(job.job_id)
    out = []
    for spec, job in zip(specs, jobs):
        try:
            out.append(job.result())
        except Exception as exc:  # the job failed outside the spec (killed, cancelled, not requeued)
            out.append(failed(spec, f"{type(exc).__name__}: {_gone(job, exc)}"))
    return out


def _gone(job: Any, exc: Exception) -> str:
    """One line for a job that ended without an outcome."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if type(exc).__name__ == "UncompletedJobError":
        state = job.watcher.get_state(job.job_id, mode="cache")
        return (f"Slurm job {job.job_id} ended without a result (state {state}: cancelled, killed, "
                f"out of memory or its node lost); its log: {job.paths.stderr}")  # fmt: skip
    return lines[-1] if lines else "no message"


# ------------------------------------------------------------------------------------------- ray
def ray_address(options: Options) -> str | None:
    """The cluster the ray executor attaches to: --address, else $RAY_ADDRESS (as `ray` itself
    reads it), else None (a local instance, started and stopped here)."""
    return options.address or os.environ.get("RAY_ADDRESS") or None


def check_ray(options: Options) -> None:
    """--workers sizes a local Ray instance only; with a cluster to attach to it is a UserError
    (Ray itself would refuse num_cpus with a ValueError)."""
    address = ray_address(options)
    if options.workers and address:
        via = "--address" if options.address else "RAY_ADDRESS"
        raise UserError(
            f"--workers {options.workers} sizes a Ray instance started here; the cluster at {address} "
            f"({via}) has its own CPUs: drop --workers (or unset {via} to start one here)"
        )


def ray(fn: Fn, specs: list[dict], options: Options) -> list[dict]:
    """One Ray task per job, on the cluster at `address` or a local one (shut down afterwards)."""
    try:
        import ray as ray_
    except ImportError:
        raise UserError("the ray executor needs ray: pip install 'dcc-companion[ray]'") from None
    check_ray(options)
    started = not ray_.is_initialized()
    if started:
        address = ray_address(options)
        kwargs = {"num_cpus": options.workers} if address is None and options.workers else {}
        try:
            ray_.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:  # no cluster there, a bad address
            said = [line for line in str(exc).strip().splitlines() if line.strip()]
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UserError(f"cannot reach {where}: {said[0] if said else type(exc).__name__}") from None
    try:
        has = ray_.cluster_resources().get("GPU", 0)
        gpus = (1 if options.gpus_per_job is None else options.gpus_per_job) if has > 0 else 0
        if gpus > has > 0:
            raise UserError(f"--gpus-per-job {gpus}: the Ray cluster has {has:g} GPUs in all")
        task = ray_.remote(num_gpus=gpus, max_retries=0)(fn)
        refs = [task.remote(spec) for spec in specs]
        out = []
        for spec, ref in zip(specs, refs):
            try:
                out.append(ray_.get(ref))
            except Exception as exc:  # the worker died (the task's own errors are in its outcome)
                out.append(
                    failed(spec, f"{type(exc).__name__}: {traceback.format_exception_only(exc)[-1].strip()}")
                )
        return out
    finally:
        if started:
            ray_.shutdown()
