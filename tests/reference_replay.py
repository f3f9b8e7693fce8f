"""Their DSA draws and shuffles, recorded and replayed into dcclib (cross-check helpers).

Used by tests/test_reference_crosscheck_loop.py and tests/test_reference_crosscheck_eval.py;
importing it needs DCC_REFERENCE_DIR, as tests/test_reference_crosscheck.py (it skips the
importing test module otherwise). None of the authors' code is copied here: their modules
are imported from that directory at test time (`REF`).

Their DiffAugment draws from the global torch RNG, reseeded from the clock (main.py) or not
at all (network training); every torch.rand / torch.randint result inside a call is recorded
and turned into a `dcclib.augment.DSADraw`, which dcclib then draws instead of its own
(`sample_dsa`), its `dsa_augment` drawing the recorded family from a generator. The order in
which their DataLoader shuffles the synthetic set is recorded too and replayed into dcclib's
`torch.randperm`, so per-sample draws meet the same images.
"""

from __future__ import annotations

import copy
import math
from dataclasses import fields

import numpy as np
import pytest
import torch
from test_reference_crosscheck import REF, _draw_from_calls, _OldAffineF, _TorchWithFloat64
from torch import nn

import dcclib.augment
import dcclib.condense
from dcclib.augment import DSADraw, parse_strategy


class Clock:
    """main.py's `time` (only its DSA seeds read it): a clock that advances 0.7919 s a call."""

    def __init__(self):
        self.now = 1.6e9

    def time(self) -> float:
        self.now += 0.7919
        return self.now


class OneImageParam:
    """Their ParamDiffAug for a one-image batch: there the Siamese copy `t[:] = t[0]` is the
    identity, and today's PyTorch refuses it (overlapping memory), so it is skipped."""

    def __init__(self, param):
        self.__dict__.update(vars(param))

    @property
    def Siamese(self) -> bool:  # noqa: N802 (their attribute)
        return False

    @Siamese.setter
    def Siamese(self, value: bool) -> None:  # noqa: N802
        pass


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The cross-check modules that import this fixture run with one torch thread (repeatable sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def record_their_dsa(mp: pytest.MonkeyPatch, calls: list, float64: bool = True) -> None:
    """Their DiffAugment (main's and utils' names), recording each call as (seed, batch size,
    [(torch.rand | torch.randint, result), ...]). With `float64` their affine matrices are
    float64 too (utils' `torch.float`); grids use align_corners=True as the PyTorch they wrote
    for. The output is passed on in the standard layout: their crop of a one-channel batch
    comes back with channels-last strides on today's PyTorch, which their ConvNet's `view`
    refuses (same values)."""
    active: list[list] = []
    for name in ("rand", "randint"):
        original = getattr(torch, name)

        def record(*args, _original=original, _name=name, **kwargs):
            out = _original(*args, **kwargs)
            if active:
                active[-1].append((_name, out.detach().clone()))
            return out

        mp.setattr(torch, name, record)
    their_diff_augment = REF.utils.DiffAugment

    def diff_augment(x, strategy="", seed=-1, param=None):
        active.append([])
        try:
            param = OneImageParam(param) if x.shape[0] == 1 else param
            out = their_diff_augment(x, strategy, seed=seed, param=param)
        finally:
            draws = active.pop()
        calls.append((seed, x.shape[0], draws))
        return out.clone(memory_format=torch.contiguous_format)

    mp.setattr(REF.main, "DiffAugment", diff_augment)
    mp.setattr(REF.utils, "DiffAugment", diff_augment)
    mp.setattr(REF.utils, "F", _OldAffineF())
    mp.setattr(REF.main, "time", Clock())
    if float64:
        mp.setattr(REF.utils, "torch", _TorchWithFloat64())


def record_their_shuffles(mp: pytest.MonkeyPatch, indices: list[int]) -> None:
    """main.py's TensorDataset, recording the indices its DataLoader asks for (in order)."""

    class Recording(REF.utils.TensorDataset):
        def __getitem__(self, index):
            indices.append(int(index))
            return super().__getitem__(index)

    mp.setattr(REF.main, "TensorDataset", Recording)


def dsa_draw(calls: list, strategy: str, n: int, siamese: bool) -> tuple[str, DSADraw]:
    """`_draw_from_calls`, with the rotation angle kept in float64 (the helper rounds it)."""
    family, draw = _draw_from_calls(calls, strategy, n, siamese)
    if family == "rotate":
        u = calls[1][1].reshape(-1)[:n].double()
        u = u[:1].expand(n) if siamese else u
        theta = (u - 0.5) * 2 * REF.utils.ParamDiffAug().ratio_rotate / 180 * float(np.pi)  # theirs
        draw.rotate = -(theta * 180 / math.pi)  # our angle (degrees, opposite sign convention)
    return family, draw


def cat_draws(draws: list[DSADraw]) -> DSADraw:
    return DSADraw(**{f.name: torch.cat([getattr(d, f.name) for d in draws]) for f in fields(DSADraw)})


def replay_events(calls: list, strategy: str, classes: int) -> tuple[list, set[str]]:
    """Their calls as dcclib's draws, in order: per image update one Siamese draw of `classes`
    entries (class c: the numbers of its real-image call, which its synthetic-image call with
    the same seed repeats), per training batch one per-sample draw. Also the families seen."""
    events, families, i = [], set(), 0
    while i < len(calls):
        seed, n, draws = calls[i]
        if seed == -1:  # a batch of the network training: per-sample parameters
            family, draw = dsa_draw(draws, strategy, n, siamese=False)
            events.append(("train", draw))
            families.add(family)
            i += 1
            continue
        per_class = []
        for (s_real, _, real), (s_syn, _, syn) in zip(
            calls[i : i + 2 * classes : 2], calls[i + 1 : i + 2 * classes : 2]
        ):
            assert s_real == s_syn != -1, "a class's real and synthetic images share one seed"
            assert [(k, v.reshape(-1)[0].item()) for k, v in real] == [
                (k, v.reshape(-1)[0].item()) for k, v in syn
            ]
            family, draw = dsa_draw(real, strategy, 1, siamese=True)
            per_class.append(draw)
            families.add(family)
        assert len(per_class) == classes
        events.append(("siamese", cat_draws(per_class)))
        i += 2 * classes
    return events, families


def generator_drawing(value: int, k: int) -> torch.Generator:
    """A CPU generator whose first torch.randint(k, (1,)) is `value`."""
    for seed in range(10_000):
        if int(torch.randint(k, (1,), generator=torch.Generator().manual_seed(seed))) == value:
            return torch.Generator().manual_seed(seed)
    raise AssertionError(f"no seed draws {value} of {k}")


def replay_into_dcclib(
    mp: pytest.MonkeyPatch, events: list, orders: list[torch.Tensor], caller=dcclib.condense
) -> list:
    """dcclib draws `events` (sample_dsa) and shuffles by `orders` (torch.randperm); dsa_augment
    (as `caller` calls it) runs as is, its family drawn from a generator that yields the
    recorded one. Returns the events not yet drawn."""
    queue, training = list(events), [False]

    def sample_dsa(n, strategy, params=None, *, image_size, device, generator=None, shared_family=False):
        assert queue, "dcclib asked for more DSA draws than their main() made"
        kind, draw = queue.pop(0)
        assert kind == ("train" if training[0] else "siamese") and len(draw) == n, (kind, n)
        return draw.to(device)

    dsa_augment = dcclib.augment.dsa_augment

    def replay_dsa_augment(x, strategy, params):
        family = int(queue[0][1].family[0])
        training[0] = True
        try:
            gen = generator_drawing(family, len(parse_strategy(strategy)))
            return dsa_augment(x, strategy, params, generator=gen)
        finally:
            training[0] = False

    def randperm(n, *args, device=None, **kwargs):
        order = orders.pop(0)
        assert len(order) == n
        return order.to(device)

    mp.setattr(dcclib.augment, "sample_dsa", sample_dsa)
    mp.setattr(dcclib.condense, "sample_dsa", sample_dsa)
    mp.setattr(caller, "dsa_augment", replay_dsa_augment)
    mp.setattr(torch, "randperm", randperm)
    return queue


def their_branches(sizes: list[int], classes: int, ipc: int) -> list[bool]:
    """Per image update: True when collective, from the synthetic forward passes' sizes."""
    steps, i = [], 0
    while i < len(sizes):
        if sizes[i] == classes * ipc:
            steps.append(True)
            i += 1
        else:
            assert sizes[i : i + classes] == [ipc] * classes, sizes[i : i + classes]
            steps.append(False)
            i += classes
    return steps


def spied_networks(mp: pytest.MonkeyPatch, nets: list[nn.Module], log: list[list[int]]) -> None:
    """main.get_network: a copy of nets[k] for outer iteration k, each logging the batch size of
    its forward passes on the synthetic images (the only inputs that require grad)."""
    queue = list(nets)

    def get_network(*args, **kwargs):
        if not queue:  # the evaluation's networks (their evaluate_synset is patched out)
            return copy.deepcopy(nets[0])
        net, sizes = copy.deepcopy(queue.pop(0)), []
        log.append(sizes)
        net.register_forward_pre_hook(
            lambda m, inp: sizes.append(inp[0].shape[0]) if inp[0].requires_grad else None
        )
        return net

    mp.setattr(REF.main, "get_network", get_network)
