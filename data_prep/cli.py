"""``python -m data_prep`` (or ``dcc-prep``): build the fine-grained ImageNet32 sets.

Examples::

    python -m data_prep --src ~/Downloads/imagenet32 --out data/imagenet32            # six groups
    python -m data_prep --src DIR --out DIR --groups automobile,truck
    python -m data_prep --src DIR --out DIR --groups none --hypernym dog.n.01 bird.n.01
    python -m data_prep --explain                      # where the groups come from in WordNet
    python -m data_prep --explain --groups none --hypernym dog.n.01

Bad input (a missing, truncated or mis-shaped file, an unknown group or synset) prints one
line on stderr and exits with code 2, leaving the output folder as it was.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from data_prep.build import build
from data_prep.groups import GROUP_NAMES, Subset, paper_subset, parse_groups
from dcclib.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, like every other bad input)."""

    def error(self, message: str) -> NoReturn:
        """Raise the usage error as a UserError (one line, exit code 2)."""
        raise UserError(f"{message} (see --help)")


def make_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = _Parser(
        prog="python -m data_prep",
        description="Cut the fine-grained sets of 'Dataset Condensation with Contrastive "
        "Signals' (Automobile, Truck, Lizard, Fish, Terrier, Insect) out of an official "
        "ImageNet32 (or ImageNet64) download, in either released form (pickled batches or "
        ".npz). Writes <out>/imagenet{S}-{group}.npz and <out>/manifest.json.",
    )
    parser.add_argument(
        "--src",
        help="folder holding train_data_batch_1..10 and val_data (or their .npz), searched recursively",
    )
    parser.add_argument("--out", help="output folder (created if needed)")
    parser.add_argument(
        "--groups",
        default=None,
        help=f"comma-separated paper groups ({', '.join(GROUP_NAMES)}), 'all' "
        "or 'none' (default: all, or none when --hypernym is given)",
    )
    parser.add_argument(
        "--hypernym",
        nargs="+",
        action="extend",
        default=[],
        metavar="SYNSET",
        help="also build a set of all ImageNet-1k classes below a WordNet 3.0 "
        "synset, e.g. dog.n.01 (file imagenet32-dog.npz; hunting_dog.n.01 gives "
        "imagenet32-huntingdog.npz); needs WordNet",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print where the groups (and --hypernym sets) come from in WordNet "
        "3.0 and check every wnid, then exit (no --src/--out needed); exit "
        "code 1 if a check fails",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _paper_subsets(spec: str | None, hypernyms: list[str]) -> list[Subset]:
    if spec is None:
        spec = "none" if hypernyms else "all"
    if spec.strip().lower() == "none":
        return []
    return [paper_subset(g) for g in parse_groups(spec)]


def _explain(args: argparse.Namespace) -> int:
    from data_prep.wordnet import explain_group, explain_hypernym

    ok = True
    blocks: list[str] = []
    for subset in _paper_subsets(args.groups, args.hypernym):
        report = explain_group(subset.name)
        ok = ok and report.ok
        blocks.append(report.render())
    blocks += [explain_hypernym(spec) for spec in args.hypernym]
    print("\n\n".join(blocks))
    return 0 if ok else 1


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run; raises UserError for bad input."""
    args = make_parser().parse_args(argv)
    if args.explain:
        return _explain(args)
    subsets = _paper_subsets(args.groups, args.hypernym)
    if not args.src or not args.out:
        raise UserError("--src and --out are required (or --explain): see --help")
    if args.hypernym:
        from data_prep.wordnet import hypernym_subset

        subsets += [hypernym_subset(spec) for spec in args.hypernym]
    entries = build(args.src, args.out, subsets, progress=False if args.no_progress else None)
    for e in entries:
        print(
            f"{args.out}/{e['file']}: {e['num_classes']} classes, {e['num_train']} train + "
            f"{e['num_test']} test images of {e['image_size']}x{e['image_size']}, "
            f"sha256 {e['sha256'][:16]}..."
        )
    print(f"{args.out}/manifest.json updated")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit code 0 on success, 2 with one line on stderr for bad input."""
    try:
        return run(argv)
    except UserError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable --out, disk full, ...
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
