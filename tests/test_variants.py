"""CIFAR-100 normalised as the DCC code did (issue 10 §7): the same pixels under CIFAR-10's
statistics, used by the paper profile only."""

from __future__ import annotations

import torch
from tiny import tiny_dataset

from dcclib.data import STATS, get_loader
from dcclib.data.variants import DCC_CIFAR100, renormalized
from dcclib.lab.profiles import get_profile


def test_renormalized_keeps_the_pixels_and_changes_the_statistics():
    data = tiny_dataset(channels=3)
    data = renormalized(data, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), name="base")  # some statistics
    mean10, std10 = STATS["cifar10"]
    other = renormalized(data, mean10, std10, name=DCC_CIFAR100)
    assert (other.mean, other.std, other.name) == (mean10, std10, DCC_CIFAR100)
    torch.testing.assert_close(other.denormalise(other.train_images), data.denormalise(data.train_images))
    torch.testing.assert_close(other.denormalise(other.test_images), data.denormalise(data.test_images))
    # x_new = (x * std_old + mean_old - mean_new) / std_new, channel 0
    expected = (data.train_images[:, 0] * 0.2 + 0.5 - mean10[0]) / std10[0]
    torch.testing.assert_close(other.train_images[:, 0], expected)
    assert torch.equal(other.train_labels, data.train_labels)


def test_the_variant_is_a_registered_dataset_and_only_the_paper_profile_uses_it():
    assert get_loader(DCC_CIFAR100) is not None
    assert get_profile("paper").dataset_for("cifar100") == DCC_CIFAR100
    assert get_profile("paper").dataset_for("cifar10") == "cifar10"
    assert get_profile("quick").dataset_for("cifar100") == "cifar100"
