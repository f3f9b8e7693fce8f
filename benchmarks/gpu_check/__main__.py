"""`python -m benchmarks.gpu_check ...`: the same as `python benchmarks/gpu_check.py ...`."""

import sys
import time

T0 = time.monotonic()  # the budget counts from here: importing torch is part of it

from .driver import main  # noqa: E402

sys.exit(main(started=T0))
