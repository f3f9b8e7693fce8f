"""The algorithm's version: part of every results-store key, so a change of numerics never serves old numbers.

``ALGORITHM_VERSION`` names the numbers this code produces. The results store (``dcclib.lab``)
puts it into every key, so results computed by an older algorithm are never found silently
(``--allow-stale`` reuses them deliberately, and says so in every table).

``SOURCE_HASH`` pins the source of the modules that change numbers (``NUMERIC_SOURCES``),
normalised: the hash is taken over the syntax tree without docstrings, so comments, docstrings
and formatting do not count. ``tests/test_fingerprint.py`` fails when that source changes and
``SOURCE_HASH`` does not. Then: if the change can alter any number, bump ``ALGORITHM_VERSION``;
either way set ``SOURCE_HASH`` to what this prints::

    python -m dcclib.fingerprint          # the hash of the source now (and whether it matches)
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

ALGORITHM_VERSION = "2026.12-1"
SOURCE_HASH = "f30615828ac98884d966087fd03812ff6792a5f8a0fcd813fa060e188bfdd9da"

# Relative to the dcclib package: the modules whose code decides a condensed set or an accuracy.
NUMERIC_SOURCES = (
    "condense.py",
    "condense_config.py",
    "matching.py",
    "augment.py",
    "models.py",
    "evaluate.py",
    "protocol.py",
    "batched.py",
    "runtime.py",
    "methods.py",
    "data/*.py",
)
PACKAGE = Path(__file__).resolve().parent


def numeric_files(package: Path = PACKAGE) -> list[Path]:
    """The files of NUMERIC_SOURCES under `package`, sorted by their relative path."""
    files = {p for pattern in NUMERIC_SOURCES for p in package.glob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: p.relative_to(package).as_posix())


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _canonical(node: object) -> str:
    """A text form of a syntax tree that does not depend on the Python version's defaults:
    node type and fields, without positions, empty lists or None (fields new versions add)."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or value == []:
                continue
            fields.append(f"{name}={_canonical(value)}")
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    return f"{type(node).__name__}:{node!r}"


def normalised_source(path: Path) -> str:
    """The code of one file as a canonical syntax tree (comments, docstrings, layout dropped)."""
    return _canonical(_strip_docstrings(ast.parse(path.read_text(), str(path))))


def source_hash(package: Path = PACKAGE) -> str:
    """sha256 over the normalised source of every numerics-relevant file (names included)."""
    digest = hashlib.sha256()
    for path in numeric_files(package):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(normalised_source(path).encode() + b"\0")
    return digest.hexdigest()


def main() -> int:
    """Print the source hash now; exit 1 when it differs from SOURCE_HASH."""
    now = source_hash()
    print(f"ALGORITHM_VERSION = {ALGORITHM_VERSION!r}")
    print(f'SOURCE_HASH = "{now}"')
    if now != SOURCE_HASH:
        print(
            f"# differs from the stored {SOURCE_HASH}: if the numbers can change, bump ALGORITHM_VERSION;"
            " then paste the line above into dcclib/fingerprint.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
