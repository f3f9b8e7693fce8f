"""Every fast path of the condenser gives the literal baseline's numbers (benchmarks/literal.py).

Timings are never asserted here; the benchmarks measure them. These tests prove that the
optimised outer iteration, real-batch chunking, chunked Siamese augmentation, the automatic
settings and the opt-in precisions change nothing but float rounding.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny import tiny_dataset

from dcclib import batched, matching, runtime
from dcclib.augment import DSA_FULL, DSAParams, dsa_siamese
from dcclib.condense import (
    CondenseConfig,
    condense,
    initial_synthetic,
    outer_iteration,
    resolve_classwise_mode,
    resolve_real_chunk,
    siamese_augment,
)
from dcclib.errors import UserError
from dcclib.evaluate import EvalConfig, evaluate_set, random_subset
from dcclib.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from literal import literal_outer_iteration  # noqa: E402


def config(**overrides) -> CondenseConfig:
    base = dict(
        dataset="tiny", method="dcc", ipc=2, outer_iterations=2, inner_iterations=3, net_epochs=2,
        batch_real=5, model="convnet_w32", gamma_outer=1, gamma_inner=1, seed=3,
        checkpoint_every=0, classwise_mode="loop", real_chunk=None,
    )  # fmt: skip
    return CondenseConfig(**{**base, **overrides}).resolved()


def one_outer(fn, cfg, data, outer=0):
    syn, labels = initial_synthetic(data, cfg)
    syn.requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=cfg.lr_images, momentum=cfg.momentum_images)
    fn(cfg, data, syn, labels, opt, outer)
    return syn.detach()


@pytest.mark.parametrize("method", ["dc", "dsa", "dcc", "dsac"])
@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_fast_outer_iteration_gives_the_literal_images(method, mode):
    """Same real batch, same DSA draws, same shuffles: the same images after K_i updates.

    outer 0 runs the warm-up (class-wise) then the contrastive loss for DCC/DSAC.
    """
    data = tiny_dataset()
    cfg = config(method=method, classwise_mode=mode)
    for outer in (0, 1):
        fast = one_outer(outer_iteration, cfg, data, outer)
        literal = one_outer(literal_outer_iteration, cfg, data, outer)
        torch.testing.assert_close(fast, literal, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize(
    "method, mode, chunk",
    [("dcc", "loop", 4), ("dsac", "loop", 4), ("dc", "vmap", 7), ("dsa", "vmap", 5), ("dc", "loop", 2)],
)
def test_chunked_real_batch_gives_the_unchunked_result(method, mode, chunk):
    """15 real images: DCC in chunks of 4, DC-vmap in groups of whole classes, DC-loop split
    inside a class (2 < 5); DSA variants augment the real batch chunk by chunk."""
    data = tiny_dataset()
    whole = condense(config(method=method, classwise_mode=mode), data, progress=False)
    cut = condense(config(method=method, classwise_mode=mode, real_chunk=chunk), data, progress=False)
    torch.testing.assert_close(cut.images, whole.images, rtol=1e-4, atol=2e-5)
    assert [m["loss"] for m in cut.metrics] == pytest.approx([m["loss"] for m in whole.metrics], rel=1e-4)


def test_chunked_siamese_augmentation_is_dsa_siamese():
    torch.manual_seed(0)
    rx, ry = torch.randn(17, 3, 16, 16), torch.arange(3).repeat_interleave(torch.tensor([5, 6, 6]))
    sx, sy = torch.randn(6, 3, 16, 16), torch.arange(3).repeat_interleave(2)
    torch.manual_seed(1)
    ref = dsa_siamese([rx, sx], [ry, sy], 3, DSA_FULL, DSAParams())
    for chunk in (4, None):
        torch.manual_seed(1)
        got = siamese_augment(rx, ry, sx, sy, 3, DSA_FULL, DSAParams(), chunk)
        torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-6)


def test_automatic_chunk_size_and_classwise_mode():
    data = tiny_dataset()
    per_image = runtime.activation_bytes_per_image("convnet_w32", 3, 3, (16, 16))
    tight = replace(config(), real_chunk="auto", chunk_budget_mb=1)
    assert resolve_real_chunk(tight, data, 10_000) == 2**20 // per_image
    assert resolve_real_chunk(replace(config(), real_chunk="auto"), data, 15) is None  # fits
    assert resolve_real_chunk(replace(config(), real_chunk=4), data, 15) == 4
    assert resolve_real_chunk(replace(config(), real_chunk=None), data, 10**9) is None
    # CIFAR-100 ipc 50 (100 classes x 256 real images) with the paper's ConvNet is chunked
    cifar100 = SimpleNamespace(channels=3, num_classes=100, image_size=(32, 32))
    chunk = resolve_real_chunk(CondenseConfig(ipc=50, model="convnet"), cifar100, 25_600)
    assert chunk is not None and 1000 < chunk < 25_600
    assert CondenseConfig().classwise_mode == "auto" and CondenseConfig().real_chunk == "auto"
    assert resolve_classwise_mode(config(classwise_mode="auto"), torch.device("cpu")) == "loop"
    assert resolve_classwise_mode(config(classwise_mode="vmap"), torch.device("cpu")) == "vmap"
    for bad in (dict(real_chunk=0), dict(real_chunk="big"), dict(precision="bf16"), dict(chunk_budget_mb=0)):
        with pytest.raises(UserError):
            config(**bad)


def test_hot_path_reads_nothing_back_from_the_device(monkeypatch):
    """No .item() / .tolist() inside an outer iteration (on a GPU each one is a sync)."""
    data = tiny_dataset()
    cfg = config(method="dsac", real_chunk=4)
    syn, labels = initial_synthetic(data, cfg)
    syn.requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=0.1, momentum=0.5)

    def refuse(*_a, **_k):
        raise AssertionError("host read-back in the hot path")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    for outer in (0, 1):  # warm-up (class-wise) and contrastive steps
        outer_iteration(cfg, data, syn, labels, opt, outer)


def test_class_weights_are_cached_and_correct():
    like = torch.zeros(1)
    w = matching.class_weights([2, 3], like)
    assert w is matching.class_weights([2, 3], like)
    torch.testing.assert_close(w, torch.tensor([1 / 4, 1 / 4, 1 / 6, 1 / 6, 1 / 6]))
    assert matching.class_weights([2, 3], like.double()).dtype == torch.float64


def test_tf32_is_a_no_op_on_cpu_and_restores_the_flags():
    data = tiny_dataset(per_class=10)
    x, y = random_subset(data, 4, seed=0)
    base = dict(models=("convnet_w32",), num_nets=2, epochs=3, augment="none")
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    fp32 = evaluate_set(x, y, data, "dc", EvalConfig(**base))[0].accuracies
    tf32 = evaluate_set(x, y, data, "dc", EvalConfig(**base, precision="tf32"))[0].accuracies
    assert tf32 == fp32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    a = condense(config(method="dcc"), data, progress=False).images
    b = condense(config(method="dcc", precision="tf32"), data, progress=False).images
    assert torch.equal(a, b)


@pytest.mark.parametrize("parallel", [1, 3])
def test_bf16_autocast_and_channels_last_train_to_fp32_accuracy(parallel):
    """bf16 / channels_last are opt-in; on an easy task they reach fp32's accuracy (within noise)."""
    data = tiny_dataset(per_class=20)
    x, y = random_subset(data, 5, seed=0)
    base = dict(models=("convnet_w32",), num_nets=3, epochs=10, augment="none", parallel_nets=parallel)
    fp32 = evaluate_set(x, y, data, "dc", EvalConfig(**base))[0]
    bf16 = evaluate_set(x, y, data, "dc", EvalConfig(**base, precision="bf16"))[0]
    assert abs(bf16.mean - fp32.mean) <= 0.1 and bf16.mean > 0.6
    if parallel == 1:
        nhwc = evaluate_set(x, y, data, "dc", EvalConfig(**base, channels_last=True))[0]
        assert nhwc.accuracies == pytest.approx(fp32.accuracies, abs=0.05)


def test_compiled_grouped_step_gives_the_same_networks(monkeypatch):
    """The compile setting's plumbing (dynamo tracing; the eager backend keeps the test fast)."""
    monkeypatch.setitem(batched.COMPILE_OPTIONS, "backend", "eager")
    data = tiny_dataset(per_class=10)
    x, y = random_subset(data, 5, seed=0)
    base = dict(models=("convnet_w32",), num_nets=3, epochs=3, augment="none", parallel_nets=3)
    plain = evaluate_set(x, y, data, "dc", EvalConfig(**base))[0].accuracies
    compiled = evaluate_set(x, y, data, "dc", EvalConfig(**base, compile=True))[0].accuracies
    assert compiled == pytest.approx(plain, abs=1e-6)
    with pytest.raises(UserError, match="grouped"):
        evaluate_set(x, y, data, "dc", EvalConfig(**base, compile=True, batched_impl="vmap"))


@pytest.mark.parametrize(
    ("precision", "inside"), [("fp32", (False, False)), ("tf32", (True, True)), ("bf16", None)]
)
@pytest.mark.parametrize("before", [(False, False), (True, True), (False, True)])
def test_precision_context_sets_both_tf32_flags_and_restores_them(precision, inside, before):
    """fp32 turns TF32 off for matmuls and cuDNN convs (cuDNN allows it by default); tf32 turns
    both on; bf16 leaves them. Whatever the flags were before, they are restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        with runtime.precision_context(precision, torch.device("cpu")):
            seen = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        assert seen == (inside if inside is not None else before)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
        with pytest.raises(RuntimeError), runtime.precision_context(precision, torch.device("cpu")):
            raise RuntimeError("restored on error too")
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_strict_fp32_holds_for_the_backward_passes_of_evaluation_training():
    """The TF32 flags of `precision="fp32"` must cover backward too (cuDNN's default allows TF32
    in convolutions on a GPU): recorded at every backward of a network trained one at a time."""
    from dcclib.evaluate import train_from_scratch

    data = tiny_dataset(per_class=4)
    net = create_model("convnet_w32", 3, 3, (16, 16))
    seen = []
    first = next(net.parameters())
    first.register_hook(lambda g: seen.append(torch.backends.cudnn.allow_tf32))
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        train_from_scratch(net, data.train_images, data.train_labels, 1, EvalConfig(precision="fp32"))
        assert seen and not any(seen)
        assert torch.backends.cudnn.allow_tf32  # restored afterwards
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
