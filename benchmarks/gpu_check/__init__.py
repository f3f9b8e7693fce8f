"""The one-command GPU check (`make gpu-check`): driver.py says what it does.

benchmarks/gpu_check.py is the script that runs it (T0 before importing torch); so does
`python -m benchmarks.gpu_check`.
"""

import sys
from pathlib import Path

# the benchmarks' shared modules (_common, literal, bench_condense, summarise) and the checkout
for _path in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
