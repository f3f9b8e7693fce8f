"""Figure 4's kernel and its velocity: the math on known kernels, and recording during condense."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tiny import tiny_dataset

from dcclib.analyses.kernel_velocity import (
    KernelRecorder,
    VelocityTrace,
    classwise_gram,
    gram,
    kernel_velocity,
    summarise,
    track_velocity,
    velocity_series,
)
from dcclib.condense import CondenseConfig
from dcclib.errors import UserError
from dcclib.lab.analysis_runs import velocity_experiment


def test_constant_kernel_has_zero_velocity():
    k = torch.randn(5, 5)
    k = k @ k.T
    assert kernel_velocity(k, k.clone()).item() == pytest.approx(0.0, abs=1e-12)
    series = velocity_series(torch.stack([k, k, k]))
    assert series.shape == (2,)
    assert torch.allclose(series, torch.zeros(2, dtype=series.dtype), atol=1e-12)


def test_velocity_is_scale_invariant():
    k = torch.randn(4, 4)
    assert kernel_velocity(k, 2 * k).item() == pytest.approx(0.0, abs=1e-12)
    assert kernel_velocity(k, 1e-20 * k).item() == pytest.approx(0.0, abs=1e-12)
    # and the Gram itself ignores the scale of the Jacobian
    j = torch.randn(3, 2, 4, 4)
    assert torch.allclose(gram(j), gram(1e-15 * j), atol=1e-6)


def test_orthogonal_kernels_have_velocity_one():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert kernel_velocity(a, b).item() == pytest.approx(1.0)
    assert kernel_velocity(a, -a).item() == pytest.approx(2.0)  # opposite: 1 - (-1)
    assert kernel_velocity(a, b, dt=4).item() == pytest.approx(0.25)  # Fort et al.: S / dt
    with pytest.raises(UserError):
        kernel_velocity(a, b, dt=0)


def test_small_example_by_hand():
    # J1 = I -> K1 = I; J2 = [[1, 1], [0, 1]] -> K2 = [[2, 1], [1, 1]] (Gram of the rows)
    j1 = torch.eye(2)
    j2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    k1, k2 = gram(j1), gram(j2)
    # gram normalises J by its Frobenius norm: K = J J^T / ||J||_F^2
    assert torch.allclose(k1, torch.eye(2) / 2)
    assert torch.allclose(k2, torch.tensor([[2.0, 1.0], [1.0, 1.0]]) / 3)
    # <K1, K2> = 2 + 1 = 3 (unnormalised); ||K1|| = sqrt 2, ||K2|| = sqrt 7
    assert kernel_velocity(k1, k2).item() == pytest.approx(1 - 3 / math.sqrt(14))


def test_classwise_gram_keeps_same_class_blocks():
    j = torch.randn(4, 3)
    labels = torch.tensor([0, 0, 1, 1])
    k, kc = gram(j), classwise_gram(j, labels)
    assert torch.allclose(kc[:2, :2], k[:2, :2]) and torch.allclose(kc[2:, 2:], k[2:, 2:])
    assert (kc[:2, 2:] == 0).all() and (kc[2:, :2] == 0).all()
    with pytest.raises(UserError):
        classwise_gram(j, torch.tensor([0, 1]))


def test_zero_kernel_velocity_is_nan():
    assert math.isnan(kernel_velocity(torch.zeros(2, 2), torch.eye(2)).item())


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        KernelRecorder(kind="ntk")
    with pytest.raises(UserError):
        KernelRecorder(kind="classwise")
    with pytest.raises(UserError):
        velocity_series(torch.zeros(3, 2, 2), lag=0)
    with pytest.raises(UserError):
        kernel_velocity(torch.zeros(2, 2), torch.zeros(3, 3))


def tiny_config(method: str, **kw) -> CondenseConfig:
    base = dict(
        dataset="tiny",
        method=method,
        ipc=2,
        outer_iterations=3,
        inner_iterations=3,
        net_epochs=1,
        batch_real=4,
        model="convnet_w32",
        warmup="none",
        checkpoint_every=0,
        seed=1,
    )
    return CondenseConfig(**{**base, **kw})


@pytest.mark.parametrize("kind", ["full", "classwise"])
def test_recorder_gets_one_kernel_per_image_update(kind):
    data = tiny_dataset(num_classes=3, per_class=6, size=8)
    cfg = tiny_config("dcc")
    labels = torch.arange(3).repeat_interleave(cfg.ipc)
    rec = KernelRecorder(kind, labels if kind == "classwise" else None, keep_kernels=True)
    from dcclib.condense import condense

    result = condense(cfg, data, progress=False, observer=rec)
    trace = rec.trace()
    assert len(rec) == len(rec.kernels) == 9  # K_o * K_i updates
    assert all(k.shape == (6, 6) for k in rec.kernels)
    assert trace.outer.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert trace.inner.tolist() == [0, 1, 2] * 3
    assert not trace.classwise.any()  # DCC without warm-up
    assert math.isnan(trace.velocity[0]) and np.isfinite(trace.velocity[1:]).all()
    assert trace.reinit_steps().tolist() == [3, 6]
    # the recorded velocities are those of the kept kernels
    expected = velocity_series(torch.stack(rec.kernels)).numpy()
    assert np.allclose(trace.velocity[1:], expected)
    assert result.images.shape == (6, 3, 8, 8)


def test_track_velocity_lag_and_summary():
    data = tiny_dataset(num_classes=2, per_class=6, size=8)
    cfg = tiny_config("dc")
    rec = KernelRecorder(lag=2, keep_kernels=True)
    from dcclib.condense import condense

    condense(cfg, data, progress=False, observer=rec)
    k = rec.kernels
    assert rec.trace().velocity[4] == pytest.approx(kernel_velocity(k[2], k[4]).item() / 2)
    trace, _ = track_velocity(cfg, data, lag=2)
    assert np.allclose(trace.velocity[2:], rec.trace().velocity[2:])  # seeded: the same run
    assert trace.classwise.all()  # DC always uses the class-wise loss
    assert np.isnan(trace.velocity[:2]).all() and np.isfinite(trace.velocity[2:]).all()
    s = summarise(trace)
    assert s["updates"] == 9 and s["reinitialisations"] == 2
    assert 0 <= s["mean_within_network"] <= 2 and 0 <= s["mean_peak"] <= 2
    assert len(trace.rows()) == 9 and trace.rows()[0]["velocity"] is None


def test_recording_does_not_change_the_run():
    data = tiny_dataset(num_classes=2, per_class=6, size=8)
    from dcclib.condense import condense

    plain = condense(tiny_config("dcc"), data, progress=False)
    _, observed = track_velocity(tiny_config("dcc"), data)
    assert torch.equal(plain.images, observed.images)


def test_trace_round_trips_through_json():
    data = tiny_dataset(num_classes=2, per_class=6, size=8)
    trace, _ = track_velocity(tiny_config("dcc"), data)
    back = VelocityTrace.from_result(json.loads(json.dumps(trace.as_result())))
    assert np.array_equal(back.outer, trace.outer) and np.array_equal(back.classwise, trace.classwise)
    assert np.allclose(back.velocity, trace.velocity, equal_nan=True)


def test_velocity_experiment_is_stored_and_reused(tmp_path):
    from dcclib.lab.experiments import Lab

    lab = Lab(
        "08_test", "smoke", device="cpu", results_dir=str(tmp_path / "r"), output_dir=str(tmp_path / "o")
    )
    schedule = {"outer_iterations": 2, "inner_iterations": 2, "net_epochs": 1, "batch_real": 4}
    trace, cfg = velocity_experiment(
        lab, "cifar10", "dcc", 1, schedule=schedule, model="convnet_w32", warmup="none"
    )
    assert cfg.dataset == "embedded-mnist" and cfg.outer_iterations == 2 and cfg.batch_real == 4
    assert len(trace.velocity) == 4 and lab.log[-1].startswith("computed")
    again, _ = velocity_experiment(
        lab, "cifar10", "dcc", 1, schedule=schedule, model="convnet_w32", warmup="none"
    )
    assert lab.log[-1].startswith("reused")
    assert np.allclose(again.velocity, trace.velocity, equal_nan=True)
