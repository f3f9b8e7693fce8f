"""The algorithm's fingerprint: a change of numerics-relevant code needs a new ALGORITHM_VERSION."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcclib import fingerprint
from dcclib.fingerprint import ALGORITHM_VERSION, SOURCE_HASH, numeric_files, source_hash


def test_the_numeric_source_is_pinned_to_the_algorithm_version():
    now = source_hash()
    assert now == SOURCE_HASH, (
        "the numerics-relevant core source changed (dcclib.fingerprint.NUMERIC_SOURCES): if the change "
        "can alter any number, bump ALGORITHM_VERSION and update SOURCE_HASH in dcclib/fingerprint.py "
        f'(SOURCE_HASH = "{now}"; `python -m dcclib.fingerprint` prints it); the store keys carry '
        f"the version ({ALGORITHM_VERSION}), so old results are not served as new ones"
    )


def test_the_pinned_files_are_the_numeric_modules():
    names = {p.relative_to(fingerprint.PACKAGE).as_posix() for p in numeric_files()}
    assert {"condense.py", "matching.py", "evaluate.py", "batched.py", "data/dataset.py"} <= names
    assert not {"cli.py", "io.py", "runs.py", "fingerprint.py"} & names


def _package(tmp_path: Path, condense: str) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "data").mkdir(parents=True, exist_ok=True)
    (pkg / "condense.py").write_text(condense)
    (pkg / "data" / "dataset.py").write_text("X = 1\n")
    (pkg / "cli.py").write_text("print('not numerics')\n")
    return pkg


BASE = '''"""Doc."""

def step(x, lr=0.1):
    """Docstring."""
    return x - lr * x  # a comment
'''


@pytest.mark.parametrize(
    "same",
    [
        BASE.replace("# a comment", "# another comment"),
        BASE.replace('"""Docstring."""', '"""Another docstring,\n    on two lines."""'),
        BASE.replace("x - lr * x", "(x\n            - lr * x)"),
        BASE.replace('"""Doc."""\n', ""),
    ],
)
def test_comments_docstrings_and_layout_do_not_count(tmp_path, same):
    first = source_hash(_package(tmp_path / "a", BASE))
    assert source_hash(_package(tmp_path / "b", same)) == first


@pytest.mark.parametrize(
    "changed",
    [BASE.replace("lr=0.1", "lr=0.2"), BASE.replace("x - lr * x", "x + lr * x"), BASE + "\nY = 2\n"],
)
def test_a_code_change_changes_the_hash(tmp_path, changed):
    first = source_hash(_package(tmp_path / "a", BASE))
    assert source_hash(_package(tmp_path / "b", changed)) != first


def test_files_outside_the_numeric_modules_do_not_count(tmp_path):
    pkg = _package(tmp_path, BASE)
    first = source_hash(pkg)
    (pkg / "cli.py").write_text("print('changed')\n")
    assert source_hash(pkg) == first
    (pkg / "data" / "dataset.py").write_text("X = 2\n")
    assert source_hash(pkg) != first
