"""nbval runs the notebooks (at profile smoke) against a fresh temporary results store and
output folder: the tests recompute every number and never write into results/ or reports/.
One store serves the whole session, so later notebooks reuse earlier ones' sets, as in
`make reports`."""

import os
import shutil
import tempfile

_TMP: list[str] = []


def pytest_configure(config):
    if getattr(config.option, "nbval", False):
        tmp = tempfile.mkdtemp(prefix="dcc-nbval-")
        _TMP.append(tmp)
        os.environ["DCC_RESULTS_DIR"] = os.path.join(tmp, "results")
        os.environ["DCC_REPORTS_DIR"] = os.path.join(tmp, "reports")


def pytest_unconfigure(config):
    for tmp in _TMP:
        shutil.rmtree(tmp, ignore_errors=True)
