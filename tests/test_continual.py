"""Figures 7/8: ring buffer, accuracy bookkeeping, task-label masking, GTSRB reader, a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_dataset

from dcclib.analyses.continual import (
    ContinualConfig,
    MultiHeadNet,
    RingBuffer,
    average_accuracy,
    mask_logits,
    run_continual,
    task_bounds,
)
from dcclib.analyses.task_sequences import class_subset, limit_per_class, load_gtsrb, load_sequence
from dcclib.condense import CondenseConfig
from dcclib.errors import UserError


def ring_oracle(stream_y: list[int], slots: int, num_classes: int) -> dict[int, list[int]]:
    """The literal ring rule: the k-th sample of class c goes to slot k mod slots."""
    store = {c: [None] * slots for c in range(num_classes)}
    count = dict.fromkeys(range(num_classes), 0)
    for i, c in enumerate(stream_y):
        store[c][count[c] % slots] = i
        count[c] += 1
    return {c: [i for i in v if i is not None] for c, v in store.items()}


def test_ring_buffer_by_hand():
    buf = RingBuffer(slots=3, num_classes=2, sample_shape=(1,))
    y = torch.tensor([0, 0, 1, 0, 0, 0])
    buf.add(torch.arange(6.0).view(-1, 1), y)
    x, labels = buf.contents()
    # class 0 saw ids 0, 1, 3, 4, 5: the newest three, at slots 3%3, 4%3, 2%3 -> [4, 5, 3]
    assert x.view(-1).tolist() == [4.0, 5.0, 3.0, 2.0] and labels.tolist() == [0, 0, 0, 1]
    buf.add(torch.tensor([[6.0]]), torch.tensor([0]))  # replaces the oldest (3)
    assert buf.contents([0])[0].view(-1).tolist() == [4.0, 5.0, 6.0]


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_ring_buffer_matches_the_sequential_rule(batch):
    g = torch.Generator().manual_seed(batch)
    stream = torch.randint(0, 4, (57,), generator=g)
    buf = RingBuffer(slots=5, num_classes=4, sample_shape=(2,))
    ids = torch.arange(57.0)
    for s in range(0, 57, batch):
        buf.add(torch.stack([ids[s : s + batch]] * 2, 1), stream[s : s + batch])
    x, y = buf.contents()
    oracle = ring_oracle(stream.tolist(), 5, 4)
    for c in range(4):
        got = x[y == c][:, 0].long().tolist()
        assert got == oracle[c]  # same samples in the same slots
        assert len(got) == min(5, int((stream == c).sum()))  # equal slots per class


def test_average_accuracy_bookkeeping():
    acc = [[0.9], [0.8, 0.7], [0.6, 0.5, 0.4]]
    assert average_accuracy(acc) == pytest.approx([0.9, 0.75, 0.5])
    with pytest.raises(UserError):
        average_accuracy([[0.9], [0.8]])


def test_mask_logits_is_the_task_head():
    bounds = task_bounds([3, 2, 2])
    assert bounds.tolist() == [0, 3, 5, 7]
    logits = torch.randn(4, 7)
    tasks = torch.tensor([0, 2, 1, 0])
    local = torch.tensor([2, 1, 0, 0])
    masked = mask_logits(logits, tasks, bounds)
    assert torch.isinf(masked).sum() == 4 * 7 - (3 + 2 + 2 + 3)
    by_head = torch.stack(
        [
            F.cross_entropy(logits[i : i + 1, bounds[t] : bounds[t + 1]], local[i : i + 1])
            for i, t in enumerate(tasks.tolist())
        ]
    )
    glob = local + bounds[tasks]
    assert torch.allclose(F.cross_entropy(masked, glob, reduction="none"), by_head)
    assert (masked.argmax(1) >= bounds[tasks]).all() and (masked.argmax(1) < bounds[tasks + 1]).all()


def test_multi_head_net_shares_the_trunk():
    net = MultiHeadNet("convnet_w32", 3, 8, [2, 3])
    x = torch.randn(2, 3, 8, 8)
    out = net(x, torch.tensor([0, 1]))
    f = net.trunk.embed(x)
    assert torch.allclose(out[0, :2], net.heads[0](f[0])) and torch.allclose(out[1, 2:], net.heads[1](f[1]))
    assert torch.isinf(out[0, 2:]).all() and torch.isinf(out[1, :2]).all()


def test_class_subset_and_limit():
    data = tiny_dataset(num_classes=4, per_class=6, size=8)
    sub = class_subset(data, [3, 1])
    assert sub.num_classes == 2 and sub.class_names == ["class3", "class1"]
    assert torch.equal(sub.train_images[sub.train_labels == 0], data.train_images[data.train_labels == 3])
    small = limit_per_class(sub, 2)
    assert small.class_counts.tolist() == [2, 2] and len(small.test_labels) == len(sub.test_labels)
    with pytest.raises(UserError):
        class_subset(data, [0, 0])
    with pytest.raises(UserError):
        class_subset(data, [7])


def test_stand_in_sequence_and_unknown_names():
    tasks = load_sequence("embedded-mnist-split")
    assert [t.num_classes for t in tasks] == [4, 3, 3]
    assert tasks[1].class_names == ["4", "5", "6"] and int(tasks[2].train_labels.max()) == 2
    with pytest.raises(UserError):
        load_sequence("mnist-cifar")
    with pytest.raises(UserError):
        ContinualConfig(method="gem").check()


def write_fake_gtsrb(root, per_class=3):
    from PIL import Image

    base = root / "gtsrb" / "GTSRB"
    rng = np.random.default_rng(0)
    for c in range(2):
        d = base / "Training" / f"{c:05d}"
        d.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (40 + i, 35, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(d / f"00000_{i:05d}.ppm")
    test_dir = base / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate([1, 0, 1]):
        Image.fromarray(rng.integers(0, 255, (30, 33, 3), dtype=np.uint8)).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;33;30;5;5;28;25;{c}")
    (root / "gtsrb" / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def test_gtsrb_reader_and_missing_data(tmp_path):
    with pytest.raises(UserError, match="GTSRB"):
        load_gtsrb(tmp_path / "nothing")
    write_fake_gtsrb(tmp_path)
    data = load_gtsrb(tmp_path)
    assert data.train_images.shape == (6, 3, 32, 32) and data.test_labels.tolist() == [1, 0, 1]
    assert data.num_classes == 2 and (tmp_path / "gtsrb" / "gtsrb32.npz").is_file()
    again = load_gtsrb(tmp_path)  # from the cache
    assert torch.equal(again.train_images, data.train_images)
    # normalised with the training set's own statistics
    assert abs(float(data.train_images.mean())) < 1e-4


def tiny_tasks():
    return [tiny_dataset(num_classes=2, per_class=6, size=8, seed=s, name=f"tiny{s}") for s in range(3)]


def small(method, **kw):
    return ContinualConfig(
        **{
            **dict(
                method=method,
                model="convnet_w32",
                epochs=2,
                batch_size=4,
                replay_batch=4,
                memory_per_class=2,
                seed=0,
            ),
            **kw,
        }
    )


@pytest.mark.parametrize("method", ["ring", "dsac", "none"])
def test_tiny_end_to_end(method):
    tasks = tiny_tasks()
    ccfg = CondenseConfig(
        dataset="tiny",
        method="dsac",
        ipc=2,
        outer_iterations=1,
        inner_iterations=2,
        net_epochs=1,
        batch_real=3,
        model="convnet_w32",
        checkpoint_every=0,
    )
    res = run_continual(tasks, small(method), ccfg)
    assert [len(r) for r in res.accuracy] == [1, 2, 3]
    assert all(0 <= a <= 1 for r in res.accuracy for a in r)
    assert len(res.average) == 3 and res.average[0] == res.accuracy[0][0]
    expected_memory = [0, 0, 0] if method == "none" else [0, 4, 8]  # 2 per class, 2 classes per task
    assert res.memory_sizes == expected_memory
    again = run_continual(tasks, small(method), ccfg)
    assert again.accuracy == res.accuracy  # seeded and repeatable


def test_methods_share_the_first_task():
    tasks = tiny_tasks()
    ring = run_continual(tasks, small("ring"))
    none = run_continual(tasks, small("none"))
    assert ring.accuracy[0] == none.accuracy[0]  # same init and order; memories differ later only


def test_precomputed_memories_and_missing_config():
    tasks = tiny_tasks()
    mems = [t.sample_real(2) for t in tasks]
    res = run_continual(tasks, small("dsa"), memories=mems)
    assert res.memory_sizes == [0, 4, 8]
    with pytest.raises(UserError):
        run_continual(tasks, small("dsa"))


def test_continual_experiment_is_stored_and_reused(tmp_path):
    from dcclib.analyses.task_sequences import STAND_IN, sequence_in_use
    from dcclib.lab.analysis_runs import continual_experiment
    from dcclib.lab.experiments import Lab

    assert sequence_in_use("lizard-truck-insect", "auto", "smoke") == STAND_IN
    assert sequence_in_use("lizard-truck-insect", "auto", "quick") == "lizard-truck-insect"
    lab = Lab(
        "10_test", "smoke", device="cpu", results_dir=str(tmp_path / "r"), output_dir=str(tmp_path / "o")
    )
    tasks = tiny_tasks()
    kw = dict(model="convnet_w32", inner_iterations=1, net_epochs=1)
    res = continual_experiment(lab, tasks, "tiny-seq", small("dsac"), **kw)
    assert sum(line.startswith("computed memory") for line in lab.log) == 2  # tasks 0 and 1
    assert res.memory_sizes == [0, 4, 8]
    again = continual_experiment(lab, tasks, "tiny-seq", small("dsac"), **kw)
    assert lab.log[-1].startswith("reused") and again.accuracy == res.accuracy
    # without the data, the stored result is found by the sequence name
    stored = continual_experiment(lab, None, "tiny-seq", small("dsac"), **kw)
    assert stored is not None and stored.average == res.average
    assert continual_experiment(lab, None, "tiny-seq", small("ring"), **kw) is None
