"""Stacked training of many evaluation networks (dcclib.batched) against one-after-another training.

Without augmentation the two must give the same weights (same init seeds, same shuffle orders,
torch.optim.SGD's update); with augmentation they must give the same accuracy distribution.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from tiny import tiny_dataset

from dcclib import batched
from dcclib.augment import DSA_FULL
from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.evaluate import (
    EvalConfig,
    _new_network,
    evaluate_set,
    random_subset,
    resolve_parallel_nets,
    train_from_scratch,
)


def noisy_dataset(per_class: int = 30, noise: float = 1.6, seed: int = 0) -> ImageDataset:
    """Three overlapping classes: accuracies stay well below 100% (a distribution to compare)."""
    g = torch.Generator().manual_seed(seed)
    protos = 0.6 * torch.randn(3, 3, 16, 16, generator=g)

    def split(n: int):
        y = torch.arange(3).repeat_interleave(n)
        return protos[y] + noise * torch.randn(len(y), 3, 16, 16, generator=g), y

    (xt, yt), (xe, ye) = split(per_class), split(60)
    return ImageDataset("noisy", xt, yt, xe, ye, ["a", "b", "c"], (0.0,) * 3, (1.0,) * 3, "tests")


def test_sgd_step_is_torch_optim_sgd_with_momentum_reset():
    torch.manual_seed(0)
    init = {"w": torch.randn(4, 3, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    ref = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    stacked = {k: v.clone()[None] for k, v in init.items()}
    lr, bufs = 0.1, None
    opt = torch.optim.SGD(ref.values(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for step in range(7):
        grads = {k: torch.randn_like(v) for k, v in init.items()}
        for k, p in ref.items():
            p.grad = grads[k].clone()
        opt.step()
        bufs = batched.sgd_step(stacked, {k: g[None] for k, g in grads.items()}, bufs, lr, 0.9, 5e-4)
        if step == 3:  # the protocol's decay: lr x0.1 with a new optimiser (momentum reset)
            lr, bufs = lr * 0.1, None
            opt = torch.optim.SGD(ref.values(), lr=lr, momentum=0.9, weight_decay=5e-4)
        for k in init:
            torch.testing.assert_close(stacked[k][0], ref[k].detach(), rtol=0, atol=1e-15)


def _sequential_and_stacked(model, data, epochs, cfg, dtype=torch.float32, n=3, impl="auto"):
    x, y = data.train_images.to(dtype), data.train_labels
    seq, nets, shuffles = [], [], []
    for j in range(n):
        net = _new_network(model, j, data, cfg).to(dtype)
        seq.append(train_from_scratch(net, x, y, epochs, cfg))
    for j in range(n):
        nets.append(_new_network(model, j, data, cfg).to(dtype))
        shuffles.append(batched.clone_default_generator(torch.device("cpu")))
    stack = batched.stack_networks(nets)
    settings = batched.TrainSettings(epochs, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size)
    batched.train_stacked(stack, x, y, shuffles, settings, impl=impl)
    return seq, stack


@pytest.mark.parametrize(
    "model, impl",
    [("convnet_w32", "grouped"), ("convnet_w32", "vmap"), ("convnet_ln", "grouped"),
     ("convnet_gn", "grouped"), ("convnet_d1", "grouped"), ("mlp", "vmap"), ("lenet", "vmap")],
)  # fmt: skip
def test_stacked_training_gives_the_sequential_weights(model, impl):
    """E = 4 (5 passes, decay after pass 3), 30 images in batches of 8 (a partial last batch)."""
    data = tiny_dataset(per_class=10)
    cfg = EvalConfig(batch_size=8)
    seq, stack = _sequential_and_stacked(model, data, 4, cfg, torch.float64, impl=impl)
    for j, net in enumerate(seq):
        got = stack.unstack(j).state_dict()
        for name, value in net.state_dict().items():
            torch.testing.assert_close(got[name], value, rtol=1e-9, atol=1e-11)
    # the networks really differ from each other (own seeds, own shuffles)
    first = next(iter(stack.params.values()))
    assert not torch.equal(first[0], first[1])


def test_stacked_float32_weights_and_accuracies_match():
    data = tiny_dataset(per_class=10)
    cfg = EvalConfig(batch_size=8)
    seq, stack = _sequential_and_stacked("convnet_w32", data, 3, cfg)
    for j, net in enumerate(seq):
        for name, value in net.state_dict().items():
            torch.testing.assert_close(stack.params[name][j], value, rtol=1e-4, atol=1e-5)
    for impl in ("grouped", "vmap"):
        accs = batched.stacked_accuracy(stack, data.test_images, data.test_labels, batch=7, impl=impl)
        for j, net in enumerate(seq):
            net.eval()
            with torch.no_grad():
                pred = net(data.test_images).argmax(1)
            assert float(accs[j]) == pytest.approx(float((pred == data.test_labels).float().mean()))


def test_grouped_forward_is_n_separate_convnets():
    torch.manual_seed(0)
    for model in ("convnet_w32", "convnet_ln", "convnet_gn", "convnet_maxpool", "convnet_nonorm"):
        nets = [_new_network(model, j, tiny_dataset(), EvalConfig()).double() for j in range(3)]
        stack = batched.stack_networks(nets)
        x = torch.randn(3, 5, 3, 16, 16, dtype=torch.float64)
        ref = torch.stack([net(xj) for net, xj in zip(nets, x)])
        got = batched.grouped_convnet_forward(stack.template, stack.params, x)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_evaluate_set_parallel_equals_one_after_another_without_augmentation():
    data = noisy_dataset()
    x, y = random_subset(data, 10, seed=0)
    base = dict(models=("convnet_w32", "mlp"), num_nets=5, epochs=3, augment="none", batch_size=16)
    one = evaluate_set(x, y, data, "dc", EvalConfig(**base, parallel_nets=1))
    for group in (2, 5):
        many = evaluate_set(x, y, data, "dc", EvalConfig(**base, parallel_nets=group))
        for a, b in zip(one, many):
            assert b.accuracies == pytest.approx(a.accuracies, abs=1e-6)
    assert len(set(one[0].accuracies)) > 1  # not a saturated task: the comparison has teeth


@pytest.mark.parametrize("augment", ["dsa", "dc"])
def test_augmented_accuracy_distribution_matches_sequential(augment):
    data = noisy_dataset()
    x, y = random_subset(data, 10, seed=1)
    base = dict(models=("convnet_w32",), num_nets=8, epochs=8, augment=augment, batch_size=16)
    seq = evaluate_set(x, y, data, "dsa", EvalConfig(**base, parallel_nets=1))[0].accuracies
    par = evaluate_set(x, y, data, "dsa", EvalConfig(**base, parallel_nets=8))[0].accuracies
    noise = (statistics.pvariance(seq) / 8 + statistics.pvariance(par) / 8) ** 0.5
    assert abs(statistics.fmean(seq) - statistics.fmean(par)) <= 3 * noise + 0.03
    assert statistics.fmean(par) > 0.45  # it learned (chance is 1/3)


def test_batched_dsa_draws_one_family_per_network_and_parameters_per_sample(monkeypatch):
    seen = []
    real_apply = batched.apply_dsa

    def spy(x, draw, strategy, params):
        seen.append(draw)
        return real_apply(x, draw, strategy, params)

    monkeypatch.setattr(batched, "apply_dsa", spy)
    gen = torch.Generator().manual_seed(0)
    aug = batched.batched_augmenter("dsa", DSA_FULL, batched.DSAParams(), gen)
    x = torch.randn(6, 5, 3, 16, 16)
    for _ in range(8):
        out = aug(x)
        assert out.shape == x.shape
    families = set()
    for draw in seen:
        fam = draw.family.view(6, 5)
        assert (fam == fam[:, :1]).all()  # one family per network per batch
        families.update(fam[:, 0].tolist())
        assert len(set(draw.brightness.view(6, 5)[0].tolist())) == 5  # parameters per sample
    assert len(families) > 2  # networks draw different families


def test_batchnorm_models_train_one_after_another():
    data = tiny_dataset(per_class=8)
    assert resolve_parallel_nets(EvalConfig(parallel_nets=4), "convnet_bn", data) == 1
    assert resolve_parallel_nets(EvalConfig(parallel_nets=4, num_nets=3), "convnet_w32", data) == 3
    bn = [_new_network("convnet_bn", 0, data, EvalConfig())]
    with pytest.raises(UserError):
        batched.stack_networks(bn)
    x, y = random_subset(data, 4, seed=0)
    cfg = dict(models=("convnet_bn",), num_nets=2, epochs=2, augment="none")
    a = evaluate_set(x, y, data, "dc", EvalConfig(**cfg, parallel_nets=2))
    b = evaluate_set(x, y, data, "dc", EvalConfig(**cfg, parallel_nets=1))
    assert a[0].accuracies == b[0].accuracies


def test_bad_speed_settings_are_user_errors():
    data = tiny_dataset(per_class=4)
    x, y = random_subset(data, 2, seed=0)
    with pytest.raises(UserError, match="parallel-nets"):
        evaluate_set(x, y, data, "dc", EvalConfig(models=("mlp",), num_nets=1, parallel_nets=0))
    with pytest.raises(UserError, match="precision"):
        evaluate_set(x, y, data, "dc", EvalConfig(models=("mlp",), num_nets=1, precision="fp8"))
    with pytest.raises(UserError, match="batched implementation"):
        evaluate_set(x, y, data, "dc", EvalConfig(models=("mlp",), num_nets=2, batched_impl="x"))
    with pytest.raises(UserError, match="ConvNets only"):
        cfg = EvalConfig(models=("mlp",), num_nets=2, parallel_nets=2, batched_impl="grouped")
        evaluate_set(x, y, data, "dc", cfg)
    with pytest.raises(UserError):
        batched.train_stacked(
            batched.stack_networks([_new_network("mlp", 0, data, EvalConfig())]),
            x, y, [], batched.TrainSettings(1),
        )  # fmt: skip
