"""Tests for dcclib.models: every registered network builds and honours the interface,
and the default ConvNet matches the spec exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcclib.errors import UserError
from dcclib.models import ConvNet, create_model, has_batchnorm, list_models

# (channels, image size) combinations the condenser uses.
SHAPES = [(1, 28), (3, 32), (3, 28)]
# Five halvings of a 28x28 map with padding 1 collapse to zero: VGG11 cannot take it.
UNSUPPORTED = {("vgg11", 3, 28), ("vgg11_bn", 3, 28)}


def _cases() -> list[tuple[str, int, int]]:
    return [
        (name, ch, size)
        for name in list_models()
        for ch, size in SHAPES
        if (name, ch, size) not in UNSUPPORTED
    ]


@pytest.mark.parametrize(("name", "channels", "size"), _cases())
def test_every_model_builds_and_embed_feeds_classifier(name: str, channels: int, size: int):
    torch.manual_seed(0)
    model = create_model(name, channels, 7, image_size=size)
    model.eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        logits = model(x)
        feats = model.embed(x)
        again = model.classifier(feats)
    assert model.num_classes == 7
    assert logits.shape == (2, 7)
    assert feats.shape == (2, model.feature_dim)
    assert model.classifier.in_features == model.feature_dim
    torch.testing.assert_close(logits, again)


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_vgg_rejects_too_small_input(name: str):
    with pytest.raises(UserError, match="too small"):
        create_model(name, 3, 10, image_size=28)


def test_registry_names():
    names = list_models()
    expected = {
        "convnet",
        "convnet_w32",
        "convnet_w64",
        "convnet_w128",
        "convnet_w256",
        "convnet_d1",
        "convnet_d2",
        "convnet_d3",
        "convnet_d4",
        "convnet_sigmoid",
        "convnet_leakyrelu",
        "convnet_nopool",
        "convnet_maxpool",
        "convnet_avgpool",
        "convnet_nonorm",
        "convnet_bn",
        "convnet_ln",
        "convnet_in",
        "convnet_gn",
        "mlp",
        "lenet",
        "alexnet",
        "vgg11",
        "vgg11_bn",
        "resnet18",
        "resnet18_bn",
    }
    assert expected <= set(names)
    assert names == sorted(names)


def test_unknown_name_raises_user_error():
    with pytest.raises(UserError, match="unknown model 'nope'; choose one of: .*convnet"):
        create_model("nope", 3, 10)


def test_unknown_convnet_option_raises_user_error():
    with pytest.raises(UserError, match="unknown ConvNet norm"):
        ConvNet(3, 10, norm="weird")


@pytest.mark.parametrize(("channels", "size", "first_pad"), [(3, 32, 1), (1, 28, 3)])
def test_default_convnet_pins_spec(channels: int, size: int, first_pad: int):
    model = create_model("convnet", channels, 10, image_size=size)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(convs) == 3 and len(norms) == 3 and len(pools) == 3
    assert not has_batchnorm(model)
    for i, conv in enumerate(convs):
        assert conv.out_channels == 128
        assert conv.kernel_size == (3, 3)
        assert conv.bias is not None
        assert conv.padding == ((first_pad, first_pad) if i == 0 else (1, 1))
    assert convs[0].in_channels == channels
    for gn in norms:
        assert gn.num_groups == gn.num_channels == 128 and gn.affine
    for pool in pools:
        assert pool.kernel_size == 2 and pool.stride == 2
    assert [type(m) for m in model.features] == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.AvgPool2d] * 3
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == model.feature_dim == 2048
    # Hand count: conv1 C*128*9+128, GN 256, conv2/3 128*128*9+128, GN 256 each, fc 2048*10+10.
    expected = (channels * 128 * 9 + 128) + 256 + 2 * (147456 + 128 + 256) + 20490
    assert sum(p.numel() for p in model.parameters()) == expected
    assert expected == (320010 if channels == 3 else 317706)


def test_convnet_variants_track_feature_size():
    assert ConvNet(3, 10, pool="none").feature_dim == 128 * 32 * 32
    assert ConvNet(3, 10, depth=1).feature_dim == 128 * 16 * 16
    assert ConvNet(3, 10, depth=4).feature_dim == 128 * 2 * 2
    assert ConvNet(3, 10, width=32).feature_dim == 32 * 4 * 4
    assert ConvNet(3, 10, image_size=28).feature_dim == 128 * 3 * 3
    ln = [m for m in create_model("convnet_ln", 3, 10).modules() if isinstance(m, nn.LayerNorm)]
    assert [tuple(m.normalized_shape) for m in ln] == [(128, 32, 32), (128, 16, 16), (128, 8, 8)]
    gn = [m for m in create_model("convnet_gn", 3, 10).modules() if isinstance(m, nn.GroupNorm)]
    assert all(m.num_groups == 4 for m in gn)
    act = [m for m in create_model("convnet_leakyrelu", 3, 10).modules() if isinstance(m, nn.LeakyReLU)]
    assert len(act) == 3 and act[0].negative_slope == 0.01


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("convnet", False),
        ("convnet_bn", True),
        ("vgg11_bn", True),
        ("resnet18_bn", True),
        ("resnet18", False),
        ("lenet", False),
    ],
)
def test_has_batchnorm(name: str, expected: bool):
    assert has_batchnorm(create_model(name, 3, 10)) is expected


@pytest.mark.parametrize("name", ["convnet", "convnet_in", "resnet18"])
def test_instance_norm_is_per_sample(name: str):
    torch.manual_seed(0)
    model = create_model(name, 3, 10).train()  # train mode: no eval-only shortcut
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        batched = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)
