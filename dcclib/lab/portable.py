"""Paths without the machine: what the reports hold instead of this machine's absolute paths.

Every record, table, index and executed notebook under reports/ is written through these, so
that none names the folder it was built in: a path inside the checkout (or next to it, such as
``../shared/data``) becomes relative to the repository root, any other ``.../<last two parts>``
(``portable_path``); free text and JSON-like values get the same treatment for every absolute
path in them (``portable_text``, ``portable``), and an executed notebook for what papermill
records and what its cells print (``portable_notebook``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dcclib import io
from dcclib.lab.store import repo_root

# an absolute POSIX path in free text: "/" or "~/" then at least two parts (not inside a word,
# a URL or a relative path)
_ABS_PATH = re.compile(r"(?<![\w.~/+=:-])~?/(?:[\w.+@-]+/)+[\w.+@-]*")


def portable_path(path: str | os.PathLike[str], root: Path | None = None) -> str:
    """`path` without the machine's absolute prefix: relative to the repository root when inside
    it or next to it (``../shared/data``), else ``.../<last two parts>``; a relative path as is."""
    text = os.fspath(path)
    if not os.path.isabs(text) and not text.startswith("~"):
        return text
    p = Path(text).expanduser()
    root = root if root is not None else repo_root()
    if root is not None:
        rel = os.path.relpath(p, root)
        if rel.split(os.sep).count("..") <= 1:  # inside the checkout or next to it (../shared/data)
            return rel
    return str(Path("...", *p.parts[-2:]))


def portable_text(text: str, root: Path | None = None) -> str:
    """`text` with every absolute path in it made portable (``portable_path``)."""
    return _ABS_PATH.sub(lambda m: portable_path(m.group(0).rstrip("/") or "/", root), text)


def portable(value: Any, root: Path | None = None) -> Any:
    """A JSON-like value with every string made portable (dict keys too)."""
    if isinstance(value, str):
        return portable_text(value, root)
    if isinstance(value, dict):
        return {portable(k, root): portable(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v, root) for v in value]
    return value


# ------------------------------------------------------------------------ executed notebooks
def relative_to_root(text: str, root: Path) -> str:
    """`text` with the repository root's absolute path made relative (``<root>/x`` -> ``x``,
    ``<root>`` alone -> ``.``); nothing else in it changes."""
    pattern = re.escape(str(root)) + r"(?![\w.-])(/)?"
    return re.sub(pattern, lambda m: "" if m.group(1) else ".", text)


def portable_notebook(nb: dict, root: Path, input_path: Path, output_path: Path) -> dict:
    """An executed notebook without the build machine's absolute paths: papermill's input and
    output paths relative to `root` (the output path is the final file, not papermill's partial
    one), absolute paths among its recorded parameters made portable (also in the injected
    cell), and every absolute path in a text output made portable. Returns `nb`, changed in place."""
    pm = nb.get("metadata", {}).get("papermill")
    swaps: dict[str, str] = {}
    if isinstance(pm, dict):
        pm["input_path"] = portable_path(input_path, root)
        pm["output_path"] = portable_path(output_path, root)
        for key in ("parameters", "default_parameters"):
            if isinstance(pm.get(key), dict):
                for value in pm[key].values():
                    if isinstance(value, str) and portable_text(value, root) != value:
                        swaps[value] = portable_text(value, root)
                pm[key] = portable(pm[key], root)

    def fix(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return portable_text(relative_to_root(text, root), root)  # e.g. a data folder next to the checkout

    def fix_lines(value: str | list) -> str | list:
        return fix(value) if isinstance(value, str) else [fix(v) if isinstance(v, str) else v for v in value]

    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = fix_lines(cell["source"])
        for out in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback"):
                if key in out:
                    out[key] = fix_lines(out[key])
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    out["data"][mime] = fix_lines(value)
    return nb


def write_portable_notebook(target: Path, source: Path, root: Path) -> None:
    """Rewrite the executed notebook `target` (run from `source`) in place, made portable."""
    nb = json.loads(target.read_text())
    portable_notebook(nb, root, source, target)
    io.write_text(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
