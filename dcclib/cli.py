"""The `dcc` command: condense, evaluate, info.

    dcc condense [--dataset NAME|FOLDER] [--method dcc] [--ipc 10] [--out runs/NAME] ...
    dcc evaluate SET.safetensors [--models convnet,lenet] [--num-nets 20]
    dcc evaluate --random --dataset cifar10 --ipc 10      (the Random baseline)
    dcc info SET.safetensors

Bad input prints one line to stderr and exits with code 2; nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from dcclib.errors import UserError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with exit code 2 (its default code too)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"dcc: error: {message}\n")


def _chunk(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _int_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dcc",
        description="Dataset condensation with contrastive signals (DC, DSA, DCC, DSAC).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("condense", help="learn a synthetic set (Algorithm 1)")
    c.add_argument(
        "--dataset",
        default=None,
        help="dataset name or image folder (default: embedded-mnist, offline)",
    )
    c.add_argument(
        "--data-root", default=None, help="where datasets live (default: $DCC_DATA_ROOT or ./data)"
    )
    c.add_argument("--method", default="dcc", help="dc | dsa | dcc | dsac")
    c.add_argument("--ipc", type=int, default=10, help="images per class")
    c.add_argument("--outer-iterations", type=int, default=1000, help="K_o: fresh networks")
    c.add_argument("--inner-iterations", type=int, default=None, help="K_i (default: from ipc)")
    c.add_argument("--net-epochs", type=int, default=None, help="T (default: from ipc)")
    c.add_argument("--warmup", default="bilevel", help="bilevel | none | inner")
    c.add_argument("--gamma-outer", type=int, default=250)
    c.add_argument("--gamma-inner", type=int, default=10)
    c.add_argument("--lr-images", type=float, default=0.1)
    c.add_argument("--lr-net", type=float, default=0.01)
    c.add_argument("--batch-real", type=int, default=256, help="real images per class per update")
    c.add_argument("--distance", default="layerwise", help="layerwise | mse | cos")
    c.add_argument("--init", default="real", help="real | noise")
    c.add_argument("--dsa-strategy", default=None)
    c.add_argument("--model", default="convnet", help="network used for matching")
    c.add_argument(
        "--classwise-mode", default="auto", help="loop | vmap | auto (DC's per-class gradients, by device)"
    )
    c.add_argument(
        "--real-chunk", type=_chunk, default="auto", help="auto | N: split the real batch (memory)"
    )
    c.add_argument("--chunk-budget-mb", type=int, default=16384)
    c.add_argument("--precision", default="fp32", help="fp32 | tf32")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="auto")
    c.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<method>-ipc<N>-s<seed>)")
    c.add_argument("--checkpoint-every", type=int, default=10)
    c.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    c.add_argument("--eval-nets", type=int, default=0, help="evaluate the result with this many networks")
    c.add_argument("--eval-models", type=_int_list, default=("convnet",))
    c.add_argument("--eval-epochs", type=int, default=None)
    c.add_argument("--quiet", action="store_true")

    e = sub.add_parser("evaluate", help="train fresh networks on a saved set and test them")
    e.add_argument("set", nargs="?", help="a .safetensors set written by dcc condense")
    e.add_argument("--random", action="store_true", help="evaluate the Random baseline instead")
    e.add_argument("--dataset", default=None, help="dataset (default: the set's own; required with --random)")
    e.add_argument("--ipc", type=int, default=None, help="with --random: images per class")
    e.add_argument("--data-root", default=None)
    e.add_argument("--models", type=_int_list, default=("convnet",), help="comma-separated model names")
    e.add_argument("--num-nets", type=int, default=20)
    e.add_argument("--epochs", type=int, default=None, help="E (default: the protocol's)")
    e.add_argument("--augment", default=None, help="none | dsa | dc | dc_noise (default: the protocol's)")
    e.add_argument("--method", default=None, help="protocol to use (default: the set's method)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument(
        "--parallel-nets", type=int, default=None, help="networks trained together (default: by device)"
    )
    e.add_argument(
        "--precision", default="fp32", help="fp32 | tf32 | bf16 (opt-in, see reports/performance.md)"
    )
    e.add_argument("--device", default="auto")
    e.add_argument("--out", default=None, help="write the results as JSON here")
    e.add_argument("--quiet", action="store_true")

    i = sub.add_parser("info", help="show what a saved set holds")
    i.add_argument("set")
    return parser


def _condense(args: argparse.Namespace) -> dict:
    from dcclib.condense import CondenseConfig, condense
    from dcclib.data import load_dataset
    from dcclib.evaluate import EvalConfig, evaluate_set
    from dcclib.io import load_synthetic, save_synthetic
    from dcclib.runtime import resolve_device

    names = {f.name for f in fields(CondenseConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = CondenseConfig(**values).resolved()  # validate before loading any data
    if args.eval_nets < 0:
        raise UserError(f"eval-nets must be >= 0, got {args.eval_nets}")
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_root, device=device)
    cfg.dataset = data.name
    out = Path(args.out or f"runs/{data.name}-{cfg.method}-ipc{cfg.ipc}-s{cfg.seed}")
    result = condense(cfg, data, run_dir=out, resume=args.resume, progress=not args.quiet)
    summary = {"run_dir": str(out), "synthetic": str(out / "synthetic.safetensors")}
    if args.eval_nets:
        ecfg = EvalConfig(
            models=args.eval_models, num_nets=args.eval_nets, epochs=args.eval_epochs, seed=cfg.seed
        )
        evals = evaluate_set(result.images, result.labels, data, cfg.method, ecfg, progress=not args.quiet)
        summary["evaluation"] = [r.as_dict() for r in evals]
        # the saved set carries its accuracies: rewrite it whole with them in the metadata
        images, labels, meta = load_synthetic(out / "synthetic.safetensors")
        meta["accuracies"] = summary["evaluation"]
        save_synthetic(out / "synthetic.safetensors", images, labels, meta)
    return summary


def _evaluate(args: argparse.Namespace) -> dict:
    from dcclib.data import load_dataset
    from dcclib.evaluate import EvalConfig, evaluate_set, random_subset
    from dcclib.io import library_versions, load_synthetic, write_json
    from dcclib.runtime import resolve_device

    if args.num_nets <= 0:
        raise UserError(f"num-nets must be positive, got {args.num_nets}")
    device = resolve_device(args.device)
    if args.random:
        if args.set is not None:
            raise UserError("give either a saved set or --random, not both")
        if args.ipc is None:
            raise UserError("--random needs --ipc")
        data = load_dataset(args.dataset, args.data_root, device=device)
        images, labels = random_subset(data, args.ipc, args.seed)
        method, source = "random", f"random ipc {args.ipc}"
    else:
        if args.set is None:
            raise UserError("give a saved set (.safetensors) or --random")
        images, labels, meta = load_synthetic(args.set)
        data = load_dataset(args.dataset or meta["dataset"], args.data_root, device=device)
        if list(meta["class_names"]) != list(data.class_names):
            raise UserError(f"{args.set} was made for other classes than those of {data.name}")
        method, source = meta.get("method", "dc"), str(args.set)
    cfg = EvalConfig(
        models=args.models,
        num_nets=args.num_nets,
        epochs=args.epochs,
        augment=args.augment,
        seed=args.seed,
        parallel_nets=args.parallel_nets,
        precision=args.precision,
    )
    results = evaluate_set(images, labels, data, args.method or method, cfg, progress=not args.quiet)
    summary = {
        "set": source,
        "dataset": data.name,
        "method": args.method or method,
        "eval_config": asdict(cfg),
        "results": [r.as_dict() for r in results],
        "versions": library_versions(),
    }
    if args.out:
        write_json(args.out, summary)
    return summary


def _info(args: argparse.Namespace) -> dict:
    from dcclib.io import load_synthetic

    images, labels, meta = load_synthetic(args.set)
    return {"file": args.set, "images": list(images.shape), "labels": int(labels.numel()), **meta}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    handler = {"condense": _condense, "evaluate": _evaluate, "info": _info}[args.command]
    try:
        summary = handler(args)
    except UserError as exc:
        print(f"dcc: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "dcc: interrupted (the last checkpoint is kept; continue with --resume)",
            file=sys.stderr,
        )
        return 130
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
