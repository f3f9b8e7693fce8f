"""Cross-check against the authors' code, part 3: the evaluation (optional).

Needs DCC_REFERENCE_DIR, as tests/test_reference_crosscheck.py (whose helpers this module
reuses; importing it skips this module too when the variable is unset). The statistical
comparisons also need real MNIST in ../shared/data/mnist (skipped without it).

1. Exact: their `utils.evaluate_synset` against `dcclib.evaluate.evaluate_set` (one network
   after another: `train_from_scratch`) from the same initial weights, their DataLoader's
   shuffles recorded and replayed into dcclib's `torch.randperm`, several batches per epoch
   and the lr drop: the final weights (BatchNorm statistics included) and the test accuracy.
   Without augmentation (ConvNet, ConvNetBN) and with DSA, where every random number their
   DiffAugment draws is replayed into `dsa_augment` (tests/reference_replay.py).
2. Statistical, on one fixed MNIST set (the first training image of each class), the same
   network initialisations on both sides, E = 300 (both sides): mean test accuracy over
   _NETS networks each.
   (a) MNIST's DC augmentation: their evaluate_synset with their `augment` against
       evaluate_set with `dc_augment`;
   (b) DSA: their evaluate_synset with their DiffAugment against evaluate_set with
       `dsa_augment` (weak here: at this E, DSA adds little over no augmentation, so 1 carries
       the DSA check);
   (c) the dc_augment approximation alone: evaluate_set as it is against evaluate_set with
       their `augment` in place of `dc_augment` (everything else the same).
   The two means must agree within 3 standard errors of their difference (from the sample
   spread of the per-network accuracies): what 5 networks a side can resolve. Seeded, so
   deterministic on one machine. (With 15 networks a side, E = 300, dc_augment measured
   +1.5 points over their augment, paired standard error 0.8; with 8, E = 1000, +1.2 +- 0.9.)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import statistics
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from reference_replay import (  # noqa: F401 (one_thread: an autouse fixture)
    one_thread,
    record_their_dsa,
    replay_events,
    replay_into_dcclib,
)
from test_reference_crosscheck import MODEL_COUNTERPARTS, REF, _reference_defaults, _their_network
from tiny import tiny_dataset

import dcclib.evaluate
from dcclib.data import ImageDataset, load_dataset
from dcclib.evaluate import PROTOCOL, EvalConfig, evaluate_set
from dcclib.models import ConvNet, create_model
from dcclib.runtime import derive_seed

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # as tests/test_data.py


def _their_args(**overrides) -> SimpleNamespace:
    """The args their evaluate_synset reads, with main.py's defaults (lr_net, batch_train)."""
    a = _reference_defaults()
    args = dict(device="cpu", lr_net=a.lr_net, batch_train=a.batch_train, dsa=False, dc_aug_param=None)
    args.update(dsa_strategy=a.dsa_strategy, dsa_param=REF.utils.ParamDiffAug())
    return SimpleNamespace(**{**args, **overrides})


def _their_evaluation(net, images, labels, test_x, test_y, args, indices=None, draws=None):
    """utils.evaluate_synset (quiet): the trained network and its test accuracy. `indices`
    receives the training indices its DataLoader asked for, `draws` the random numbers of every
    DiffAugment call (see reference_replay.record_their_dsa: grids with
    align_corners=True, outputs in the standard memory layout)."""
    testloader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(test_x, test_y), batch_size=500)

    class Recording(REF.utils.TensorDataset):
        def __getitem__(self, index):
            if indices is not None:
                indices.append(int(index))
            return super().__getitem__(index)

    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(REF.utils, "TensorDataset", Recording)
        record_their_dsa(mp, [] if draws is None else draws, float64=False)
        net, _, acc_test = REF.utils.evaluate_synset(0, net, images.clone(), labels.clone(), testloader, args)
    return net, float(acc_test)


@contextlib.contextmanager
def _our_networks(mp: pytest.MonkeyPatch, model: str, nets: list[torch.nn.Module], cfg: EvalConfig):
    """dcclib.evaluate.create_model gives network j of `model` = nets[j] (it is seeded just
    before with (cfg.seed, model, j)); yields the list of indices it handed out."""
    seeds = {derive_seed("evaluate", cfg.seed, model, j): j for j in range(len(nets))}
    used: list[int] = []

    def create(*args, **kwargs):
        j = seeds.get(torch.initial_seed())
        if j is None:  # the name check and the parallel-nets probe
            return copy.deepcopy(nets[0])
        used.append(j)
        return nets[j]

    mp.setattr(dcclib.evaluate, "create_model", create)
    yield used


# =============================================================================================
# 1. Exact: same initial weights, same shuffles (and, with DSA, the same draws)
# =============================================================================================
_EXACT = {  # id: (model, augmentation), tolerance of the final weights
    "convnet-none": (("convnet", "none"), dict(rtol=1e-6, atol=1e-7)),
    "convnet_bn-none": (("convnet_bn", "none"), dict(rtol=1e-6, atol=1e-7)),
    # DSA: their rotation matrices are built in float32 from the angle, ours from degrees
    # (rounding). Instance norm all but cancels the colour family: also a ConvNet without norm.
    "convnet-dsa": (("convnet", "dsa"), dict(rtol=1e-5, atol=1e-6)),
    "convnet_nonorm-dsa": (("convnet_nonorm", "dsa"), dict(rtol=1e-5, atol=1e-6)),
}


@pytest.mark.parametrize("case", list(_EXACT))
def test_training_matches_evaluate_synset(case):
    (model, augment), tolerance = _EXACT[case]
    tiny = tiny_dataset(num_classes=3, per_class=20, size=28, channels=1)
    ids = torch.cat([idx[:3] for idx in tiny.class_indices])  # 9 images: batches of 4, 4, 1
    images, labels = tiny.train_images[ids], tiny.train_labels[ids]
    noise = 2.2 * torch.randn(tiny.test_images.shape, generator=torch.Generator().manual_seed(1))
    test_x, test_y = tiny.test_images + noise, tiny.test_labels  # noisy: an accuracy below 1
    data = ImageDataset("tiny-eval", images, labels, test_x, test_y, tiny.class_names, (0.0,), (1.0,), "tiny")
    epochs, batch = 6, 4  # E + 1 = 7 passes, the lr drops after pass 4 (new optimiser)
    theirs = _their_network(MODEL_COUNTERPARTS[model], 1, 3, (28, 28))  # clock-seeded: replaced
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ours = create_model(model, 1, 3, (28, 28))
    theirs.load_state_dict(ours.state_dict())  # the same (seeded) initial weights
    initial = copy.deepcopy(theirs.state_dict())
    indices, draws = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        args = _their_args(batch_train=batch, epoch_eval_train=epochs, dsa=augment == "dsa")
        theirs, acc_ref = _their_evaluation(theirs, images, labels, test_x, test_y, args, indices, draws)
    n = len(labels)
    orders = [torch.tensor(indices[i : i + n]) for i in range(0, len(indices), n)]
    assert len(orders) == epochs + 1 and all(sorted(o.tolist()) == list(range(n)) for o in orders)
    assert len({tuple(o.tolist()) for o in orders}) > 1  # they shuffled
    events, families = replay_events(draws, args.dsa_strategy, 3)
    assert len(events) == (3 * (epochs + 1) if augment == "dsa" else 0)  # one draw a batch

    cfg = EvalConfig(models=(model,), num_nets=1, epochs=epochs, augment=augment, batch_size=batch)
    cfg.parallel_nets = 1  # one network after another: train_from_scratch
    assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (PROTOCOL.lr, PROTOCOL.momentum, PROTOCOL.weight_decay)
    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        with _our_networks(mp, model, [ours], cfg) as used:
            queue = replay_into_dcclib(mp, events, orders, caller=dcclib.evaluate)
            (result,) = evaluate_set(images, labels, data, "dsa" if augment == "dsa" else "dc", cfg)
    assert used == [0] and not orders and not queue and result.augment == augment

    their_sd, worst = theirs.state_dict(), 0.0
    for key, value in ours.state_dict().items():
        diff = (value.double() - their_sd[key].double()).abs().max().item()
        worst = max(worst, diff)
        assert torch.allclose(value, their_sd[key], **tolerance), f"{case} {key}: max abs diff {diff:.2e}"
    moved = max((v.double() - initial[k].double()).abs().max().item() for k, v in their_sd.items())
    assert moved > 1e-2, "training barely changed the weights: the check would be empty"
    acc = result.accuracies[0]
    assert 0 < acc_ref < 1, f"a test accuracy of {acc_ref} compares little"
    assert acc == pytest.approx(acc_ref, abs=1e-7), f"{case}: test accuracy {acc} vs theirs {acc_ref}"
    print(f"[{case}] weights max abs diff {worst:.2e} (moved up to {moved:.2e}); accuracy {acc} vs {acc_ref}")
    print(f"[{case}] DSA families drawn: {sorted(families)}")


# =============================================================================================
# 2. Statistical: one fixed MNIST set, the same initialisations, _NETS networks a side
# =============================================================================================
_NETS, _EPOCHS, _TEST = 5, 300, 2000  # E: the protocol's 1000 cut to 300, alike on both sides
_WIDTH, _DEPTH = 16, 2  # a small ConvNet (instance norm, ReLU, average pooling): CPU time


@functools.cache
def _mnist() -> ImageDataset:
    """The set: the first training image of each class (ipc 1); the first _TEST test images."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not present at {SHARED_DATA / 'mnist'} (optional dev data)")
    full = load_dataset("mnist", data_root=SHARED_DATA, download=False)
    ids = torch.cat([idx[:1] for idx in full.class_indices])
    x, y = full.train_images[ids], full.train_labels[ids]
    test_x, test_y = full.test_images[:_TEST], full.test_labels[:_TEST]
    return ImageDataset("mnist", x, y, test_x, test_y, full.class_names, full.mean, full.std, full.source)


def _network_pairs() -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """Network j: their ConvNet (seed 100 + j) and ours with its weights."""
    pairs = []
    for j in range(_NETS):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(100 + j)
            theirs = REF.networks.ConvNet(
                1, 10, _WIDTH, _DEPTH, "relu", "instancenorm", "avgpooling", (28, 28)
            )
        ours = ConvNet(1, 10, width=_WIDTH, depth=_DEPTH, image_size=(28, 28))
        ours.load_state_dict(theirs.state_dict())
        pairs.append((theirs, ours))
    return pairs


@contextlib.contextmanager
def _numpy_seeded(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _their_dc_augment(x, strategy, mean, generator=None, **ranges):
    """Their utils.augment where dcclib.evaluate calls dc_augment (it passes mean=None: the
    batch's channel means, as theirs), with their MNIST parameters (get_daparam)."""
    param = REF.utils.get_daparam("MNIST", "ConvNet", "ConvNet", 1)
    assert (strategy, mean, ranges) == (param["strategy"], None, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return REF.utils.augment(x.clone(), param, device="cpu")


@functools.cache
def _accuracies(arm: str) -> tuple[float, ...]:
    """Test accuracies of the _NETS networks trained on _mnist() by one arm of the comparison:
    theirs-dc / theirs-dsa: their evaluate_synset (MNIST's DC augmentation / DSA); ours-dc /
    ours-dsa / ours-none: evaluate_set; ours-dc-their-augment: evaluate_set with their augment."""
    data, pairs = _mnist(), _network_pairs()
    if arm.startswith("theirs-"):
        dsa = arm == "theirs-dsa"
        dc_param = None if dsa else REF.utils.get_daparam("MNIST", "ConvNet", "ConvNet", 1)
        args = _their_args(epoch_eval_train=_EPOCHS, dsa=dsa, dc_aug_param=dc_param)
        accs = []
        for j, (theirs, _) in enumerate(pairs):
            with torch.random.fork_rng(devices=[]), _numpy_seeded(j):
                torch.manual_seed(j)
                accs.append(
                    _their_evaluation(
                        theirs, data.train_images, data.train_labels, data.test_images, data.test_labels, args
                    )[1]
                )
        return tuple(accs)
    method = "dsa" if arm == "ours-dsa" else "dc"
    cfg = EvalConfig(
        models=("convnet",), num_nets=_NETS, epochs=_EPOCHS, augment="none" if arm == "ours-none" else None
    )
    cfg.parallel_nets = 1
    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]), _numpy_seeded(0):
        with _our_networks(mp, "convnet", [ours for _, ours in pairs], cfg) as used:
            if arm == "ours-dc-their-augment":
                mp.setattr(dcclib.evaluate, "dc_augment", _their_dc_augment)
            (result,) = evaluate_set(data.train_images, data.train_labels, data, method, cfg)
    assert used == list(range(_NETS)) and result.epochs == _EPOCHS
    assert result.augment == {"ours-dsa": "dsa", "ours-none": "none"}.get(arm, "dc")
    return tuple(result.accuracies)


def _summary(accs) -> str:
    return f"{100 * statistics.fmean(accs):.2f} +- {100 * statistics.stdev(accs):.2f} % (n={len(accs)})"


def _difference(a, b) -> tuple[float, float]:
    """mean(a) - mean(b) and 3 standard errors of that difference (sample variances)."""
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return statistics.fmean(a) - statistics.fmean(b), 3 * se


@pytest.mark.parametrize("augment", ["dc", "dsa"])
def test_augmented_evaluation_matches_evaluate_synset(augment):
    theirs, ours = _accuracies(f"theirs-{augment}"), _accuracies(f"ours-{augment}")
    diff, bound = _difference(ours, theirs)
    print(
        f"[{augment}] theirs {_summary(theirs)}, ours {_summary(ours)}: "
        f"difference {100 * diff:+.2f} points (bound {100 * bound:.2f})"
    )
    if augment == "dsa":  # how much DSA itself changes the accuracy here (context)
        gain = statistics.fmean(ours) - statistics.fmean(_accuracies("ours-none"))
        print(f"[dsa] DSA gains {100 * gain:+.2f} points over no augmentation (dcclib)")
    assert abs(diff) <= bound, (
        f"{augment}: mean accuracy {100 * diff:+.2f} points from theirs (> {100 * bound:.2f})"
    )


def test_dc_augment_approximation_changes_accuracy_little():
    """dc_augment (bilinear scale and rotation) against their augment (nearest resize with
    integer truncation and centre crop/pad, scipy's cubic-spline rotation), everything else
    the same: dcclib's training loop, set, networks, E."""
    exact, approx = _accuracies("ours-dc-their-augment"), _accuracies("ours-dc")
    plain = _accuracies("ours-none")
    diff, bound = _difference(approx, exact)
    gain = statistics.fmean(exact) - statistics.fmean(plain)
    print(
        f"their augment {_summary(exact)}, dc_augment {_summary(approx)}, none {_summary(plain)}: "
        f"dc_augment {100 * diff:+.2f} points (bound {100 * bound:.2f}); augmenting gains {100 * gain:.2f}"
    )
    assert gain > bound, "the augmentation hardly matters here: the comparison would be empty"
    assert abs(diff) <= bound, (
        f"dc_augment changes the accuracy by {100 * diff:+.2f} points (> {100 * bound:.2f})"
    )
