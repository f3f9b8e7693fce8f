"""Figure 6: alignment and uniformity on vectors with known values; the feature-net cache."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_dataset

from dcclib.analyses.alignment import (
    FeatureNetConfig,
    alignment,
    feature_metrics,
    feature_net_config,
    feature_net_key,
    load_or_train_feature_network,
    positive_pairs,
    uniformity,
)
from dcclib.errors import UserError
from dcclib.lab.analysis_runs import alignment_point


def test_identical_features_have_zero_alignment():
    f = torch.tensor([[3.0, 4.0]]).repeat(4, 1)
    assert alignment(f, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(0.0, abs=1e-12)


def test_alignment_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    # positive pairs: (0, 1) at squared distance 2 and (2, 3) at 0 (after normalising row 3)
    assert alignment(f, y).item() == pytest.approx(1.0)
    assert alignment(f, y, alpha=1).item() == pytest.approx(math.sqrt(2) / 2)
    i, j = positive_pairs(y)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (2, 3)]


def test_uniformity_by_hand():
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(antipodal).item() == pytest.approx(-8.0)  # log exp(-2 * 4)
    three = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # squared distances 2, 4, 2 over the three distinct pairs
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert uniformity(three).item() == pytest.approx(expected)
    assert uniformity(three, t=1).item() == pytest.approx(math.log((2 * math.exp(-2) + math.exp(-4)) / 3))
    same = torch.ones(3, 5)
    assert uniformity(same).item() == pytest.approx(0.0, abs=1e-12)  # log exp(0)


def test_losses_ignore_feature_scale():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(12, 7, generator=g)
    y = torch.arange(3).repeat_interleave(4)
    scale = torch.rand(12, 1, generator=g) * 10 + 0.1
    assert alignment(f * scale, y).item() == pytest.approx(alignment(f, y).item())
    assert uniformity(f * scale).item() == pytest.approx(uniformity(f).item())


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError):
        alignment(torch.randn(3, 2), torch.tensor([0, 1, 2]))  # no positive pair
    with pytest.raises(UserError):
        alignment(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(UserError):
        uniformity(torch.randn(1, 2))
    with pytest.raises(UserError):
        uniformity(torch.randn(2, 2, 2))
    with pytest.raises(UserError):
        FeatureNetConfig(augment="mixup").check()
    with pytest.raises(UserError):
        feature_net_config("huge", "resnet18")
    assert feature_net_config("paper", "vgg11", seed=2).seed == 2


def small_cfg(**kw) -> FeatureNetConfig:
    return FeatureNetConfig(**{**dict(model="convnet_w32", epochs=1, augment="none", batch_size=8), **kw})


def test_feature_net_cache_miss_then_hit(tmp_path):
    data = tiny_dataset(num_classes=2, per_class=6, size=8)
    cfg = small_cfg()
    net, meta, hit = load_or_train_feature_network(cfg, data, tmp_path)
    assert not hit and meta["key"] == feature_net_key(cfg, data)
    path = tmp_path / f"{meta['key']}.safetensors"
    stored = load_file(str(path))  # plain safetensors, no pickle
    assert set(stored) == set(net.state_dict())
    again, meta2, hit2 = load_or_train_feature_network(cfg, data, tmp_path)
    assert hit2 and meta2["test_accuracy"] == meta["test_accuracy"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    # another training config or another dataset is another key: a miss
    _, meta3, hit3 = load_or_train_feature_network(small_cfg(seed=1), data, tmp_path)
    assert not hit3 and meta3["key"] != meta["key"]
    other = tiny_dataset(num_classes=2, per_class=7, size=8)
    assert feature_net_key(cfg, other) != feature_net_key(cfg, data)


def test_training_is_repeatable_and_corrupt_cache_is_rebuilt(tmp_path):
    data = tiny_dataset(num_classes=2, per_class=6, size=8)
    cfg = small_cfg(train_per_class=4)
    net_a, meta, _ = load_or_train_feature_network(cfg, data, tmp_path / "a")
    net_b, _, _ = load_or_train_feature_network(cfg, data, tmp_path / "b")
    for k, v in net_a.state_dict().items():
        assert torch.equal(v, net_b.state_dict()[k])
    path = tmp_path / "a" / f"{meta['key']}.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unusable"):
        net_c, _, hit = load_or_train_feature_network(cfg, data, tmp_path / "a")
    assert not hit
    assert torch.equal(next(iter(net_c.state_dict().values())), next(iter(net_a.state_dict().values())))
    assert load_file(str(path))  # rewritten, readable


def test_feature_metrics_of_a_set(tmp_path):
    data = tiny_dataset(num_classes=2, per_class=6, size=8)
    net, _, _ = load_or_train_feature_network(small_cfg(epochs=0), data, tmp_path)
    x, y = data.sample_real(3)
    m = feature_metrics(net, x, y)
    assert set(m) == {"alignment", "uniformity"}
    assert 0 <= m["alignment"] <= 4 and -8 <= m["uniformity"] <= 0


def test_alignment_point_is_stored_and_reused(tmp_path):
    from dcclib.lab.experiments import Lab

    lab = Lab(
        "09_test", "smoke", device="cpu", results_dir=str(tmp_path / "r"), output_dir=str(tmp_path / "o")
    )
    feature = FeatureNetConfig(model="convnet_w32", epochs=0, train_per_class=3, augment="none")
    kw = dict(model="convnet_w32", inner_iterations=1, net_epochs=1)
    point = alignment_point(lab, "cifar10", "dcc", 2, 0, feature, tmp_path / "nets", **kw)
    assert set(point) >= {"alignment", "uniformity", "feature_key", "feature_test_accuracy"}
    assert lab.log[-1].startswith("computed") and "network trained" in lab.log[-1]
    again = alignment_point(lab, "cifar10", "dcc", 2, 0, feature, tmp_path / "nets", **kw)
    assert lab.log[-1].startswith("reused") and again["alignment"] == point["alignment"]
    # a second set under the same network: the network comes from the cache
    alignment_point(lab, "cifar10", "dc", 2, 0, feature, tmp_path / "nets", **kw)
    assert "cached network" in lab.log[-1]
