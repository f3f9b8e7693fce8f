"""Cross-check against the authors' code, part 2: their main() loop (optional).

Needs DCC_REFERENCE_DIR, as tests/test_reference_crosscheck.py (whose helpers this module
reuses; importing it skips this module too when the variable is unset).

1. DSA and DSAC through their main() in float64 on the tiny MNIST-shaped set: their clock
   seeds are made deterministic (main.py's `time`), every random number their DiffAugment
   draws is recorded with the order in which their DataLoader shuffles the synthetic set, and
   both are replayed into `dcclib.condense.condense` through its own draw path (`sample_dsa`,
   the family `dsa_augment` draws from its generator) and its shuffle (`torch.randperm`)
   (tests/reference_replay.py). The synthetic images after the run must agree to float64
   rounding.
2. Three outer iterations across the gamma_o boundary (DCC and DSAC): the image optimiser's
   momentum carried across three different networks, and the switch to the collective loss.
   Which loss each image update of their main() used is read off their networks (a hook sees
   the synthetic forward passes: C of ipc images = class-wise, one of C * ipc = collective)
   and compared with dcclib's observer.
3. The warm-up rule and the evaluation protocol's (E, augmentation) rule, read from their
   main() run with spies (no hand-copied condition), against dcclib.
4. The DSA strategy per dataset: what their main() hands to DiffAugment (matching, network
   training, evaluation) against what dcclib runs with dsa_strategy=None (spied).
"""

from __future__ import annotations

import copy
import inspect
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from reference_replay import (  # noqa: F401 (one_thread: an autouse fixture)
    one_thread,
    record_their_dsa,
    record_their_shuffles,
    replay_events,
    replay_into_dcclib,
    spied_networks,
    their_branches,
)
from test_reference_crosscheck import (
    _CLASSES,
    _PER_CLASS,
    _TOLERANCE,
    _WIDTH,
    F64,
    MODEL_COUNTERPARTS,
    REF,
    _FirstImages,
    _fixed_networks,
    _QuietLogging,
    _reference_defaults,
    _run_their_main,
    _tiny_images,
)
from tiny import tiny_dataset
from torch import nn

import dcclib.augment
import dcclib.batched
import dcclib.condense
import dcclib.evaluate
from dcclib.augment import dc_augment, default_dsa_strategy
from dcclib.condense import CondenseConfig, condense, iteration_seed, uses_classwise_loss
from dcclib.evaluate import EvalConfig, evaluate_set, protocol_defaults

# =============================================================================================
# 1 + 2. DSA, DSAC and several outer iterations: their main() against condense
# =============================================================================================
_CASES = {
    # id: (K_o, dcclib settings, main.py flags)
    "dsa": (1, dict(method="dsa"), ["--method", "DSA", "--outer_warmup", "1"]),
    "dsac": (1, dict(method="dsac", gamma_outer=0), ["--method", "DSA", "--contrast", "--outer_warmup", "0"]),
    "dsac-warmup": (  # steps 0-3 class-wise, 4-9 collective
        1,
        dict(method="dsac", gamma_outer=1, gamma_inner=4),
        ["--method", "DSA", "--contrast", "--outer_warmup", "1", "--inner_warmup", "4"],
    ),
    "dcc-3-networks": (  # networks 0, 1 class-wise, network 2 collective
        3,
        dict(method="dcc", gamma_outer=2, gamma_inner=10),
        ["--contrast", "--outer_warmup", "2", "--inner_warmup", "10"],
    ),
    "dsac-3-networks": (  # network 0 class-wise, networks 1, 2 collective
        3,
        dict(method="dsac", gamma_outer=1, gamma_inner=10),
        ["--method", "DSA", "--contrast", "--outer_warmup", "1", "--inner_warmup", "10"],
    ),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_outer_iterations_match_main(case, tmp_path):
    outer, settings, flags = _CASES[case]
    images, labels = _tiny_images(F64)
    pairs = [_fixed_networks("instancenorm", "relu", _WIDTH, F64, seed=2022 + k) for k in range(outer)]
    calls, indices, sizes = [], [], []

    def setup(mp):
        record_their_dsa(mp, calls)
        record_their_shuffles(mp, indices)
        spied_networks(mp, [theirs for theirs, _ in pairs], sizes)

    syn_ref = _run_their_main(tmp_path, pairs[0][0], images, labels, flags, outer_loop=outer, setup=setup)
    their_steps = [their_branches(s, _CLASSES, 1) for s in sizes]
    n_syn = _CLASSES  # ipc 1
    orders = [torch.tensor(indices[i : i + n_syn]) for i in range(0, len(indices), n_syn)]
    strategy = _reference_defaults().dsa_strategy
    events, families = replay_events(calls, strategy, _CLASSES)
    uses_dsa = settings["method"].startswith("ds")
    assert bool(events) == uses_dsa and len(orders) == outer * 9 * 5  # (K_i - 1) * T shuffles a network

    data = _FirstImages(
        "tiny-mnist-shaped", images, labels, images, labels, [str(k) for k in range(_CLASSES)],
        (0.0,), (1.0,), "tests/test_reference_crosscheck_loop.py",
    )  # fmt: skip
    cfg = CondenseConfig(
        dataset=data.name, ipc=1, outer_iterations=outer, batch_real=_PER_CLASS, batch_train=256,
        model=f"convnet_w{_WIDTH}", seed=0, **settings,
    )  # fmt: skip
    seeds, used, our_steps = {iteration_seed(0, k): k for k in range(outer)}, [], {}

    def create_model(*args, **kwargs):  # network k in outer iteration k (seeded just before)
        k = seeds.get(torch.initial_seed())
        if k is not None:
            used.append(k)
        return copy.deepcopy(pairs[k or 0][1])

    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        mp.setattr(dcclib.condense, "create_model", create_model)
        queue = replay_into_dcclib(mp, events, orders)
        result = condense(
            cfg,
            data,
            progress=False,
            observer=lambda s: our_steps.setdefault(s.outer, []).append(not s.classwise),
        )
    assert not queue and not orders, "their main() made draws / shuffles that dcclib did not use"
    assert used == list(range(outer))
    assert [our_steps[k] for k in range(outer)] == their_steps, (
        f"collective steps: {our_steps} vs {their_steps}"
    )
    if uses_dsa:
        assert families == set(REF.utils.AUGMENT_FNS), f"families drawn: {sorted(families)}"
    if outer > 1:  # the run crosses gamma_o: class-wise networks, then collective ones
        assert not any(their_steps[0]) and all(their_steps[-1]), their_steps

    syn = result.images
    moved = (syn_ref - images[::_PER_CLASS]).abs().max().item()
    assert moved > 1e-2, f"the reference barely moved the images ({moved:.1e}): the check would be empty"
    diff = (syn - syn_ref).abs().max().item()
    assert torch.allclose(syn, syn_ref, **_TOLERANCE[F64]), (
        f"{case}: final synthetic images differ from main.py's: max abs diff {diff:.3e} (moved {moved:.3e})"
    )
    print(f"[{case}] max abs diff {diff:.2e}, images moved up to {moved:.2e}, steps {their_steps}")


# =============================================================================================
# 3 + 4. Rules and the DSA strategy, read from their main() with spies
# =============================================================================================
class _Named(nn.Linear):
    """A network that remembers the model name main() asked for; a linear classifier."""

    def __init__(self, name: str, features: int, classes: int):
        super().__init__(features, classes)
        self.name = name

    def forward(self, x):
        return super().forward(x.flatten(1))


def _drive_their_main(tmp_path, flags: list[str], classes: int = 2, shape=(1, 6, 6)) -> SimpleNamespace:
    """Their main() on a tiny set with linear networks, spied: the collective/class-wise choice of
    every image update, the evaluation settings of every evaluated model, the DSA strategies."""
    rec = SimpleNamespace(sizes=[], evaluations=[], dsa=[])
    g = torch.Generator().manual_seed(0)
    train = [(torch.randn(shape, generator=g), c) for c in range(classes) for _ in range(3)]
    argv = ["main.py", "--ipc", "1", "--num_exp", "1", "--num_eval", "1", "--batch_real", "3"]
    argv += ["--data_path", str(tmp_path / "data"), "--save_path", str(tmp_path / "result"), *flags]
    features = int(np.prod(shape))

    def get_network(model, channel, num_classes, im_size=(32, 32)):
        net, sizes = _Named(model, features, num_classes), []
        rec.sizes.append(sizes)
        net.register_forward_pre_hook(
            lambda m, inp: sizes.append(inp[0].shape[0]) if inp[0].requires_grad else None
        )
        return net

    def evaluate_synset(it_eval, net, images, labels, testloader, args):
        aug = copy.deepcopy(args.dc_aug_param)
        rec.evaluations.append((net.name, args.epoch_eval_train, args.dsa, aug, args.dsa_strategy))
        return net, 0.0, 0.0

    def diff_augment(x, strategy="", seed=-1, param=None):
        rec.dsa.append((strategy, "matching" if seed != -1 else "training"))
        return x

    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [str(k) for k in range(classes)]
        c, size = shape[0], shape[1:]
        dataset = (c, size, classes, names, [0.0] * c, [1.0] * c, train, train, None)
        mp.setattr(REF.main, "get_dataset", lambda *args: dataset)
        mp.setattr(REF.main, "get_network", get_network)
        mp.setattr(REF.main, "evaluate_synset", evaluate_synset)
        mp.setattr(REF.main, "DiffAugment", diff_augment)
        mp.setattr(REF.utils, "DiffAugment", diff_augment)
        mp.setattr(REF.main, "logging", _QuietLogging())
        mp.setattr(torch.cuda, "is_available", lambda: False)
        mp.setattr(sys, "argv", argv)
        REF.main.main()
    rec.steps = [their_branches(s, classes, 1) for s in rec.sizes if s]  # one list per training network
    return rec


_METHOD_FLAGS = {
    "dc": [],
    "dsa": ["--method", "DSA"],
    "dcc": ["--contrast"],
    "dsac": ["--method", "DSA", "--contrast"],
}


def test_warmup_rule_matches_main(tmp_path):
    """Every image update of their main() (K_o = 4, K_i = 10) against uses_classwise_loss."""
    outer, checked = 4, 0
    for method, method_flags in _METHOD_FLAGS.items():
        gammas = (
            [(go, gi) for go in (0, 1, 3, 4) for gi in (0, 1, 4, 10)]
            if "--contrast" in method_flags
            else [(1, 4)]
        )
        for gamma_o, gamma_i in gammas:
            flags = [*method_flags, "--eval_mode", "M", "--outer_loop", str(outer)]
            flags += ["--outer_warmup", str(gamma_o), "--inner_warmup", str(gamma_i)]
            theirs = _drive_their_main(tmp_path, flags).steps
            assert len(theirs) == outer and all(len(s) == 10 for s in theirs), theirs
            configs = [
                CondenseConfig(
                    method=method, outer_iterations=outer, ipc=1, gamma_outer=gamma_o, gamma_inner=gamma_i
                )
            ]
            if gamma_o == 0:  # their --outer_warmup 0 is our warmup "none"
                configs.append(CondenseConfig(method=method, outer_iterations=outer, ipc=1, warmup="none"))
            for cfg in configs:
                ours = [[not uses_classwise_loss(cfg, ol, il) for il in range(10)] for ol in range(outer)]
                assert ours == theirs, f"{method} {cfg.warmup}, gamma_o {gamma_o}, gamma_i {gamma_i}"
                checked += 1
    assert checked == 2 * 16 + 2 * 4 + 2  # the check ran on every configuration


_DATASETS = {
    "mnist": "MNIST",
    "embedded-mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "svhn": "SVHN",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}
_EVAL_AUGMENT = {"none": "none", "dc": "crop_scale_rotate", "dc_noise": "crop_noise", "dsa": "dsa"}
# their --eval_mode pools (utils.get_eval_pool) and, for the two models in none of them, the
# pool [--model] of any other mode
_EVAL_RUNS = [["--eval_mode", m] for m in "MWDAPN"] + [
    ["--eval_mode", "X", "--model", m] for m in ("VGG11BN", "ResNet18BN")
]


def test_evaluation_protocol_rule_matches_main(tmp_path):
    """The (E, augmentation) their main() evaluates each model with, per dataset and method."""
    ours_of = {theirs: ours for ours, theirs in MODEL_COUNTERPARTS.items()}
    dc_defaults = {k: v.default for k, v in inspect.signature(dc_augment).parameters.items()}
    for method, method_flags in _METHOD_FLAGS.items():
        for ours_name, their_name in _DATASETS.items():
            seen = set()
            for run in _EVAL_RUNS:
                flags = [
                    *method_flags,
                    "--dataset",
                    their_name,
                    "--outer_loop",
                    "0",
                    "--outer_warmup",
                    "0",
                    *run,
                ]
                for model, epochs, dsa, dc_param, _ in _drive_their_main(tmp_path, flags).evaluations:
                    augment = "dsa" if dsa else dc_param["strategy"]
                    ours = protocol_defaults(method, ours_name, ours_of[model])
                    assert (ours[0], _EVAL_AUGMENT[ours[1]]) == (epochs, augment), (
                        f"{model}, {ours_name}, {method}"
                    )
                    if augment in ("crop_scale_rotate", "crop_noise"):  # dc_augment's ranges are theirs
                        assert {k: dc_param[k] for k in ("crop", "scale", "rotate", "noise")} == {
                            k: dc_defaults[k] for k in ("crop", "scale", "rotate", "noise")
                        }
                    seen.add(ours_of[model])
            assert seen == set(MODEL_COUNTERPARTS), sorted(set(MODEL_COUNTERPARTS) - seen)


_DSA_DATASETS = {
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "svhn": "SVHN",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}


def _our_dsa_strategies(name: str, channels: int) -> dict[str, set[str]]:
    """The strategies dcclib hands to its DSA calls with dsa_strategy=None: condensation
    (matching, network training) and evaluation (one network after another, and batched)."""
    data = tiny_dataset(num_classes=3, per_class=4, size=8, channels=channels, name=name)
    seen: dict[str, set[str]] = {"matching": set(), "training": set(), "evaluation": set()}

    def spy(where, fn, position):
        def wrapper(*args, **kwargs):
            seen[where].add(args[position])
            return fn(*args, **kwargs)

        return wrapper

    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        mp.setattr(dcclib.condense, "siamese_augment", spy("matching", dcclib.condense.siamese_augment, 5))
        mp.setattr(dcclib.condense, "dsa_augment", spy("training", dcclib.condense.dsa_augment, 1))
        mp.setattr(dcclib.evaluate, "dsa_augment", spy("evaluation", dcclib.evaluate.dsa_augment, 1))
        mp.setattr(
            dcclib.batched, "batched_augmenter", spy("evaluation", dcclib.batched.batched_augmenter, 1)
        )
        for method in ("dsa", "dsac"):
            cfg = CondenseConfig(
                dataset=name, method=method, ipc=1, outer_iterations=1, inner_iterations=2, net_epochs=1,
                batch_real=4, model="mlp", dsa_strategy=None,
            )  # fmt: skip
            result = condense(cfg, data, progress=False)
            for parallel in (1, 2):
                cfg_eval = EvalConfig(models=("mlp",), num_nets=2, epochs=1, parallel_nets=parallel)
                (res,) = evaluate_set(result.images, result.labels, data, method, cfg_eval)
                assert res.augment == "dsa"
    return seen


@pytest.mark.parametrize("name", list(_DSA_DATASETS))
def test_dsa_strategy_matches_main_per_dataset(name, tmp_path):
    their_default = _reference_defaults().dsa_strategy
    shape = (1, 6, 6) if name in ("mnist", "fashionmnist") else (3, 6, 6)
    flags = ["--method", "DSA", "--dataset", _DSA_DATASETS[name], "--eval_mode", "M"]
    flags += ["--outer_loop", "1", "--outer_warmup", "1"]
    rec = _drive_their_main(tmp_path, flags, shape=shape)
    theirs = {where: {s for s, w in rec.dsa if w == where} for where in ("matching", "training")}
    theirs["evaluation"] = {strategy for *_, dsa, _, strategy in rec.evaluations if dsa}
    assert theirs == {where: {their_default} for where in theirs}, theirs
    assert default_dsa_strategy(name) == their_default
    ours = _our_dsa_strategies(name, shape[0])
    assert ours == theirs, f"{name}: dcclib runs {ours}, their main() {theirs}"
