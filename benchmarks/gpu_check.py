"""`python benchmarks/gpu_check.py ...`: the one-command GPU check (`make gpu-check`).

The check itself is the package benchmarks/gpu_check/ (its __init__.py says what each module
does); this script only takes the start time before anything imports torch, since the time budget
includes importing it, and runs the package's driver. Run as a script, the folder of this file is
first on sys.path, so `gpu_check` below is the package (a package wins over a module of the same
name).

  make gpu-check                                   # = python benchmarks/gpu_check.py --data-root data
  python benchmarks/gpu_check.py --tiny --device cpu --out /tmp/gpu-check   # seconds, the test suite's
  python benchmarks/gpu_check.py --help
"""

import time

T0 = time.monotonic()  # the budget counts from here

from gpu_check.driver import exit_now, main  # noqa: E402

if __name__ == "__main__":
    exit_now(main(started=T0))
