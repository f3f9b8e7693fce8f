"""One-command GPU check (issue 12): `make gpu-check`, at most 8 minutes on one H100/H200.

Written so that its first run on a GPU gives every figure the project needs, with no second try:
every section runs in try/except (an error is recorded with its traceback and the next section
runs), a global time budget skips what no longer fits (and records that it did), a watchdog ends
the process at a hard limit, and every result is written as one JSON line the moment it exists.

Sections, in order of priority (planned seconds at the paper's shapes in brackets; a section
gets at most that, and never more than what is left of the budget):
  env                        device, versions, settings [instant]
  data                       CIFAR-10 from --data-root (a folder holding cifar10-jpeg/), else
                             Gaussian noise of its shape; CIFAR-100 likewise [60]
  correctness_matching       CUDA against CPU (and float64): the four methods' loss and image
                             gradient, both class-wise modes, DSA draw fixed [12]
  correctness_outer          outer_iteration on CUDA against CPU (DC, DCC: device-independent
                             randomness), and fast == literal on CUDA (all four methods) [15]
  correctness_evaluate       batched evaluation == one network at a time, no augmentation [10]
  condense_main              CIFAR-10 ipc 10, the paper's K_i/T, DC/DSA/DCC/DSAC: seconds per
                             outer iteration, fast (loop, vmap) against literal, TFLOP/s [75]
  evaluate                   20 ConvNets on a random ipc-10 (then ipc-50) set: one at a time,
                             literal, batched 5/10/20 (grouped) and 20 (vmap); two E values give
                             the per-pass time and the protocol's E extrapolated [60]
  condense_ipc1              CIFAR-10 ipc 1 [25]
  memory_cifar100_ipc50      CIFAR-100 ipc 50, real_chunk auto: peak memory of one image update
                             (4 methods), unchunked DCC, one outer iteration at the paper's K_i [45]
  condense_ipc50             CIFAR-10 ipc 50 [60]
  condense_cifar100_ipc10    CIFAR-100 ipc 10 [70]
  precision                  opt-in tf32/bf16 speed (condensation, evaluation) [15]
  decisions                  the CUDA defaults marked provisional (classwise_mode, the stacked-
                             evaluation budget behind parallel_nets), from what was measured
  targets                    the issues' targets (>= 10x, 30-minute DSAC ipc 10, CIFAR-100 ipc 50
                             within 80 GB) and throughputs for the cost model

Every condensation timing starts with two short probes per mode (K_i = 1, and K_i = 2 with the
real T): they warm the kernels up, give the seconds per image update and per T training epochs,
and so an estimate of a full outer iteration, which decides whether it fits the time left.
FLOPs come the same way (torch.utils.flop_counter on the probes, combined with K_i and T).
Literal and fast paths both run in strict fp32 (TF32 off for the whole process; the opt-in
precisions are timed apart).

Output (a full run on CUDA): reports/perf_gpu/gpu_check-<UTC time>.jsonl; the decisions in
dcclib/measured_defaults.json (read by dcclib at import, see dcclib/measured.py); the GPU
section of reports/performance.md. Anything else writes only where --out/--defaults-file/
--performance-md say.

  make gpu-check                                   # = python benchmarks/gpu_check.py --data-root data
  python benchmarks/gpu_check.py --tiny --device cpu --out /tmp/gpu-check   # seconds, the test suite's

The package, one module per section (each readable alone):
  plan.py         what runs: the paper's shapes or tiny ones, the shared constants
  record.py       the JSON lines (Recorder) and the run's context (Ctx)
  outer.py        one outer iteration, fast or literal (used by several sections)
  data.py         section data
  correctness.py  sections correctness_matching, correctness_outer, correctness_evaluate
  condense.py     sections condense_* (probes, timings, FLOPs)
  evaluation.py   section evaluate
  memory.py       section memory_cifar100_ipc50
  precision.py    section precision
  decisions.py    section decisions (and the defaults file)
  targets.py      section targets
  env.py          section env
  sections.py     the sections in order, and running them within the budget
  driver.py       the command: options, outputs, strict fp32, watchdog, the report
benchmarks/gpu_check.py is the script that runs it (T0 before importing torch); so does
`python -m benchmarks.gpu_check`.
"""

import sys
from pathlib import Path

# the benchmarks' shared modules (_common, literal, bench_condense, summarise) and the checkout
for _path in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
