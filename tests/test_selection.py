"""Selection baselines: EL2N/GraNd against a direct per-sample computation, coresets, cache, C-scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_dataset

from dcclib.analyses import selection
from dcclib.analyses.selection import (
    ScoreConfig,
    cached_scores,
    compute_scores,
    load_cscores,
    per_sample_scores,
    score_network,
    select_coreset,
    select_per_class,
)
from dcclib.errors import UserError
from dcclib.models import create_model

TINY_CFG = ScoreConfig(model="mlp", num_nets=2, epoch=3, batch_size=8, score_batch=5)


def _direct_scores(net, x, y):
    """The definitions, one sample at a time with autograd."""
    el2n, grand = [], []
    net.eval()
    for i in range(x.shape[0]):
        net.zero_grad(set_to_none=True)
        logits = net(x[i : i + 1])
        F.cross_entropy(logits, y[i : i + 1]).backward()
        g = torch.cat([p.grad.flatten() for p in net.parameters()])
        grand.append(g.norm())
        p = logits.softmax(1)[0].detach()
        el2n.append((p - F.one_hot(y[i], logits.shape[1]).float()).norm())
    return torch.stack(el2n), torch.stack(grand)


@pytest.mark.parametrize("model", ["mlp", "convnet_w32"])
def test_el2n_and_grand_match_a_direct_per_sample_computation(model):
    data = tiny_dataset(per_class=4, size=16)
    torch.manual_seed(0)
    net = create_model(model, data.channels, data.num_classes, data.image_size)
    with torch.no_grad():  # move away from init so that the logits are not all alike
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    el2n, grand = per_sample_scores(net, data.train_images, data.train_labels, batch=5)
    ref_el2n, ref_grand = _direct_scores(net, data.train_images, data.train_labels)
    assert el2n.shape == grand.shape == (12,)
    torch.testing.assert_close(el2n, ref_el2n, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grand, ref_grand, rtol=1e-4, atol=1e-6)
    assert grand.std() > 0 and el2n.std() > 0


def test_scores_are_the_mean_over_independently_trained_seeded_networks():
    data = tiny_dataset(per_class=6, size=8)
    scores = compute_scores(data, TINY_CFG)
    assert scores.el2n_per_net.shape == scores.grand_per_net.shape == (2, 18)
    torch.testing.assert_close(scores.el2n, scores.el2n_per_net.mean(0))
    torch.testing.assert_close(scores.grand, scores.grand_per_net.mean(0))
    assert not torch.allclose(scores.el2n_per_net[0], scores.el2n_per_net[1])  # different networks
    e1, g1 = per_sample_scores(score_network(data, TINY_CFG, 1), data.train_images, data.train_labels)
    torch.testing.assert_close(scores.el2n_per_net[1], e1)
    torch.testing.assert_close(scores.grand_per_net[1], g1)
    assert torch.equal(compute_scores(data, TINY_CFG).grand, scores.grand)  # repeatable


def test_the_scoring_epoch_is_a_setting_and_training_lowers_the_error():
    data = tiny_dataset(per_class=6, size=8)
    at_init = compute_scores(data, dataclasses.replace(TINY_CFG, epoch=0, num_nets=1))
    trained = compute_scores(data, dataclasses.replace(TINY_CFG, epoch=15, num_nets=1))
    assert trained.el2n.mean() < at_init.el2n.mean() - 0.1


def test_selection_keeps_the_lowest_or_highest_scores_of_each_class():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 2])
    scores = torch.tensor([0.5, 0.1, 0.2, 0.9, 0.2, 0.3, 3.0, 1.0, 2.0])
    low = select_per_class(scores, labels, 2, 3, keep="lowest")
    assert low.tolist() == [2, 4, 1, 5, 7, 8]  # tie 0.2/0.2 in class 0 -> smaller index first
    high = select_per_class(scores, labels, 1, 3, keep="highest")
    assert high.tolist() == [0, 3, 6]
    with pytest.raises(UserError, match="larger than class"):
        select_per_class(scores, labels, 4, 3)
    with pytest.raises(UserError, match="NaN"):
        select_per_class(torch.full((9,), float("nan")), labels, 1, 3)
    with pytest.raises(UserError, match="keep"):
        select_per_class(scores, labels, 1, 3, keep="middle")


def test_select_coreset_returns_class_blocked_real_images():
    data = tiny_dataset(per_class=5, size=8)
    scores = torch.arange(15, dtype=torch.float32).flip(0)  # later samples score lower
    x, y, idx = select_coreset(data, scores, 2, selection.KEEP["el2n"])
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    assert idx.tolist() == [4, 3, 9, 8, 14, 13]
    assert torch.equal(x, data.train_images[idx])
    assert selection.KEEP == {"el2n": "lowest", "grand": "lowest", "cscore": "highest"}


def test_class_pool_keeps_the_first_images_of_each_class_and_the_test_set():
    data = tiny_dataset(per_class=5, size=8)
    pool = selection.class_pool(data, 2)
    assert pool.train_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(pool.train_images, data.train_images[[0, 1, 5, 6, 10, 11]])
    assert pool.test_images is data.test_images and pool.name == "tiny"  # same protocol as the dataset
    assert "first 2 training images per class" in pool.source
    assert selection.class_pool(data, None) is data
    assert selection.pool_indices(data, 2).tolist() == [0, 1, 5, 6, 10, 11]
    with pytest.raises(UserError):
        selection.class_pool(data, 0)


def test_score_cache_hits_on_the_same_dataset_and_config_and_misses_otherwise(tmp_path):
    data = tiny_dataset(per_class=4, size=8)
    cfg = dataclasses.replace(TINY_CFG, num_nets=1, epoch=1)
    first = cached_scores(data, cfg, tmp_path)
    assert not first.cache_hit and first.path.is_file() and first.path.suffix == ".safetensors"
    again = cached_scores(data, cfg, tmp_path)
    assert again.cache_hit and torch.equal(again.grand, first.grand) and torch.equal(again.el2n, first.el2n)
    other_cfg = cached_scores(data, dataclasses.replace(cfg, epoch=2), tmp_path)
    other_data = cached_scores(tiny_dataset(per_class=4, size=8, seed=1), cfg, tmp_path)
    assert not other_cfg.cache_hit and not other_data.cache_hit
    assert len({first.path, other_cfg.path, other_data.path}) == 3
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    first.path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="recomputing"):
        rebuilt = cached_scores(data, cfg, tmp_path)
    assert not rebuilt.cache_hit and torch.equal(rebuilt.grand, first.grand)


def test_score_config_errors():
    data = tiny_dataset(per_class=2, size=8)
    for bad in (dict(num_nets=0), dict(epoch=-1), dict(score_batch=0)):
        with pytest.raises(UserError):
            compute_scores(data, dataclasses.replace(TINY_CFG, **bad))
    with pytest.raises(UserError, match="unknown model"):
        compute_scores(data, dataclasses.replace(TINY_CFG, model="nope"))


# --------------------------------------------------------------------------------- C-scores
def _write_cscores(path, labels, scores):
    np.savez(path, labels=np.asarray(labels, dtype=np.int64), scores=np.asarray(scores, dtype=np.float32))
    return path


def _one_line(exc):
    return "\n" not in str(exc.value)


def test_cscore_loader_reads_the_published_format_in_original_order(tmp_path):
    data = tiny_dataset(per_class=3, size=8)  # labels 0,0,0,1,1,1,2,2,2
    scores = np.linspace(0.1, 0.9, 9)
    path = _write_cscores(tmp_path / "tiny-cscores-orig-order.npz", data.train_labels.numpy(), scores)
    out = load_cscores(path, data)
    np.testing.assert_allclose(out.numpy(), scores, rtol=1e-6)
    x, y, idx = select_coreset(data, out, 1, selection.KEEP["cscore"])
    assert idx.tolist() == [2, 5, 8]  # the most prototypical = highest C-score of each class


def test_cscore_loader_aligns_a_copy_that_keeps_the_order_only_within_each_class(tmp_path):
    data = tiny_dataset(per_class=3, size=8)  # class-sorted, like an ImageFolder copy
    file_labels = [1, 0, 2, 0, 1, 2, 2, 0, 1]  # the original interleaved order
    file_scores = [10, 0, 20, 1, 11, 21, 22, 2, 12]  # class*10 + rank within the class
    path = _write_cscores(tmp_path / "c.npz", file_labels, file_scores)
    with pytest.raises(UserError, match="within-class") as exc:
        load_cscores(path, data)
    assert _one_line(exc)
    out = load_cscores(path, data, align="within-class")
    assert out.tolist() == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert torch.equal(load_cscores(path, data, align="auto"), out)  # a class-sorted copy


def test_cscore_auto_alignment_stays_exact_for_data_in_the_original_order(tmp_path):
    data = tiny_dataset(per_class=3, size=8)
    order = torch.tensor([3, 0, 6, 1, 4, 7, 8, 2, 5])  # an interleaved 'original' order
    data = dataclasses.replace(
        data, train_images=data.train_images[order], train_labels=data.train_labels[order]
    )
    path = _write_cscores(tmp_path / "c.npz", data.train_labels.numpy(), np.arange(9.0))
    assert load_cscores(path, data, align="auto").tolist() == list(range(9))
    shuffled = _write_cscores(tmp_path / "s.npz", data.train_labels.flip(0).numpy(), np.arange(9.0))
    with pytest.raises(UserError, match="labels differ"):  # not class-sorted: no guessing
        load_cscores(shuffled, data, align="auto")


def test_cscore_loader_errors_are_one_line_user_errors(tmp_path):
    data = tiny_dataset(per_class=3, size=8)
    for path in (None, tmp_path / "missing.npz"):
        with pytest.raises(UserError, match="not found.*structural-regularity") as exc:
            load_cscores(path, data)
        assert _one_line(exc)
    short = _write_cscores(tmp_path / "short.npz", [0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(UserError, match="3 C-scores but tiny has 9") as exc:
        load_cscores(short, data)
    assert _one_line(exc)
    wrong = _write_cscores(tmp_path / "wrong.npz", [0] * 9, np.ones(9))
    with pytest.raises(UserError, match="labels differ"):
        load_cscores(wrong, data)
    with pytest.raises(UserError, match="class 0 has 9"):
        load_cscores(wrong, data, align="within-class")
    np.savez(tmp_path / "keys.npz", values=np.ones(9))
    with pytest.raises(UserError, match="lacks"):
        load_cscores(tmp_path / "keys.npz", data)
    np.savez(tmp_path / "obj.npz", labels=np.array([object()] * 9), scores=np.ones(9))
    with pytest.raises(UserError) as exc:  # object arrays would need unpickling: refused
        load_cscores(tmp_path / "obj.npz", data)
    assert _one_line(exc)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable"):
        load_cscores(tmp_path / "junk.npz", data)
    with pytest.raises(UserError, match="align"):
        load_cscores(short, data, align="sorted")
