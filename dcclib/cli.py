"""The `dcc` command: condense, evaluate, info.

    dcc condense [--dataset NAME|FOLDER] [--method NAME] [--ipc N] [--out runs/NAME] ...
    dcc evaluate SET.safetensors [--models convnet,lenet] [--num-nets N]
    dcc evaluate --random --dataset cifar10 --ipc 10      (the Random baseline)
    dcc info SET.safetensors

Every option that is a setting of `CondenseConfig` or `EvalConfig` takes its default from
that dataclass (`--help` shows it), so a default has one home.

Everything is checked before any work (settings, model names, output paths), and a refused
command leaves the disk as it was. Exit codes, each failure one line on stderr:

    0    done
    2    bad input, or an output that could not be written (what was computed is then printed
         on stdout, or kept as the message says)
    3    the condensation diverged (NaN or infinity): the message names the outer iteration and
         the settings to lower; the last finite checkpoint is kept, no synthetic set is written
         (resume it with lower learning rates); or an evaluation's training loss became NaN or
         infinite (no result is written)
    130  interrupted (the last checkpoint is kept; continue with --resume)
    143  terminated by SIGTERM (the same: the lock is released, the last checkpoint kept)

An output never replaces an input, a checkpoint or any file that is not an earlier result of
the same kind (`evaluate --out`: a JSON result of `dcc evaluate`). A set whose pixels lie far
outside the data's range is said on stderr (a warning) when it is written or evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path
from typing import Any, NoReturn

from dcclib.condense_config import CondenseConfig
from dcclib.errors import DivergedError, UnsavedResultError, UserError
from dcclib.evaluate import EvalConfig
from dcclib.flops import cost_note
from dcclib.terminate import Terminated, sigterm_raises

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a process that SIGTERM ended
EVALUATION_KIND = "dcc-evaluation"  # the marker of `dcc evaluate --out`'s JSON
FAR_OUTSIDE = 10  # a set beyond the data's range by more than this many times its width is said


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with exit code 2 (its default code too)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """Print `message` as one line and exit with code 2."""
        self.exit(EXIT_BAD_INPUT, f"dcc: error: {message}\n")


def _chunk(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _int_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _default(config: type, name: str) -> Any:
    """The default of field `name` of the dataclass `config`: the one home of a CLI default."""
    for f in fields(config):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            raise TypeError(f"{config.__name__}.{name} has no default")
    raise TypeError(f"{config.__name__} has no field {name!r}")


def _shown(value: object) -> str:
    """A default as a user types it (a tuple as a comma list), escaped for argparse's help."""
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return text.replace("%", "%%")


def _field_option(
    parser: argparse.ArgumentParser,
    config: type,
    name: str,
    help: str = "",
    *,
    type: Callable[[str], Any] | None = None,
    flag: str | None = None,
) -> None:
    """Add --NAME (or `flag`) whose default is `config`'s field `name`, shown at the end of its help.

    A None default (meaning "derived") is not shown: the help says where the value comes from.
    """
    default = _default(config, name)
    shown = "" if default is None else f"(default: {_shown(default)})"
    parser.add_argument(
        flag or "--" + name.replace("_", "-"),
        type=type,
        default=default,
        help=" ".join(part for part in (help, shown) if part),
    )


def build_parser() -> argparse.ArgumentParser:
    """The `dcc` parser; every option that is a CondenseConfig/EvalConfig field takes its default there."""
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
    cc, ec = CondenseConfig, EvalConfig
    _field_option(c, cc, "method", "dc | dsa | dcc | dsac")
    _field_option(c, cc, "ipc", "images per class", type=int)
    _field_option(c, cc, "outer_iterations", "K_o: fresh networks", type=int)
    _field_option(c, cc, "inner_iterations", "K_i (default: from ipc)", type=int)
    _field_option(c, cc, "net_epochs", "T (default: from ipc)", type=int)
    _field_option(c, cc, "warmup", "bilevel | none | inner")
    _field_option(c, cc, "gamma_outer", "warm-up length in outer iterations", type=int)
    _field_option(c, cc, "gamma_inner", "warm-up length in inner iterations", type=int)
    _field_option(
        c,
        cc,
        "simple_gamma_inner",
        "warm-up inner: its length (default: min(gamma-inner, K_i // 2))",
        type=int,
    )
    _field_option(c, cc, "batchnorm", "original | frozen: BatchNorm statistics of the matching networks")
    _field_option(c, cc, "lr_images", "learning rate of the synthetic images", type=float)
    _field_option(c, cc, "lr_net", "learning rate of the matching network", type=float)
    _field_option(c, cc, "batch_real", "real images per class per update", type=int)
    _field_option(c, cc, "distance", "layerwise | mse | cos")
    _field_option(c, cc, "init", "real | noise")
    _field_option(
        c,
        cc,
        "dsa_strategy",
        "DSA augmentations (default: color_crop_cutout_flip_scale_rotate on every dataset, as the DCC code; "
        "color_crop_cutout_scale_rotate drops flip for digits)",
    )
    _field_option(c, cc, "model", "network used for matching")
    _field_option(c, cc, "classwise_mode", "loop | vmap | auto (DC's per-class gradients, by device)")
    _field_option(c, cc, "real_chunk", "auto | N: split the real batch (memory)", type=_chunk)
    _field_option(c, cc, "chunk_budget_mb", "activation budget of real-chunk auto", type=int)
    _field_option(c, cc, "precision", "fp32 | tf32")
    _field_option(c, cc, "seed", "random seed", type=int)
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    c.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<method>-ipc<N>-s<seed>)")
    _field_option(c, cc, "checkpoint_every", "outer iterations between checkpoints", type=int)
    c.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    c.add_argument(
        "--eval-nets",
        type=int,
        default=0,
        help="evaluate the result with this many networks (default: %(default)s, no evaluation)",
    )
    _field_option(c, ec, "models", "comma-separated model names", type=_int_list, flag="--eval-models")
    _field_option(c, ec, "epochs", "E (default: the protocol's)", type=int, flag="--eval-epochs")
    c.add_argument("--quiet", action="store_true")

    e = sub.add_parser("evaluate", help="train fresh networks on a saved set and test them")
    e.add_argument("set", nargs="?", help="a .safetensors set written by dcc condense")
    e.add_argument("--random", action="store_true", help="evaluate the Random baseline instead")
    e.add_argument("--dataset", default=None, help="dataset (default: the set's own; required with --random)")
    e.add_argument("--ipc", type=int, default=None, help="with --random: images per class")
    e.add_argument("--data-root", default=None)
    _field_option(e, ec, "models", "comma-separated model names", type=_int_list)
    _field_option(e, ec, "num_nets", "networks trained per model", type=int)
    _field_option(e, ec, "epochs", "E (default: the protocol's)", type=int)
    _field_option(e, ec, "augment", "none | dsa | dc | dc_noise (default: the protocol's)")
    e.add_argument("--method", default=None, help="protocol to use (default: the set's method)")
    _field_option(e, ec, "seed", "random seed", type=int)
    _field_option(e, ec, "parallel_nets", "networks trained together (default: by device)", type=int)
    _field_option(e, ec, "precision", "fp32 | tf32 | bf16 (opt-in, see reports/performance.md)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    e.add_argument("--out", default=None, help="write the results as JSON here")
    e.add_argument("--quiet", action="store_true")

    i = sub.add_parser("info", help="show what a saved set holds")
    i.add_argument("set")
    return parser


def _check_models(models: tuple[str, ...]) -> None:
    """Every model name is known (before any data is loaded or network trained)."""
    from dcclib.models import list_models

    for name in models:
        if name not in list_models():
            raise UserError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")


@contextmanager
def _no_debris(data_root: str | None) -> Iterator[None]:
    """A dataset load that fails leaves no new empty folders in the data root (a download
    attempt makes them before finding nothing to fetch); a folder holding a file stays."""
    from dcclib.data import default_data_root

    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    top = root  # the outermost folder a load could create
    while not top.parent.exists():
        top = top.parent
    existed = root.exists()
    try:
        before = set(os.listdir(root)) if existed else set()
    except OSError:  # unreadable: nothing to compare with, so nothing is removed
        before = None
    try:
        yield
    except UserError:
        if not existed:
            _remove_empty_folders(top)
        elif before is not None and root.is_dir():
            for name in set(os.listdir(root)) - before:
                _remove_empty_folders(root / name)
        raise


def _remove_empty_folders(folder: Path) -> None:
    """Remove `folder` and the folders under it that are empty (innermost first); files stay."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for path, _, _ in os.walk(folder, topdown=False):
        try:
            os.rmdir(path)
        except OSError:
            pass


def _load(args: argparse.Namespace, name: str | None, device: Any) -> Any:
    """`load_dataset` with the command's data root, leaving no debris when it fails."""
    from dcclib.data import load_dataset

    with _no_debris(args.data_root):
        return load_dataset(name, args.data_root, device=device)


def _condense(args: argparse.Namespace) -> dict[str, Any]:
    from dcclib import runs
    from dcclib.condense import condense
    from dcclib.evaluate import evaluate_set
    from dcclib.models import create_model
    from dcclib.runtime import resolve_device

    names = {f.name for f in fields(CondenseConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = CondenseConfig(**values).resolved()  # validate before loading any data
    if args.eval_nets < 0:
        raise UserError(f"eval-nets must be >= 0, got {args.eval_nets}")
    _check_models(args.eval_models)
    ecfg = None
    if args.eval_nets:
        ecfg = EvalConfig(
            models=args.eval_models,
            num_nets=args.eval_nets,
            epochs=args.eval_epochs,
            seed=cfg.seed,
            dsa_strategy=cfg.dsa_strategy,  # the original evaluates with its condensation's strategy
        )
        ecfg.validate()
    if args.out:
        runs.check_run_dir(Path(args.out), args.resume)  # the default --out needs the dataset's name
    device = resolve_device(args.device)
    data = _load(args, args.dataset, device)
    cfg.dataset = data.name
    if ecfg is not None:
        for model in ecfg.models:  # images too small for an evaluation model: now, not after condensing
            create_model(model, data.channels, data.num_classes, data.image_size)
    out = Path(args.out or f"runs/{data.name}-{cfg.method}-ipc{cfg.ipc}-s{cfg.seed}")
    if not args.quiet:
        note = cost_note(cfg, data, device.type)
        if note:
            print(note, file=sys.stderr, flush=True)
    result = condense(cfg, data, run_dir=out, resume=args.resume, progress=not args.quiet)
    summary = {"run_dir": str(out), "synthetic": str(out / runs.SYNTHETIC)}
    _warn_if_far_outside(result.images, data, f"--lr-images {cfg.lr_images} may be too high")
    if ecfg is not None:
        with runs.owned(out):
            try:
                evals = evaluate_set(
                    result.images, result.labels, data, cfg.method, ecfg, progress=not args.quiet
                )
            except DivergedError as exc:
                raise DivergedError(f"{exc}; {out / runs.SYNTHETIC} is kept without accuracies") from None
            summary["evaluation"] = [r.as_dict() for r in evals]
            # the saved set carries its accuracies: rewrite it whole with them in the metadata
            meta = {**runs.synthetic_metadata(result.config, data), "accuracies": summary["evaluation"]}
            kept = "the set is kept without them; the accuracies are printed on stdout"
            try:
                runs.save_set(out, result.images, result.labels, meta, kept)
            except UserError as exc:
                raise UnsavedResultError(str(exc), summary) from None
    return summary


def _warn_if_far_outside(images: Any, data: Any, advice: str) -> None:
    """A warning on stderr when the pixels of `images` lie far outside those of `data`'s
    training images (FAR_OUTSIDE times their range beyond it): accuracies then mean little."""
    import torch

    lo, hi = (float(v) for v in torch.aminmax(data.train_images.detach().float()))
    low, high = (float(v) for v in torch.aminmax(images.detach().float()))
    width = max(hi - lo, 1e-12)
    if low < lo - FAR_OUTSIDE * width or high > hi + FAR_OUTSIDE * width:
        print(
            f"dcc: warning: the set's pixels range from {low:.4g} to {high:.4g}, far outside "
            f"{data.name}'s ({lo:.4g} to {hi:.4g}): {advice}",
            file=sys.stderr,
        )


def _set_dataset(meta: dict) -> str:
    """Where a saved set's data is: the image folder it was condensed from, while that is
    still there (`runs.synthetic_metadata` records it), else the dataset's name."""
    folder = meta.get("dataset_path")
    if isinstance(folder, str) and Path(folder).is_dir():
        return folder
    return meta["dataset"]


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from dcclib import runs
    from dcclib.evaluate import evaluate_set, random_subset
    from dcclib.io import library_versions, load_synthetic, write_json
    from dcclib.methods import get_method
    from dcclib.runtime import resolve_device

    if args.method is not None:
        get_method(args.method)  # an unknown name is a UserError, before any data or training
    if args.num_nets <= 0:
        raise UserError(f"num-nets must be positive, got {args.num_nets}")
    cfg = EvalConfig(
        models=args.models,
        num_nets=args.num_nets,
        epochs=args.epochs,
        augment=args.augment,
        seed=args.seed,
        parallel_nets=args.parallel_nets,
        precision=args.precision,
    )
    cfg.validate()
    _check_models(cfg.models)
    if args.random and args.set is not None:
        raise UserError("give either a saved set or --random, not both")
    if args.random and (args.ipc is None or args.dataset is None):
        raise UserError("--random needs --dataset and --ipc (e.g. --dataset embedded-mnist --ipc 10)")
    if not args.random and args.ipc is not None:
        raise UserError("--ipc is for --random only: a saved set has its own images per class")
    out = Path(args.out) if args.out else None
    if out is not None:
        runs.check_result_file(out, [args.set], EVALUATION_KIND)
    device = resolve_device(args.device)
    if args.random:
        data = _load(args, args.dataset, device)
        images, labels = random_subset(data, args.ipc, args.seed)
        method, source = "random", f"random ipc {args.ipc}"
    else:
        if args.set is None:
            raise UserError("give a saved set (.safetensors) or --random")
        images, labels, meta = load_synthetic(args.set)
        data = _load(args, args.dataset or _set_dataset(meta), device)
        if list(meta["class_names"]) != list(data.class_names):
            raise UserError(f"{args.set} was made for other classes than those of {data.name}")
        method, source = meta.get("method", "dc"), str(args.set)
        made_with = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        if isinstance(made_with.get("dsa_strategy"), str):  # evaluated with its condensation's DSA
            cfg = replace(cfg, dsa_strategy=made_with["dsa_strategy"])
            cfg.validate()
        _warn_if_far_outside(images, data, "its accuracies may mean little")
    try:
        results = evaluate_set(images, labels, data, args.method or method, cfg, progress=not args.quiet)
    except DivergedError as exc:
        raise DivergedError(f"{exc}; no result is written" if out is not None else str(exc)) from None
    summary = {
        "kind": EVALUATION_KIND,
        "set": source,
        "dataset": data.name,
        "method": args.method or method,
        "eval_config": asdict(cfg),
        "results": [r.as_dict() for r in results],
        "versions": library_versions(),
    }
    if out is not None:
        try:
            with runs.writing(out, "the results are printed on stdout"):
                write_json(out, summary)
        except UserError as exc:
            raise UnsavedResultError(str(exc), summary) from None
    return summary


def _info(args: argparse.Namespace) -> dict[str, Any]:
    from dcclib.io import load_synthetic

    images, labels, meta = load_synthetic(args.set)
    return {"file": args.set, "images": list(images.shape), "labels": int(labels.numel()), **meta}


def main(argv: list[str] | None = None) -> int:
    """Run the `dcc` command on `argv` (default: sys.argv[1:]); the exit code (0, 2, 3 or 130)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    handler = {"condense": _condense, "evaluate": _evaluate, "info": _info}[args.command]
    kept = "the last checkpoint is kept; continue with --resume" if args.command == "condense" else ""
    try:
        with sigterm_raises():
            summary = handler(args)
    except Terminated:
        print(f"dcc: terminated by SIGTERM ({kept or 'nothing was written'})", file=sys.stderr)
        return EXIT_TERMINATED
    except DivergedError as exc:
        print(f"dcc: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except UserError as exc:
        if isinstance(exc, UnsavedResultError):  # the work is done: show it rather than lose it
            print(json.dumps(exc.result, indent=2, default=str))
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
