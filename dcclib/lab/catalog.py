"""`dcc sets`: the synthetic sets in a results store, by dataset, method, ipc, profile and accuracy.

The store names a set by the hash of its full config (``results/<profile>/<dataset>/
condense-<key>.json`` with its tensors beside it); this lists them in words, each with the
accuracies its evaluation records hold and the file to pass to ``dcc evaluate`` or ``dcc info``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from dcclib import io
from dcclib.errors import UserError
from dcclib.fingerprint import ALGORITHM_VERSION
from dcclib.lab.portable import portable_path
from dcclib.lab.store import canonical, default_results_dir

COLUMNS = ("profile", "dataset", "method", "ipc", "K_o", "run", "accuracy", "algorithm", "set file")


def _records(root: Path, kind: str) -> list[dict]:
    out = []
    for path in sorted(root.glob(f"*/*/{kind}-*.json")):
        try:
            record = io.read_json(path)
        except UserError:
            continue  # unreadable: not listed
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            out.append({**record, "_path": path})
    return out


def _accuracy(evaluations: list[dict]) -> str:
    parts = []
    for e in evaluations:
        accs = e.get("result", {}).get("accuracies") or []
        if accs:
            model = e["config"].get("eval", {}).get("models", ["?"])[0]
            std = statistics.pstdev(accs) if len(accs) > 1 else 0.0
            parts.append(f"{model} {100 * statistics.fmean(accs):.1f} +- {100 * std:.1f} (n={len(accs)})")
    return "; ".join(parts) or "not evaluated"


def list_sets(root: Path, profile: str | None = None, dataset: str | None = None) -> list[dict]:
    """One row per stored set (condensed or Random), with the accuracies of its evaluations."""
    if not root.is_dir():
        raise UserError(f"no results store at {root}: give --results DIR (a folder with <profile>/ inside)")
    evaluations: dict[str, list[dict]] = {}
    for e in _records(root, "evaluate"):
        evaluations.setdefault(repr(canonical(e["config"].get("set"))), []).append(e)
    rows = []
    for rec in _records(root, "condense") + _records(root, "select"):
        c = rec["config"]
        if (profile and c.get("profile") != profile) or (
            dataset and c.get("dataset", {}).get("name") != dataset
        ):
            continue
        cfg = c.get("config") or {}
        tensors = sorted(rec["_path"].parent.glob(f"{rec['_path'].stem}-*.safetensors"))
        rows.append(
            {
                "profile": c.get("profile"),
                "dataset": c.get("dataset", {}).get("name"),
                "method": c.get("method"),
                "ipc": c.get("ipc"),
                "K_o": c.get("snapshot") or cfg.get("outer_iterations", "-"),
                "run": c.get("run"),
                "accuracy": _accuracy(evaluations.get(repr(canonical(c)), [])),
                "algorithm": c.get("algorithm")
                + ("" if c.get("algorithm") == ALGORITHM_VERSION else " (older)"),
                "set file": portable_path(tensors[0].resolve()) if tensors else "(not stored)",
            }
        )

    def order(r: dict) -> tuple:
        numbers = tuple(r[k] if isinstance(r[k], int) else -1 for k in ("ipc", "K_o"))
        return (str(r["profile"]), str(r["dataset"]), str(r["method"]), *numbers, str(r["algorithm"]))

    return sorted(rows, key=order)


def main(argv: list[str] | None = None) -> int:
    """`dcc sets`: print the store's sets as a table; 2 with one line on bad input."""
    ap = argparse.ArgumentParser(prog="dcc sets", description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, help="results store (default results/ or $DCC_RESULTS_DIR)")
    ap.add_argument("--profile", help="only this profile's sets")
    ap.add_argument("--dataset", help="only this dataset's sets")
    args = ap.parse_args(argv)
    try:
        rows = list_sets(args.results or default_results_dir(), args.profile, args.dataset)
    except UserError as exc:
        print(f"dcc: error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("no sets stored")
        return 0
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in COLUMNS}
    print("  ".join(k.ljust(widths[k]) for k in COLUMNS))
    for r in rows:
        print("  ".join(str(r[k]).ljust(widths[k]) for k in COLUMNS))
    return 0
