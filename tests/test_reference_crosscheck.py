"""Cross-check against the authors' code (github.com/Saehyung-Lee/DCC): optional.

Runs when the environment variable DCC_REFERENCE_DIR points to a checkout of that repository
(its main.py, utils.py, networks.py); skipped otherwise. Their modules are imported from that
directory at test time (the module names they use, `utils`, `networks`, `main`, are removed from
`sys.modules` again afterwards); none of their code is part of this repository.

On identical tensors and seeds:

1. the DC (class-wise) and DCC (class-collective) losses, as main.py's inner loop builds them
   around `utils.match_loss` (metrics 'ours', 'mse', 'cos'), and their gradients with respect to
   the synthetic images, in float64, against `dcclib.matching.dc_loss` / `dcc_loss`;
2. every registry model with a counterpart in `utils.get_network`: parameter names (with a
   stated mapping), shapes and order, and outputs (eval and train mode) after copying their
   weights into ours, on MNIST-shaped and CIFAR-shaped input;
3. each DSA family with a fixed draw: their `DiffAugment` (Siamese and per-sample), its random
   numbers recorded and turned into a `dcclib.augment.DSADraw`, against `apply_dsa` and
   `dsa_augment`, outputs and input gradients;
4. the evaluation schedule: their `evaluate_synset` (its `epoch` recorded) against
   `dcclib.protocol` and against dcclib's training loops (sequential and batched);
5. one whole outer iteration of DC and DCC (ConvNet with instance norm and with BatchNorm):
   their `main()` run in-process on a tiny dataset against `dcclib.condense.condense`;
plus the defaults of their command line, the (K_i, T) schedule and the DSA ranges.
tests/test_reference_crosscheck_loop.py (DSA/DSAC and several outer iterations through their
main(), the warm-up and evaluation-protocol rules read from their main(), the DSA strategy per
dataset) and tests/test_reference_crosscheck_eval.py (their evaluate_synset and DC augmentation)
reuse the helpers below (and tests/reference_replay.py: their DSA draws and shuffles replayed).

Where the original relies on an old PyTorch default (affine grids with align_corners=True,
before PyTorch 1.3), the test gives it that default explicitly (`_OldAffineF`); on square
images today's default gives the same numbers anyway (pinned below). The whole outer iteration
is compared in float64 (see the note above `_PER_CLASS`), plus one float32 run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib
import inspect
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

_REF_ENV = "DCC_REFERENCE_DIR"
_REF_MODULES = ("networks", "utils", "imagenet_class_list", "main")  # import order


def _load_reference() -> SimpleNamespace:
    """Import the authors' modules from $DCC_REFERENCE_DIR, or skip the whole module."""
    root = os.environ.get(_REF_ENV, "").strip()
    if not root:
        pytest.skip(
            f"{_REF_ENV} is not set: point it to a checkout of https://github.com/Saehyung-Lee/DCC "
            "to cross-check against the authors' code",
            allow_module_level=True,
        )
    path = Path(root).expanduser().resolve()
    missing = [f"{m}.py" for m in _REF_MODULES if not (path / f"{m}.py").is_file()]
    if missing:
        pytest.skip(
            f"{_REF_ENV}={root} is not a checkout of the authors' code (missing {', '.join(missing)})",
            allow_module_level=True,
        )
    saved = {name: sys.modules.pop(name) for name in _REF_MODULES if name in sys.modules}
    sys.path.insert(0, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            modules = {name: importlib.import_module(name) for name in _REF_MODULES}
    except ImportError as exc:
        pytest.skip(
            f"the authors' code in {path} cannot be imported here ({type(exc).__name__}: {exc}); "
            "install what it needs (torchvision, scipy, pillow) to run the cross-check",
            allow_module_level=True,
        )
    finally:
        sys.path.remove(str(path))
        for name in _REF_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return SimpleNamespace(**modules)


REF = _load_reference()

# dcclib imports after the skip: without the reference there is nothing to run.
import dcclib.augment  # noqa: E402
import dcclib.batched  # noqa: E402
import dcclib.condense  # noqa: E402
import dcclib.evaluate  # noqa: E402
from dcclib import protocol  # noqa: E402
from dcclib.augment import DSA_FULL, DSADraw, DSAParams, apply_dsa, dsa_augment  # noqa: E402
from dcclib.condense import CondenseConfig, condense  # noqa: E402
from dcclib.condense_config import INNER_SCHEDULE  # noqa: E402
from dcclib.data import ImageDataset  # noqa: E402
from dcclib.evaluate import PLAIN_EPOCHS, EvalConfig, evaluate_set  # noqa: E402
from dcclib.matching import dc_loss, dcc_loss  # noqa: E402
from dcclib.models import ConvNet, create_model, list_models  # noqa: E402
from dcclib.protocol import LR_DROP_FACTOR, PROTOCOL, lr_drop_epoch  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared 2-core machine two threads
    spin against other processes (measured: 7x the CPU time of one thread under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# =============================================================================================
# Helpers
# =============================================================================================
@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """Run the reference in float64: its accumulators are `torch.tensor(0.0)` (default dtype)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


@functools.cache
def _reference_defaults() -> argparse.Namespace:
    """The defaults of main.py's command line: run main() until its parse_args, then stop."""

    class _Stop(Exception):
        pass

    captured: dict[str, argparse.Namespace] = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        captured["args"] = original(self, *args, **kwargs)
        raise _Stop

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", capture)
        mp.setattr(sys, "argv", ["main.py"])
        with contextlib.suppress(_Stop):
            REF.main.main()
    return captured["args"]


# =============================================================================================
# Defaults and small rules
# =============================================================================================
def test_defaults_match_the_reference_command_line():
    """(The DSA strategy is compared per dataset with what dcclib runs, in
    test_reference_crosscheck_loop.py.)"""
    a = _reference_defaults()
    cfg = CondenseConfig()
    assert (cfg.lr_images, cfg.lr_net) == (a.lr_img, a.lr_net)
    assert (cfg.batch_real, cfg.batch_train) == (a.batch_real, a.batch_train)
    # gamma_o, gamma_i: resolved() scales the paper's lengths to K_o and K_i (the defaults are
    # None); at the paper's K_o = 1000 and K_i = 10 (ipc 1, their default, and ipc 10) they are theirs
    for ipc in (a.ipc, cfg.ipc):
        resolved = CondenseConfig(ipc=ipc).resolved()
        assert (resolved.gamma_outer, resolved.gamma_inner) == (a.outer_warmup, a.inner_warmup), ipc
        assert resolved.inner_iterations == tuple(REF.utils.get_loops(ipc))[0], ipc
    assert cfg.outer_iterations == a.outer_loop
    assert (cfg.distance, a.dis_metric) == ("layerwise", "ours")
    assert (cfg.model, a.model) == ("convnet", "ConvNet")
    # evaluation: their lr_net and batch_train are also the evaluation's lr and batch
    assert (PROTOCOL.lr, PROTOCOL.batch_size) == (a.lr_net, a.batch_train)
    assert EvalConfig().num_nets == a.num_eval
    assert PLAIN_EPOCHS == a.epoch_eval_train


def test_inner_schedule_matches_get_loops():
    for ipc in range(1, 61):
        theirs = tuple(REF.utils.get_loops(ipc))
        if theirs == (0, 0):  # their code has no schedule for this ipc
            assert ipc not in INNER_SCHEDULE, ipc
        else:
            assert INNER_SCHEDULE.get(ipc) == theirs, ipc


def test_dsa_ranges_match_param_diff_aug():
    theirs, ours = REF.utils.ParamDiffAug(), DSAParams()
    assert theirs.aug_mode == "S"  # one family per call: what dcclib implements
    pairs = {
        "brightness": "brightness",
        "saturation": "saturation",
        "contrast": "contrast",
        "ratio_crop_pad": "crop_ratio",
        "ratio_cutout": "cutout_ratio",
        "ratio_scale": "scale",
        "ratio_rotate": "rotate_degrees",
        "prob_flip": "flip_prob",
    }
    for their_name, our_name in pairs.items():
        assert getattr(theirs, their_name) == getattr(ours, our_name), their_name
    assert "_".join(REF.utils.AUGMENT_FNS) == DSA_FULL  # the families and their order


# =============================================================================================
# 1. The two losses and their gradients (float64)
# =============================================================================================
def _their_matching_loss(net, real_x, real_y, syn, ipc, num_classes, metric, collective):
    """The image-update loss of main.py's inner loop (no DSA), around their utils.match_loss.

    Class-wise: sum over classes of match_loss(g_syn_c, g_real_c). Collective: the real side is
    the running sum of g_real_c / C over the classes, the synthetic side the mean-CE gradient
    over all synthetic images, one match_loss.
    """
    args = SimpleNamespace(dis_metric=metric, device="cpu")
    params = list(net.parameters())
    ce = nn.CrossEntropyLoss()
    loss = torch.tensor(0.0)
    g_real_mean = [0.0 for _ in params]
    for c in range(num_classes):
        xr = real_x[real_y == c]
        g_real = torch.autograd.grad(ce(net(xr), torch.full((len(xr),), c)), params)
        g_real = [g.detach().clone() for g in g_real]
        if collective:
            g_real_mean = [g / float(num_classes) + acc for g, acc in zip(g_real, g_real_mean)]
            continue
        xs = syn[c * ipc : (c + 1) * ipc]
        g_syn = torch.autograd.grad(ce(net(xs), torch.full((ipc,), c)), params, create_graph=True)
        loss = loss + REF.utils.match_loss(g_syn, g_real, args)
    if collective:
        ys = torch.arange(num_classes).repeat_interleave(ipc)
        g_syn = torch.autograd.grad(ce(net(syn), ys), params, create_graph=True)
        loss = loss + REF.utils.match_loss(g_syn, g_real_mean, args)
    return loss


_METRICS = {"ours": "layerwise", "mse": "mse", "cos": "cos"}
# dcclib's two ways of computing each loss (same numbers up to rounding); dcc_loss has a mode
# argument in newer versions only
_DC_MODES = ("loop", "vmap")
_DCC_MODES = ("loop", "vmap") if "mode" in inspect.signature(dcc_loss).parameters else (None,)


@pytest.mark.parametrize("norm", ["instancenorm", "layernorm", "batchnorm"])
@pytest.mark.parametrize("counts", [(8, 8, 8), (5, 8, 6)], ids=["equal", "unequal"])
def test_losses_and_gradients_match(norm, counts):
    """Every metric x loss x dcclib mode on one network; all results are reported together."""
    num_classes, ipc, size = 3, 2, (28, 28)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10)
        theirs = REF.networks.ConvNet(1, num_classes, 16, 2, "relu", norm, "avgpooling", im_size=size)
        if norm == "batchnorm":  # frozen BatchNorm (eval mode) with non-trivial statistics
            for m in theirs.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
        ours = ConvNet(1, num_classes, width=16, depth=2, norm=norm, image_size=size)
        ours.load_state_dict(theirs.state_dict())
        real_y = torch.arange(num_classes).repeat_interleave(torch.tensor(counts))
        real_x = torch.randn(len(real_y), 1, *size, dtype=F64)
        syn0 = torch.randn(num_classes * ipc, 1, *size, dtype=F64)
    theirs, ours = theirs.double(), ours.double()
    train = norm != "batchnorm"  # BatchNorm is matched frozen, as in main.py
    theirs.train(train)
    ours.train(train)
    syn_y = torch.arange(num_classes).repeat_interleave(ipc)
    report, failures = [], []
    for metric, distance in _METRICS.items():
        for collective in (False, True):
            syn_ref = syn0.clone().requires_grad_(True)
            with _default_dtype(F64):
                loss_ref = _their_matching_loss(
                    theirs, real_x, real_y, syn_ref, ipc, num_classes, metric, collective
                )
                (grad_ref,) = torch.autograd.grad(loss_ref, syn_ref)
            assert loss_ref.dtype == F64
            for mode in _DCC_MODES if collective else _DC_MODES:
                syn = syn0.clone().requires_grad_(True)
                args = (ours, real_x, real_y, syn, syn_y, list(counts), [ipc] * num_classes, distance)
                if collective:
                    loss = dcc_loss(*args) if mode is None else dcc_loss(*args, mode=mode)
                else:
                    loss = dc_loss(*args, mode)
                (grad,) = torch.autograd.grad(loss, syn)
                loss_rel = abs(loss.item() - loss_ref.item()) / abs(loss_ref.item())
                grad_rel = _rel(grad, grad_ref)
                what = f"{metric} {'DCC' if collective else 'DC'}/{mode}"
                report.append(f"{what}: loss {loss_rel:.1e}, grad {grad_rel:.1e}")
                if not (loss_rel < 1e-8 and grad_rel < 1e-10):
                    failures.append(
                        f"{what}: loss rel diff {loss_rel:.2e}, gradient max rel diff {grad_rel:.2e}"
                    )
    print(f"[{norm}, counts {counts}] relative differences: " + "; ".join(report))
    assert not failures, f"{norm} ConvNet, real counts {counts}: " + "; ".join(failures)


# =============================================================================================
# 2. Every model with a counterpart in utils.get_network
# =============================================================================================
MODEL_COUNTERPARTS = {
    "convnet": "ConvNet",
    **{f"convnet_w{w}": f"ConvNetW{w}" for w in (32, 64, 128, 256)},
    **{f"convnet_d{d}": f"ConvNetD{d}" for d in (1, 2, 3, 4)},
    "convnet_sigmoid": "ConvNetAS",
    "convnet_relu": "ConvNetAR",
    "convnet_leakyrelu": "ConvNetAL",
    "convnet_nopool": "ConvNetNP",
    "convnet_maxpool": "ConvNetMP",
    "convnet_avgpool": "ConvNetAP",
    "convnet_nonorm": "ConvNetNN",
    "convnet_bn": "ConvNetBN",
    "convnet_ln": "ConvNetLN",
    "convnet_in": "ConvNetIN",
    "convnet_gn": "ConvNetGN",
    "mlp": "MLP",
    "lenet": "LeNet",
    "alexnet": "AlexNet",
    "vgg11": "VGG11",
    "vgg11_bn": "VGG11BN",
    "resnet18": "ResNet18",
    "resnet18_bn": "ResNet18BN",  # the strided ResNet with BatchNorm (not ResNet18BN_AP)
}
NO_COUNTERPART: set[str] = set()  # registry models the original does not have
_SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}


def _their_key(model: str, key: str) -> str:
    """The original's name of our state-dict entry `key` (the stated mapping).

    ResNet18: our blocks are one Sequential `layers.k` = their `layer{k//2+1}.{k%2}`; MLP and
    LeNet: our `classifier` = their `fc_3`; AlexNet: our `classifier` = their `fc`. All other
    names are equal.
    """
    if model.startswith("resnet18"):
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if m:
            k = int(m[1])
            return f"layer{k // 2 + 1}.{k % 2}.{m[2]}"
    if key.startswith("classifier."):
        rest = key[len("classifier.") :]
        if model in ("mlp", "lenet"):
            return f"fc_3.{rest}"
        if model == "alexnet":
            return f"fc.{rest}"
    return key


def _their_network(name: str, channels: int, num_classes: int, size: tuple[int, int]) -> nn.Module:
    """utils.get_network(name) on the CPU (it re-seeds the global RNG from the clock: forked)."""
    with torch.random.fork_rng(devices=[]), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "device_count", lambda: 0)
        net = REF.utils.get_network(name, channels, num_classes, size)
    return net.cpu()


def test_every_registry_model_is_classified():
    unknown = set(list_models()) - set(MODEL_COUNTERPARTS) - NO_COUNTERPART
    assert not unknown, f"map these registry models to their utils.get_network names: {sorted(unknown)}"


@pytest.mark.parametrize("shape", list(_SHAPES), ids=list(_SHAPES))
@pytest.mark.parametrize("model", sorted(MODEL_COUNTERPARTS))
def test_model_matches_original(model, shape):
    c, h, w = _SHAPES[shape]
    theirs = _their_network(MODEL_COUNTERPARTS[model], c, 10, (h, w)).double()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        ours = create_model(model, c, 10, (h, w)).double()
        x = torch.randn(3, c, h, w, dtype=F64)
    their_sd, our_sd = theirs.state_dict(), ours.state_dict()
    mapped = [(_their_key(model, k), tuple(v.shape)) for k, v in our_sd.items()]
    assert mapped == [(k, tuple(v.shape)) for k, v in their_sd.items()]
    ours.load_state_dict({k: their_sd[_their_key(model, k)] for k in our_sd})
    rels = {}
    for train in (False, True):  # train mode last: BatchNorm updates its running statistics
        theirs.train(train)
        ours.train(train)
        with torch.no_grad():
            expected = theirs(x.clone())
            got = ours(x.clone())
        assert got.shape == expected.shape == (3, 10)
        rels["train" if train else "eval"] = rel = _rel(got, expected)
        assert rel < 1e-10, f"{model} ({'train' if train else 'eval'}): max rel diff {rel:.2e}"
    print(f"[{model}, {shape}] output max rel diff: eval {rels['eval']:.1e}, train {rels['train']:.1e}")
    their_sd = theirs.state_dict()
    for k, v in ours.state_dict().items():  # the running statistics after the train-mode pass
        assert torch.allclose(v, their_sd[_their_key(model, k)], rtol=1e-10, atol=1e-12), k


# =============================================================================================
# 3. DSA: each family with a fixed draw
# =============================================================================================
class _OldAffineF:
    """torch.nn.functional as the original saw it: affine grids with align_corners=True.

    (PyTorch's default before 1.3; the original calls affine_grid/grid_sample without it.)
    """

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def affine_grid(theta, size, align_corners=True):
        return F.affine_grid(theta, size, align_corners=align_corners)

    @staticmethod
    def grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True):
        return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def _run_their_dsa(x: torch.Tensor, strategy: str, seed: int) -> tuple[torch.Tensor, list]:
    """Their DiffAugment (Siamese for seed >= 0), recording every torch.rand/randint result."""
    calls: list[tuple[str, torch.Tensor]] = []
    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # the per-sample mode draws from the global generator
        for name in ("rand", "randint"):
            original = getattr(torch, name)

            def record(*args, _original=original, _name=name, **kwargs):
                out = _original(*args, **kwargs)
                calls.append((_name, out.detach().clone()))
                return out

            mp.setattr(torch, name, record)
        mp.setattr(REF.utils, "F", _OldAffineF())
        out = REF.utils.DiffAugment(x, strategy, seed=seed, param=REF.utils.ParamDiffAug())
    return out, calls


# The random numbers each family draws, in order (utils.rand_*), and nothing else.
_DRAWS = {
    "color": ["rand", "rand", "rand"],  # brightness, saturation, contrast
    "crop": ["randint", "randint"],  # translation x (rows), y (columns)
    "cutout": ["randint", "randint"],  # offset x (rows), y (columns)
    "flip": ["rand"],
    "scale": ["rand", "rand"],  # sx, sy
    "rotate": ["rand"],
}


def _draw_from_calls(calls, strategy: str, n: int, siamese: bool) -> tuple[str, DSADraw]:
    """Our DSADraw holding the numbers their DiffAugment drew (entry 0 for all when Siamese)."""
    families = strategy.split("_")
    kind, fam = calls[0]
    assert kind == "randint" and fam.numel() == 1
    family = families[int(fam)]
    rest = calls[1:]
    assert [k for k, _ in rest] == _DRAWS[family], f"{family}: their draws {[k for k, _ in rest]}"
    vals = [v.reshape(-1)[:n] for _, v in rest]
    if siamese:
        vals = [v[:1].expand(n).clone() for v in vals]
    p = REF.utils.ParamDiffAug()
    draw = DSADraw(
        family=torch.full((n,), families.index(family), dtype=torch.long),
        brightness=torch.zeros(n),
        saturation=torch.ones(n),
        contrast=torch.ones(n),
        crop=torch.zeros(n, 2, dtype=torch.long),
        cutout=torch.zeros(n, 2, dtype=torch.long),
        flip=torch.zeros(n, dtype=torch.bool),
        scale=torch.ones(n, 2),
        rotate=torch.zeros(n),
    )
    if family == "color":  # the same float32 expressions as rand_brightness/saturation/contrast
        draw.brightness = (vals[0] - 0.5) * p.brightness
        draw.saturation = vals[1] * p.saturation
        draw.contrast = vals[2] + p.contrast
    elif family == "crop":
        draw.crop = torch.stack(vals, 1)
    elif family == "cutout":
        draw.cutout = torch.stack(vals, 1)
    elif family == "flip":
        draw.flip = vals[0] < p.prob_flip
    elif family == "scale":
        lo = 1.0 / p.ratio_scale
        draw.scale = torch.stack([v * (p.ratio_scale - lo) + lo for v in vals], 1)
    elif family == "rotate":
        # Theirs: theta = (U - 0.5) * 2 * 15 / 180 * pi (radians) with the matrix
        # [[cos, -sin], [sin, cos]]; ours takes degrees with [[cos, sin], [-sin, cos]]: the
        # same rotation is our angle -theta (a sign convention; the range is symmetric).
        theta = (vals[0] - 0.5) * 2 * p.ratio_rotate / 180 * float(np.pi)
        draw.rotate = -(theta.double() * 180 / math.pi).float()
    return family, draw


_EXACT = ("crop", "cutout", "flip")  # gathers and masks: bit-for-bit


@pytest.mark.parametrize("siamese", [True, False], ids=["siamese", "per-sample"])
@pytest.mark.parametrize("shape", list(_SHAPES), ids=list(_SHAPES))
@pytest.mark.parametrize("family", list(_DRAWS))
def test_dsa_family_matches(family, shape, siamese):
    n, (c, h, w) = 5, _SHAPES[shape]
    worst: dict[str, float] = {}
    for seed in (0, 7, 123):
        x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))
        weights = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed + 1))
        x_ref = x.clone().requires_grad_(True)
        out_ref, calls = _run_their_dsa(x_ref, family, seed if siamese else -1)
        (grad_ref,) = torch.autograd.grad((out_ref * weights).sum(), x_ref)
        _, draw = _draw_from_calls(calls, family, n, siamese)
        runs = {"apply_dsa": functools.partial(apply_dsa, draw=draw, strategy=family, params=DSAParams())}
        if not siamese:  # the per-sample path of training: dsa_augment with the draw injected
            runs["dsa_augment"] = functools.partial(_dsa_augment_with, draw, strategy=family)
        for name, run in runs.items():
            x_ours = x.clone().requires_grad_(True)
            out = run(x_ours)
            (grad,) = torch.autograd.grad((out * weights).sum(), x_ours)
            d_out, d_grad = (out - out_ref).abs().max().item(), (grad - grad_ref).abs().max().item()
            worst[name] = max(worst.get(name, 0.0), d_out, d_grad)
            if family in _EXACT:
                assert torch.equal(out, out_ref), f"{name} {family} seed {seed}: max abs diff {d_out:.2e}"
                assert torch.equal(grad, grad_ref), f"{name} {family} seed {seed}: gradient {d_grad:.2e}"
            else:
                assert d_out < 1e-5, f"{name} {family} seed {seed}: max abs diff {d_out:.2e}"
                assert d_grad < 1e-5, f"{name} {family} seed {seed}: gradient max abs diff {d_grad:.2e}"
    mode = "siamese" if siamese else "per-sample"
    print(f"[{family}, {shape}, {mode}] max abs diff of output and input gradient: {worst}")


def _dsa_augment_with(draw: DSADraw, x: torch.Tensor, strategy: str) -> torch.Tensor:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dcclib.augment, "sample_dsa", lambda *args, **kwargs: draw)
        return dsa_augment(x, strategy, DSAParams())


def test_dsa_full_strategy_family_choice_matches():
    """With the full strategy, their family index (one torch.randint) means the same family."""
    n, seen = 4, set()
    for seed in range(40):
        x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        out_ref, calls = _run_their_dsa(x, DSA_FULL, seed)
        family, draw = _draw_from_calls(calls, DSA_FULL, n, siamese=True)
        seen.add(family)
        out = apply_dsa(x, draw, DSA_FULL, DSAParams())
        diff = (out - out_ref).abs().max().item()
        assert diff < 1e-5, f"seed {seed} ({family}): max abs diff {diff:.2e}"
    assert seen == set(_DRAWS), f"families drawn: {sorted(seen)}"


@pytest.mark.parametrize("family", ["scale", "rotate"])
def test_dsa_affine_convention_does_not_matter_on_square_images(family):
    """Their scale/rotate on today's PyTorch (align_corners=False in both affine_grid and
    grid_sample) equal dcclib's align_corners=True up to float rounding: for a transform about
    the centre without translation, both conventions sample the same pixel coordinates when the
    image is square and both calls agree. (The convention would matter for H != W.)"""
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    _, calls = _run_their_dsa(x, family, 11)
    _, draw = _draw_from_calls(calls, family, 4, siamese=True)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # PyTorch warns about the changed default
        out_today = REF.utils.DiffAugment(x, family, seed=11, param=REF.utils.ParamDiffAug())
    diff = (apply_dsa(x, draw, family, DSAParams()) - out_today).abs().max().item()
    assert diff < 1e-4, f"{family}: max abs diff {diff:.2e}"


# =============================================================================================
# 4. The evaluation's lr schedule
# =============================================================================================
def _their_schedule(epochs: int) -> list[tuple[float, bool, float, float]]:
    """(lr, new optimiser?, momentum, weight decay) of every training pass of evaluate_synset."""
    passes = []

    def fake_epoch(mode, dataloader, net, optimizer, criterion, args, aug):
        if mode == "train":
            g = optimizer.param_groups[0]
            passes.append((optimizer, g["lr"], g["momentum"], g["weight_decay"]))
        return 0.0, 0.0

    defaults = _reference_defaults()
    args = SimpleNamespace(
        device="cpu",
        lr_net=defaults.lr_net,
        batch_train=defaults.batch_train,
        epoch_eval_train=epochs,
        dsa=False,
        dc_aug_param=None,
    )
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(None):
        mp.setattr(REF.utils, "epoch", fake_epoch)
        REF.utils.evaluate_synset(0, nn.Linear(4, 2), torch.randn(6, 4), torch.arange(6) % 2, None, args)
    return [
        (lr, i == 0 or opt is not passes[i - 1][0], mom, wd) for i, (opt, lr, mom, wd) in enumerate(passes)
    ]


def _our_schedules(epochs: int) -> dict[str, list[tuple[float, bool, float, float]]]:
    """The same record from dcclib's training loops: sequential (one optimiser step per pass,
    the batch holds the whole set) and batched (`sgd_step`; a new optimiser = no momentum yet)."""
    from tiny import tiny_dataset

    data = tiny_dataset(num_classes=3, per_class=2, size=8, channels=1)
    images, labels = data.train_images, data.train_labels
    sequential, stacked = [], []

    def recording_optimizer(params, lr, momentum, weight_decay):
        opt = protocol.protocol_optimizer(params, lr, momentum, weight_decay)
        step = opt.step

        def recorded_step(*args, **kwargs):
            g = opt.param_groups[0]
            fresh = not sequential or sequential[-1][0] is not opt
            sequential.append((opt, g["lr"], fresh, g["momentum"], g["weight_decay"]))
            return step(*args, **kwargs)

        opt.step = recorded_step
        return opt

    sgd_step = dcclib.batched.sgd_step

    def recording_sgd_step(params, grads, buffers, lr, momentum, weight_decay):
        stacked.append((lr, buffers is None, momentum, weight_decay))
        return sgd_step(params, grads, buffers, lr, momentum, weight_decay)

    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        mp.setattr(dcclib.evaluate, "protocol_optimizer", recording_optimizer)
        mp.setattr(dcclib.batched, "sgd_step", recording_sgd_step)
        for nets in (1, 2):
            cfg = EvalConfig(
                models=("mlp",), num_nets=nets, parallel_nets=nets, epochs=epochs, augment="none"
            )
            evaluate_set(images, labels, data, "dc", cfg)
    return {"sequential": [(lr, fresh, m, wd) for _, lr, fresh, m, wd in sequential], "batched": stacked}


def _same_schedule(a: list[tuple], b: list[tuple]) -> bool:
    """Equal length, lrs / momenta / weight decays equal to 1e-12, the same new-optimiser flags."""
    return len(a) == len(b) and all(
        fa == fb and all(math.isclose(x, y, rel_tol=1e-12) for x, y in ((la, lb), (ma, mb), (wa, wb)))
        for (la, fa, ma, wa), (lb, fb, mb, wb) in zip(a, b)
    )


@pytest.mark.parametrize("epochs", [1, 2, 3, 4, 5, 8, 11])  # dcclib refuses E = 0
def test_evaluation_lr_schedule_matches(epochs):
    theirs = _their_schedule(epochs)
    drop = lr_drop_epoch(epochs)
    spec = [
        (
            PROTOCOL.lr * (LR_DROP_FACTOR if p > drop else 1.0),
            p == 0 or p == drop + 1,
            PROTOCOL.momentum,
            PROTOCOL.weight_decay,
        )
        for p in range(epochs + 1)  # E + 1 passes
    ]
    assert _same_schedule(theirs, spec), f"E={epochs}: reference {theirs} vs dcclib.protocol {spec}"
    for path, ours in _our_schedules(epochs).items():
        assert _same_schedule(ours, theirs), f"E={epochs}, {path} training: {ours} vs reference {theirs}"


# =============================================================================================
# 5. One whole outer iteration: their main() against dcclib.condense.condense
# =============================================================================================
# Why float64: gradient matching through ReLU networks is discontinuous in the images (a
# pre-activation crossing 0 switches a unit's second-order term), so float32 rounding
# differences of 1e-7 between two correct implementations grow into jumps of 1e-3..5e-2 within
# the 10 image updates of ipc 1 (measured: dcclib against itself with the images scaled by
# 1 + 1e-7, or with another shuffle of the 3-image training batch). In float64 such crossings
# are rare enough to compare tightly. The original runs in float64 here by making its float32
# casts mean float64 (`_reference_in_float64`); a float32 run with a smooth (sigmoid) ConvNet
# checks the float32 path, where differences stay at rounding level.
_PER_CLASS, _CLASSES, _MNIST = 16, 3, (1, 28, 28)


class _QuietLogging:
    """Stands in for `logging` inside main.py (no handlers on the root logger, no log file)."""

    INFO = 20

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class _TorchWithFloat64:
    """main.py's `torch`, where `torch.float` (the dtype of the synthetic images) is float64."""

    float = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def _reference_in_float64(mp: pytest.MonkeyPatch):
    """The original's float32 casts mean float64: main.py's `torch.float`, the `.float()` of
    utils.TensorDataset and utils.epoch, and the default dtype (its `torch.tensor(0.0)` sums)."""

    def as_float64(self, memory_format=torch.preserve_format):
        return self.to(torch.float64, memory_format=memory_format)

    mp.setattr(REF.main, "torch", _TorchWithFloat64())
    mp.setattr(torch.Tensor, "float", as_float64)
    with _default_dtype(torch.float64):
        yield


class _FirstImages(ImageDataset):
    """sample_real(n) returns the first n images of each class in stored order: the same
    images as their get_images with np.random.permutation made the identity."""

    def sample_real(self, per_class, generator=None):
        ids = torch.cat([idx[:per_class] for idx in self.class_indices])
        return self.train_images[ids], self.train_labels[ids]


def _tiny_images(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(_CLASSES, *_MNIST, generator=g, dtype=dtype)
    labels = torch.arange(_CLASSES).repeat_interleave(_PER_CLASS)
    images = protos[labels] + 0.7 * torch.randn(len(labels), *_MNIST, generator=g, dtype=dtype)
    return images, labels


def _fixed_networks(
    norm: str, act: str, width: int, dtype: torch.dtype, seed: int = 2022
) -> tuple[nn.Module, nn.Module]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        theirs = REF.networks.ConvNet(
            _MNIST[0], _CLASSES, width, 3, act, norm, "avgpooling", im_size=_MNIST[1:]
        )
        ours = ConvNet(_MNIST[0], _CLASSES, width=width, depth=3, act=act, norm=norm, image_size=_MNIST[1:])
    ours.load_state_dict(theirs.state_dict())
    return theirs.to(dtype), ours.to(dtype)


def _run_their_main(
    tmp_path: Path,
    net: nn.Module,
    images,
    labels,
    extra: list[str],
    outer_loop: int = 1,
    setup: Callable[[pytest.MonkeyPatch], None] | None = None,
) -> torch.Tensor:
    """main.py's main() for `outer_loop` outer iterations; the synthetic set it saved.

    Every network it draws is a copy of `net`; `setup`, when given, adds or overrides patches
    (after the ones here, inside the same float64 context).
    """
    c, h, w = images.shape[1:]
    train = [(images[i], int(labels[i])) for i in range(len(labels))]

    def get_dataset(dataset, data_path, imagenet_class_list=None):
        names = [str(k) for k in range(_CLASSES)]
        return c, (h, w), _CLASSES, names, [0.0] * c, [1.0] * c, train, train, None

    argv = ["main.py", "--dataset", "MNIST", "--model", "ConvNet", "--method", "DC", "--ipc", "1"]
    argv += ["--outer_loop", str(outer_loop), "--num_exp", "1", "--num_eval", "1", "--eval_mode", "M"]
    argv += ["--batch_real", str(_PER_CLASS), "--batch_train", "256"]
    argv += ["--data_path", str(tmp_path / "data"), "--save_path", str(tmp_path / "result"), *extra]
    main = REF.main
    with (
        pytest.MonkeyPatch.context() as mp,
        torch.random.fork_rng(devices=[]),
        contextlib.ExitStack() as stack,
    ):
        mp.setattr(main, "get_dataset", get_dataset)
        mp.setattr(main, "get_network", lambda *args, **kwargs: copy.deepcopy(net))
        mp.setattr(main, "evaluate_synset", lambda it, net, x, y, loader, args: (net, 0.0, 0.0))
        mp.setattr(main, "logging", _QuietLogging())
        mp.setattr(np.random, "permutation", lambda a: np.arange(a) if isinstance(a, int) else np.asarray(a))
        mp.setattr(torch.cuda, "is_available", lambda: False)
        mp.setattr(sys, "argv", argv)
        if images.dtype == torch.float64:
            stack.enter_context(_reference_in_float64(mp))
        if setup is not None:
            setup(mp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main.main()
    # `--eval_mode M` makes eval_it_pool == [outer_loop]: K_o outer iterations, then the save
    (saved_file,) = (tmp_path / "result").glob("res_*_MNIST_ConvNet_1ipc.pt")
    saved = torch.load(saved_file, weights_only=False)
    (syn, syn_labels), *_ = saved["data"]
    assert torch.equal(syn_labels, torch.arange(_CLASSES))
    assert syn.dtype == images.dtype
    return syn


_DC = (dict(method="dc"), ["--outer_warmup", "1"])  # main.py asserts outer_warmup <= outer_loop
_DCC = (dict(method="dcc", gamma_outer=0), ["--contrast", "--outer_warmup", "0"])  # collective
_DCC_WARMUP = (  # steps 0-3 class-wise, 4-9 collective
    dict(method="dcc", gamma_outer=1, gamma_inner=4),
    ["--contrast", "--outer_warmup", "1", "--inner_warmup", "4"],
)
_OUTER_CASES = {
    # id: (norm, activation, dtype, (dcclib settings, main.py flags))
    "dc-instancenorm": ("instancenorm", "relu", F64, _DC),
    "dcc-instancenorm": ("instancenorm", "relu", F64, _DCC),
    "dcc-warmup-instancenorm": ("instancenorm", "relu", F64, _DCC_WARMUP),
    "dc-batchnorm": ("batchnorm", "relu", F64, _DC),
    "dcc-batchnorm": ("batchnorm", "relu", F64, _DCC),
    "dcc-warmup-sigmoid-float32": ("instancenorm", "sigmoid", torch.float32, _DCC_WARMUP),
}
_TOLERANCE = {F64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-5)}
_WIDTH = 32  # ConvNet-32 (their ConvNetW32 layout): a few seconds per case on a 2-core CPU


@pytest.mark.parametrize("case", list(_OUTER_CASES))
def test_one_outer_iteration_matches_main(case, tmp_path):
    norm, act, dtype, (settings, flags) = _OUTER_CASES[case]
    images, labels = _tiny_images(dtype)
    theirs_net, ours_net = _fixed_networks(norm, act, _WIDTH, dtype)
    syn_ref = _run_their_main(tmp_path, theirs_net, images, labels, flags)

    data = _FirstImages(
        "tiny-mnist-shaped", images, labels, images, labels, [str(k) for k in range(_CLASSES)],
        (0.0,), (1.0,), "tests/test_reference_crosscheck.py",
    )  # fmt: skip
    model = "convnet_bn" if norm == "batchnorm" else f"convnet_w{_WIDTH}"
    cfg = CondenseConfig(
        dataset=data.name,
        ipc=1,
        outer_iterations=1,
        batch_real=_PER_CLASS,
        batch_train=256,
        model=model,
        seed=0,
        **settings,
    )  # fmt: skip  (lr_images 0.1, momentum 0.5, lr_net 0.01 and K_i, T = get_loops(1): defaults)
    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        mp.setattr(dcclib.condense, "create_model", lambda *args, **kwargs: copy.deepcopy(ours_net))
        result = condense(cfg, data, progress=False)
    syn = result.images
    assert syn.dtype == dtype

    initial = images[::_PER_CLASS]  # the first image of each class: both start there
    moved = (syn_ref - initial).abs().max().item()
    assert moved > 1e-2, f"the reference barely moved the images ({moved:.1e}): the check would be empty"
    diff = (syn - syn_ref).abs().max().item()
    assert torch.allclose(syn, syn_ref, **_TOLERANCE[dtype]), (
        f"{case}: final synthetic images differ from main.py's: max abs diff {diff:.3e} "
        f"(the iteration moved them by up to {moved:.3e})"
    )
    print(f"[{case}] max abs diff {diff:.2e}, images moved up to {moved:.2e}")
