"""Algorithm 1: warm-up schedule, settings, determinism, checkpoints and resume."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_dataset

from dcclib import io
from dcclib.condense import CondenseConfig, condense, uses_classwise_loss
from dcclib.errors import UserError


def small_config(**overrides) -> CondenseConfig:
    base = dict(
        dataset="tiny",
        method="dsac",
        ipc=2,
        outer_iterations=4,
        inner_iterations=3,
        net_epochs=2,
        batch_real=5,
        model="convnet_w32",
        gamma_outer=2,
        gamma_inner=2,
        checkpoint_every=1,
        seed=3,
    )
    return CondenseConfig(**{**base, **overrides})


def schedule(cfg: CondenseConfig) -> list[list[bool]]:
    cfg = cfg.resolved()
    return [
        [uses_classwise_loss(cfg, o, i) for i in range(cfg.inner_iterations)]
        for o in range(cfg.outer_iterations)
    ]


def test_paper_schedule_defaults():
    assert CondenseConfig(ipc=1).resolved().inner_iterations == 10
    assert (
        CondenseConfig(ipc=1).resolved().net_epochs,
        CondenseConfig(ipc=10).resolved().net_epochs,
    ) == (5, 50)
    cfg = CondenseConfig(ipc=50).resolved()
    assert (cfg.inner_iterations, cfg.net_epochs) == (50, 10)
    assert (
        cfg.outer_iterations,
        cfg.gamma_outer,
        cfg.gamma_inner,
        cfg.lr_images,
        cfg.momentum_images,
        cfg.lr_net,
        cfg.batch_real,
        cfg.distance,
        cfg.init,
    ) == (1000, 250, 10, 0.1, 0.5, 0.01, 256, "layerwise", "real")
    with pytest.raises(UserError):
        CondenseConfig(ipc=7).resolved()  # no default (K_i, T): must be given
    assert CondenseConfig(ipc=7, inner_iterations=3, net_epochs=4).resolved().inner_iterations == 3


def test_bilevel_warmup_at_ipc_10_is_pure_dc_for_250_networks():
    sched = schedule(CondenseConfig(method="dcc", ipc=10))
    assert all(all(row) for row in sched[:250])
    assert not any(any(row) for row in sched[250:])


def test_bilevel_warmup_at_ipc_50_switches_inside_early_networks():
    sched = schedule(CondenseConfig(method="dsac", ipc=50))
    assert sched[0] == [True] * 10 + [False] * 40
    assert sched[249] == [True] * 10 + [False] * 40
    assert sched[250] == [False] * 50


def test_other_warmups_and_classwise_methods():
    assert not any(any(r) for r in schedule(CondenseConfig(method="dcc", ipc=10, warmup="none")))
    simple = schedule(CondenseConfig(method="dcc", ipc=50, warmup="inner"))
    assert all(row == [True] * 10 + [False] * 40 for row in simple)
    for method in ("dc", "dsa"):
        assert all(all(r) for r in schedule(CondenseConfig(method=method, ipc=10)))


@pytest.mark.parametrize(
    "bad",
    [
        dict(method="kip"),
        dict(ipc=0),
        dict(outer_iterations=-1),
        dict(warmup="x"),
        dict(distance="l1"),
        dict(init="zeros"),
        dict(batch_real=0),
    ],
)
def test_bad_settings_are_user_errors(bad):
    with pytest.raises(UserError):
        small_config(**bad).resolved()


def test_ipc_larger_than_a_class_is_refused_before_writing(tmp_path):
    with pytest.raises(UserError, match="larger than the smallest class"):
        condense(small_config(ipc=50), tiny_dataset(), run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_same_seed_gives_bit_identical_sets():
    data = tiny_dataset()
    a = condense(small_config(), data, progress=False)
    b = condense(small_config(), data, progress=False)
    c = condense(small_config(seed=4), data, progress=False)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert [m["loss"] for m in a.metrics] == [m["loss"] for m in b.metrics]


@pytest.mark.parametrize("method", ["dc", "dcc", "dsa", "dsac"])
def test_every_method_changes_the_images_and_reports_phases(method):
    data = tiny_dataset()
    cfg = small_config(method=method)
    before = condense(
        small_config(method=method, outer_iterations=1, inner_iterations=1, gamma_outer=1, gamma_inner=1),
        data,
        progress=False,
    ).images
    result = condense(cfg, data, progress=False)
    assert result.images.shape == (6, 3, 16, 16) and torch.isfinite(result.images).all()
    assert not torch.equal(before, result.images)
    classwise = [m["classwise_steps"] for m in result.metrics]
    if method in ("dc", "dsa"):
        assert classwise == [3, 3, 3, 3]
    else:  # gamma_outer = gamma_inner = 2: two warm-up steps on networks 0 and 1
        assert classwise == [2, 2, 0, 0]


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path):
    data = tiny_dataset()
    full = condense(small_config(), data, run_dir=tmp_path / "full", progress=False)
    part = condense(small_config(), data, run_dir=tmp_path / "part", stop_after=2, progress=False)
    assert not (tmp_path / "part" / "synthetic.safetensors").exists()
    assert len(part.metrics) == 2
    resumed = condense(small_config(), data, run_dir=tmp_path / "part", resume=True, progress=False)
    assert torch.equal(full.images, resumed.images)
    rows = io.read_jsonl(tmp_path / "part" / "metrics.jsonl")
    assert [r["outer"] for r in rows] == [0, 1, 2, 3]
    saved, labels, meta = io.load_synthetic(tmp_path / "part" / "synthetic.safetensors")
    assert torch.equal(saved, full.images) and meta["method"] == "dsac" and meta["config"]["seed"] == 3
    assert "torch" in meta["versions"]
    assert io.read_json(tmp_path / "part" / "config.json")["config"]["ipc"] == 2


def test_resume_refuses_other_settings_and_existing_runs(tmp_path):
    data = tiny_dataset()
    condense(small_config(), data, run_dir=tmp_path / "r", stop_after=1, progress=False)
    with pytest.raises(UserError, match="other settings"):
        condense(small_config(ipc=3), data, run_dir=tmp_path / "r", resume=True, progress=False)
    with pytest.raises(UserError, match="already holds a run"):
        condense(small_config(), data, run_dir=tmp_path / "r", progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        condense(small_config(), data, run_dir=tmp_path / "empty", resume=True, progress=False)


def test_noise_init_and_batchnorm_network_run():
    data = tiny_dataset()
    result = condense(
        small_config(init="noise", model="convnet_bn", outer_iterations=1, gamma_outer=1),
        data,
        progress=False,
    )
    assert torch.isfinite(result.images).all()


def test_observer_sees_every_image_update_with_its_gradient():
    seen = []
    condense(
        small_config(),
        tiny_dataset(),
        progress=False,
        observer=lambda s: seen.append((s.outer, s.inner, s.classwise, tuple(s.grad.shape))),
    )
    assert [(o, i) for o, i, _, _ in seen] == [(o, i) for o in range(4) for i in range(3)]
    assert [c for _, _, c, _ in seen] == [True, True, False] * 2 + [False] * 6
    assert all(shape == (6, 3, 16, 16) for *_, shape in seen)
