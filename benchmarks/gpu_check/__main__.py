"""`python -m benchmarks.gpu_check ...`: the same as `python benchmarks/gpu_check.py ...`."""

import time

T0 = time.monotonic()  # the budget counts from here: importing torch is part of it

from .driver import exit_now, main  # noqa: E402

exit_now(main(started=T0))
