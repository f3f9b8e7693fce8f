"""Algorithm 1 as the paper's code runs it: warm-up step counts, BatchNorm matching networks,
the image optimiser's momentum across networks, DSA while the network trains, and when the
network trains. Each test names the regression it catches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_dataset

from dcclib import condense as condense_mod
from dcclib.condense import (
    CondenseConfig,
    condense,
    initial_synthetic,
    iteration_seed,
    simple_warmup_default,
    uses_classwise_loss,
)
from dcclib.errors import UserError
from dcclib.lab.profiles import get_profile
from dcclib.matching import dc_loss
from dcclib.models import create_model


def step_counts(cfg: CondenseConfig) -> tuple[int, int, int]:
    """(class-wise steps, collective steps, networks with both kinds) over the whole run."""
    cfg = cfg.resolved()
    classwise = collective = mixed = 0
    for outer in range(cfg.outer_iterations):
        row = [uses_classwise_loss(cfg, outer, inner) for inner in range(cfg.inner_iterations)]
        classwise += sum(row)
        collective += len(row) - sum(row)
        mixed += any(row) and not all(row)
    return classwise, collective, mixed


# ------------------------------------------------------------------ warm-up (Tables 4 and 5)
@pytest.mark.parametrize(
    "ipc, expected",
    [
        # K_i = 10: bilevel = 250 pure-DC networks then 750 pure-DCC ones; Simple = 5 + 5 per network
        (1, {"bilevel": (2500, 7500, 0), "inner": (5000, 5000, 1000), "none": (0, 10000, 0)}),
        (10, {"bilevel": (2500, 7500, 0), "inner": (5000, 5000, 1000), "none": (0, 10000, 0)}),
        # K_i = 50: bilevel warms up steps 0..9 of the first 250 networks; Simple of every network
        (50, {"bilevel": (2500, 47500, 250), "inner": (10000, 40000, 1000), "none": (0, 50000, 0)}),
    ],
)
def test_warmup_step_counts_at_the_paper_settings(ipc, expected):
    for warmup, counts in expected.items():
        for method in ("dcc", "dsac"):
            assert step_counts(CondenseConfig(method=method, ipc=ipc, warmup=warmup)) == counts, warmup
    k_i = CondenseConfig(ipc=ipc).resolved().inner_iterations
    for method in ("dc", "dsa"):  # class-wise always, whatever the warm-up setting
        assert step_counts(CondenseConfig(method=method, ipc=ipc, warmup="none")) == (1000 * k_i, 0, 0)


def test_simple_warmup_is_never_plain_dc_silently():
    # the default leaves collective steps on every network; at ipc 1 and 10 that is K_i // 2
    assert simple_warmup_default(10) == 5 and simple_warmup_default(50) == 10
    assert CondenseConfig(method="dcc", ipc=10, warmup="inner").resolved().simple_gamma_inner == 5
    for bad in (10, 11):  # every step class-wise: the run would be DC, refused with one line
        with pytest.raises(UserError, match="plain DC"):
            CondenseConfig(method="dcc", ipc=10, warmup="inner", simple_gamma_inner=bad).resolved()
    given = CondenseConfig(method="dcc", ipc=10, warmup="inner", simple_gamma_inner=3)
    assert step_counts(given) == (3000, 7000, 1000)
    # the default follows a shorter gamma_i: min(gamma_i, K_i // 2)
    shorter = CondenseConfig(method="dcc", ipc=10, warmup="inner", gamma_inner=2)
    assert step_counts(shorter) == (2000, 8000, 1000)


def test_profiles_rederive_the_simple_length_from_their_capped_inner_loop():
    cfg = get_profile("smoke").condense_config(CondenseConfig(method="dcc", ipc=10, warmup="inner"))
    assert (cfg.inner_iterations, cfg.simple_gamma_inner) == (2, 1)
    assert step_counts(cfg)[2] == cfg.outer_iterations  # every network has both kinds of steps


# ------------------------------------------------------------------ BatchNorm matching networks
def literal_outer_iteration(cfg, data, syn, opt_img, outer, batchnorm):
    """One outer iteration with the original's BatchNorm handling written out (no DSA).

    original: before every image update, 16 real images per class through the network in
    train mode (running statistics move by momentum 0.1), then BatchNorm in eval mode for the
    matching; the network trains in train mode. frozen: exact statistics once, eval throughout.
    Draws from the same random streams in the same order as the project's loop.
    """
    torch.manual_seed(iteration_seed(cfg.seed, outer))
    net = create_model(cfg.model, data.channels, data.num_classes, data.image_size)
    net.train()
    bn = [m for m in net.modules() if "BatchNorm" in m._get_name()]
    assert bn, "the literal version is for BatchNorm networks"
    if batchnorm == "frozen":
        for m in bn:
            m.reset_running_stats()
            m.momentum = None
        x16, _ = data.sample_real(16)
        net(x16)
        for m in bn:
            m.eval()
    opt_net = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
    counts = [cfg.ipc] * data.num_classes
    for il in range(cfg.inner_iterations):
        if batchnorm == "original":
            assert all(m.momentum == 0.1 for m in bn)
            x16, _ = data.sample_real(16)
            net.train()
            net(x16)
            for m in bn:
                m.eval()
        real_x, real_y = data.sample_real(cfg.batch_real)
        real_counts = [cfg.batch_real] * data.num_classes
        syn_y = torch.arange(data.num_classes).repeat_interleave(cfg.ipc)
        loss = dc_loss(net, real_x, real_y, syn, syn_y, real_counts, counts, "layerwise", "loop")
        opt_img.zero_grad()
        loss.backward()
        opt_img.step()
        if il == cfg.inner_iterations - 1:
            break
        if batchnorm == "original":
            net.train()
        images = syn.detach().clone()
        for _ in range(cfg.net_epochs):
            order = torch.randperm(images.shape[0])
            for start in range(0, images.shape[0], cfg.batch_train):
                idx = order[start : start + cfg.batch_train]
                out = F.cross_entropy(net(images[idx]), syn_y[idx])
                opt_net.zero_grad()
                out.backward()
                opt_net.step()


def bn_config(batchnorm: str) -> CondenseConfig:
    return CondenseConfig(
        dataset="tiny",
        method="dc",
        ipc=2,
        outer_iterations=2,
        inner_iterations=3,
        net_epochs=2,
        batch_real=6,
        batch_train=4,  # several batches per epoch: batch statistics differ per batch
        model="convnet_bn",
        batchnorm=batchnorm,
        classwise_mode="loop",
        seed=5,
    )


@pytest.mark.parametrize("batchnorm", ["original", "frozen"])
def test_batchnorm_networks_match_the_literal_version(batchnorm):
    """Catches: statistics set once instead of before every image update, a momentum other than
    0.1, BatchNorm left frozen (or put in train mode) while the network trains."""
    data = tiny_dataset(per_class=20)
    cfg = bn_config(batchnorm).resolved()
    got = condense(cfg, data, progress=False).images
    syn, _ = initial_synthetic(data, cfg)
    syn.requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    for outer in range(cfg.outer_iterations):
        literal_outer_iteration(cfg, data, syn, opt, outer, batchnorm)
    torch.testing.assert_close(got, syn.detach(), rtol=1e-4, atol=1e-5)


def test_batchnorm_modes_differ_and_the_original_is_the_default():
    assert CondenseConfig().batchnorm == "original"
    data = tiny_dataset(per_class=20)
    a = condense(bn_config("original"), data, progress=False).images
    b = condense(bn_config("frozen"), data, progress=False).images
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(UserError, match="batchnorm"):
        bn_config("sometimes").resolved()


# ------------------------------------------------------------------ the loop around the losses
def small(method: str = "dc", **overrides) -> CondenseConfig:
    base = dict(
        dataset="tiny",
        method=method,
        ipc=2,
        outer_iterations=2,
        inner_iterations=3,
        net_epochs=2,
        batch_real=5,
        batch_train=4,
        model="convnet_w32",
        gamma_outer=1,
        gamma_inner=1,
        seed=1,
    )
    return CondenseConfig(**{**base, **overrides})


def test_image_momentum_carries_across_networks():
    """Catches: the image optimiser (or its momentum buffer) renewed with every network.

    One update per network: x1 = x0 - lr g0, x2 = x1 - lr (m g0 + g1) with SGD's momentum m."""
    data = tiny_dataset()
    cfg = small(inner_iterations=1).resolved()
    grads = []
    final = condense(cfg, data, progress=False, observer=lambda s: grads.append(s.grad.clone())).images
    x0, _ = initial_synthetic(data, cfg)
    g0, g1 = grads
    lr, m = cfg.lr_images, cfg.momentum_images
    expected = x0 - lr * g0 - lr * (m * g0 + g1)
    torch.testing.assert_close(final, expected, rtol=1e-5, atol=1e-6)
    assert (lr * m * g0).abs().max() > 1e-4  # a reset buffer would be visibly different


def spy_on_network_training(monkeypatch):
    """Record, for every train_network call, the synthetic images and the batches the net saw."""
    calls = []
    real = condense_mod.train_network

    def spy(net, optimizer, images, labels, epochs, batch_size, augment=None):
        seen = []
        handle = net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
        try:
            real(net, optimizer, images, labels, epochs, batch_size, augment)
        finally:
            handle.remove()
        calls.append((images.clone(), seen, net.training))

    monkeypatch.setattr(condense_mod, "train_network", spy)
    return calls


def rows_found(batch: torch.Tensor, images: torch.Tensor) -> float:
    """The fraction of the rows of `batch` that are exactly rows of `images`."""
    hits = [any(torch.equal(row, img) for img in images) for row in batch]
    return sum(hits) / len(hits)


@pytest.mark.parametrize("method", ["dc", "dcc", "dsa", "dsac"])
def test_network_trains_between_updates_only_and_with_dsa_for_dsa_methods(monkeypatch, method):
    """Catches: the network trained once more after the last image update (the original trains
    K_i - 1 times per network); DSA missing while the network trains in DSA/DSAC condensation
    (the original's epoch(..., aug=True) augments every training batch); DSA where it is not due."""
    calls = spy_on_network_training(monkeypatch)
    cfg = small(method).resolved()
    condense(cfg, tiny_dataset(), progress=False)
    assert len(calls) == cfg.outer_iterations * (cfg.inner_iterations - 1)
    batches_per_call = cfg.net_epochs * -(-6 // cfg.batch_train)
    assert all(len(seen) == batches_per_call for _, seen, _ in calls)
    found = [rows_found(b, images) for images, seen, _ in calls for b in seen]
    if method in ("dsa", "dsac"):
        assert sum(found) / len(found) < 0.5  # augmented batches: mostly not the images themselves
    else:
        assert found == [1.0] * len(found)  # plain batches of the synthetic images


def test_a_synthetic_set_too_large_to_allocate_is_refused_before_any_work(tmp_path):
    cfg = small(init="noise", ipc=10**9)
    with pytest.raises(UserError, match="lower --ipc"):
        condense(cfg, tiny_dataset(), run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
