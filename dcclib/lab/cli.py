"""The `dcc` command: `dcc sweep` and `dcc sets` (the lab's), everything else the core's `dcclib.cli`.

A lab-level entry point, so that the core command never imports the lab (the layer rule):
``[project.scripts] dcc = "dcclib.lab.cli:main"``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run `dcc` on `argv` (default: sys.argv[1:]); `sweep` goes to dcclib.lab.sweep."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "sweep":
        from dcclib.lab import sweep

        return sweep.main(argv[1:])
    if argv and argv[0] == "sets":
        from dcclib.lab import catalog

        return catalog.main(argv[1:])
    from dcclib import cli

    code = cli.main(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("\nalso: dcc sweep --help   plan and run the notebooks' jobs (local, pool, Slurm, Ray)")
        print("      dcc sets             the synthetic sets in the results store, with their accuracies")
    return code


if __name__ == "__main__":
    sys.exit(main())
