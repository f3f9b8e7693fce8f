"""The evaluation protocol: defaults per method/dataset, the lr schedule, Random baseline."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_dataset

from dcclib import evaluate
from dcclib.errors import UserError
from dcclib.evaluate import EvalConfig, evaluate_set, protocol_defaults, random_subset, train_from_scratch
from dcclib.models import create_model


def test_protocol_defaults_follow_the_spec():
    assert protocol_defaults("dsa", "cifar10", "convnet") == (1000, "dsa")
    assert protocol_defaults("dsac", "imagenet32-truck", "resnet18") == (1000, "dsa")
    assert protocol_defaults("dc", "cifar10", "convnet") == (300, "none")
    assert protocol_defaults("dcc", "svhn", "lenet") == (300, "none")
    assert protocol_defaults("dcc", "fashionmnist", "convnet") == (300, "none")
    assert protocol_defaults("dc", "mnist", "convnet") == (1000, "dc")
    assert protocol_defaults("random", "embedded-mnist", "convnet") == (1000, "dc")
    assert protocol_defaults("dc", "cifar10", "convnet_bn") == (1000, "dc_noise")
    cfg = EvalConfig()
    settings = (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.num_nets)
    assert settings == (0.01, 0.9, 5e-4, 256, 20)


def test_training_runs_e_plus_one_passes_and_drops_the_lr_after_pass_e_half_plus_one(monkeypatch):
    created: list[dict] = []
    real_sgd = torch.optim.SGD

    class SpySGD(real_sgd):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            created.append({"lr": kw["lr"], "momentum": kw["momentum"], "wd": kw["weight_decay"], "steps": 0})

        def step(self, closure=None):
            created[-1]["steps"] += 1
            return super().step(closure)

    monkeypatch.setattr(evaluate.torch.optim, "SGD", SpySGD)
    data = tiny_dataset(per_class=10)  # 30 images, batch 8 -> 4 steps per pass
    net = create_model("convnet_w32", 3, 3, 16)
    train_from_scratch(net, data.train_images, data.train_labels, 6, EvalConfig(batch_size=8))
    # E = 6: passes 0..6; decay after pass 4 -> 5 passes at lr 0.01, then 2 at 0.001 (new optimiser)
    assert [c["lr"] for c in created] == pytest.approx([0.01, 0.001])
    assert [c["steps"] for c in created] == [5 * 4, 2 * 4]
    assert all(c["momentum"] == 0.9 and c["wd"] == 5e-4 for c in created)


def test_evaluate_set_trains_fresh_networks_that_learn():
    data = tiny_dataset(per_class=20)
    x, y = random_subset(data, 5, seed=0)
    cfg = EvalConfig(models=("convnet_w32", "mlp"), num_nets=2, epochs=20)
    results = evaluate_set(x, y, data, "dc", cfg)
    again = evaluate_set(x, y, data, "dc", cfg)
    assert [r.model for r in results] == ["convnet_w32", "mlp"]
    for r, r2 in zip(results, again):
        assert len(r.accuracies) == 2 and r.accuracies == r2.accuracies  # seeded
        assert r.epochs == 20 and r.augment == "none"
        assert r.mean > 0.6  # 3 separable classes: chance is 1/3
    # a different evaluation seed gives different networks (one pass only, before they all reach 100%)
    short = [
        evaluate_set(x, y, data, "dc", EvalConfig(models=("mlp",), num_nets=3, epochs=1, seed=s))
        for s in (0, 1)
    ]
    assert short[0][0].accuracies != short[1][0].accuracies


def spy_training_inputs(monkeypatch) -> list[torch.Tensor]:
    """Record every batch a network of the one-after-another path sees in train mode."""
    seen: list[torch.Tensor] = []
    real = evaluate.create_model

    def create(*args, **kwargs):
        net = real(*args, **kwargs)
        net.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()) if m.training else None)
        return net

    monkeypatch.setattr(evaluate, "create_model", create)
    return seen


def fraction_of_set_rows(batches: list[torch.Tensor], images: torch.Tensor) -> float:
    rows = [row for b in batches for row in b]
    return sum(any(torch.equal(r, img) for img in images) for r in rows) / len(rows)


def test_dsa_protocol_augments_every_training_batch_in_the_sequential_path(monkeypatch):
    """Catches: no DSA in the one-network-at-a-time path; DSA for a method that has none."""
    data = tiny_dataset(per_class=8)
    x, y = random_subset(data, 4, seed=0)
    assert protocol_defaults("dsac", data.name, "convnet_w32") == (1000, "dsa")
    cfg = EvalConfig(models=("convnet_w32",), num_nets=1, epochs=2, parallel_nets=1)
    seen = spy_training_inputs(monkeypatch)
    (res,) = evaluate_set(x, y, data, "dsac", cfg)
    assert res.augment == "dsa" and len(seen) == 3  # E + 1 passes of one batch
    assert fraction_of_set_rows(seen, x) < 0.5
    seen.clear()
    (res,) = evaluate_set(x, y, data, "dc", cfg)  # not MNIST, not BatchNorm: no augmentation
    assert res.augment == "none" and fraction_of_set_rows(seen, x) == 1.0


def test_evaluation_uses_the_condensation_dsa_strategy(monkeypatch):
    """The original passes its condensation's strategy to the evaluation (spec; issue 10 §7)."""
    data = tiny_dataset(per_class=8)
    x, y = random_subset(data, 4, seed=0)
    flipped = torch.flip(x, dims=[3])
    seen = spy_training_inputs(monkeypatch)
    cfg = EvalConfig(models=("convnet_w32",), num_nets=1, epochs=4, parallel_nets=1, dsa_strategy="flip")
    evaluate_set(x, y, data, "dsa", cfg)
    rows = [row for b in seen for row in b]
    # every row is an image of the set, or that image mirrored; some of each
    plain = [any(torch.equal(r, img) for img in x) for r in rows]
    mirrored = [any(torch.equal(r, img) for img in flipped) for r in rows]
    assert all(p or m for p, m in zip(plain, mirrored)) and any(plain) and any(mirrored)
    with pytest.raises(UserError, match="unknown"):
        EvalConfig(dsa_strategy="color_wobble").validate()


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=0),
        dict(num_nets=0),
        dict(lr=float("inf")),
        dict(lr=float("nan")),
        dict(momentum=1.0),
        dict(weight_decay=-1.0),
        dict(models=("nosuchnet",)),
        dict(models=()),
        dict(augment="sometimes"),
    ],
)
def test_bad_evaluation_settings_are_refused_before_training(bad):
    data = tiny_dataset(per_class=8)
    x, y = random_subset(data, 2, seed=0)
    with pytest.raises(UserError):
        evaluate_set(x, y, data, "dc", EvalConfig(**{**dict(models=("mlp",), num_nets=1, epochs=1), **bad}))


def test_an_empty_set_is_refused():
    data = tiny_dataset(per_class=8)
    x, y = random_subset(data, 2, seed=0)
    with pytest.raises(UserError, match="empty"):
        evaluate_set(x[:0], y[:0], data, "dc", EvalConfig(models=("mlp",), num_nets=1, epochs=1))


def test_random_subset_is_seeded_and_per_class():
    data = tiny_dataset(per_class=10)
    x1, y1 = random_subset(data, 4, seed=0)
    x2, y2 = random_subset(data, 4, seed=0)
    x3, _ = random_subset(data, 4, seed=1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert torch.bincount(y1).tolist() == [4, 4, 4]
    # every chosen image is a training image of its class
    for img, label in zip(x1, y1):
        match = (data.train_images == img).flatten(1).all(1)
        assert match.any() and data.train_labels[match][0] == label
    with pytest.raises(UserError):
        random_subset(data, 11, seed=0)


def test_incompatible_sets_are_refused():
    data = tiny_dataset()
    with pytest.raises(UserError):
        evaluate_set(torch.zeros(3, 1, 16, 16), torch.arange(3), data, "dc", EvalConfig(num_nets=1))
    with pytest.raises(UserError):
        evaluate_set(torch.zeros(3, 3, 16, 16), torch.tensor([0, 1, 7]), data, "dc", EvalConfig(num_nets=1))
    with pytest.raises(UserError):
        evaluate_set(torch.zeros(3, 3, 16, 16), torch.arange(3), data, "dc", EvalConfig(models=("nope",)))
