"""Profiles scale the paper's settings; paper is the identity."""

import pytest

from dcclib.condense import CondenseConfig
from dcclib.errors import UserError
from dcclib.lab.profiles import PROFILES, get_profile


def test_paper_profile_is_the_paper():
    for ipc in (1, 10, 50):
        cfg = CondenseConfig(method="dcc", ipc=ipc)
        assert get_profile("paper").condense_config(cfg) == cfg.resolved()
    ev = get_profile("paper").eval_config()
    assert (ev.num_nets, ev.epochs) == (20, None) and get_profile("paper").num_runs == 5


def test_smoke_keeps_a_contrastive_phase_and_caps_loops():
    cfg = get_profile("smoke").condense_config(CondenseConfig(method="dcc", ipc=10))
    assert (cfg.outer_iterations, cfg.inner_iterations, cfg.net_epochs) == (4, 2, 2)
    assert 0 < cfg.gamma_outer < cfg.outer_iterations and 0 < cfg.gamma_inner < cfg.inner_iterations


def test_unknown_profile():
    assert set(PROFILES) == {"smoke", "cpu", "quick", "paper"}
    with pytest.raises(UserError):
        get_profile("fast")


def test_cpu_profile_is_pinned_and_says_its_reductions():
    """The committed cpu reports were made with exactly these settings: changing one orphans them."""
    p = get_profile("cpu")
    cfg = p.condense_config(CondenseConfig(method="dcc", ipc=1))
    assert (cfg.outer_iterations, cfg.gamma_outer, cfg.inner_iterations, cfg.gamma_inner, cfg.net_epochs) == (
        20,
        5,
        5,
        2,
        5,
    )
    assert cfg.batch_real == 32 and (p.num_runs, p.num_nets, p.eval_epochs, p.device) == (1, 3, None, "cpu")
    assert get_profile("cpu").condense_config(CondenseConfig(method="dc", ipc=10)).net_epochs == 5
    text = p.reductions()
    for part in ("K_o 20 of 1000", "K_i <= 5", "T <= 5", "32 real/class", "1 run(s) x 3 networks"):
        assert part in text
    assert "paper's settings" in get_profile("paper").reductions()


def _lab(profile):
    from dcclib.lab.experiments import Lab

    return Lab("99_test", profile=profile)


def test_plan_runs_what_the_user_gave_and_reduces_only_what_was_left_open():
    paper = {"datasets": ["svhn", "cifar10"], "ipcs": [1, 10, 50]}
    reduced = {"smoke": {"datasets": ["cifar10"], "ipcs": [1]}}
    smoke, quick = _lab("smoke"), _lab("quick")
    assert smoke.plan(paper, reduced, datasets=None, ipcs=None) == {"datasets": ["cifar10"], "ipcs": [1]}
    # a list the user gave is run as given, at every profile (never silently replaced)
    assert smoke.plan(paper, reduced, datasets=None, ipcs=[10]) == {"datasets": ["cifar10"], "ipcs": [10]}
    assert quick.plan(paper, reduced, datasets=None, ipcs=None) == paper
    with pytest.raises(UserError, match="ipc"):
        smoke.plan(paper, {"smoke": {"ipc": [1]}})
    # papermill -p passes a list as its text: read as JSON; a non-list is refused in one line
    assert smoke.plan(paper, reduced, ipcs="[10, 50]")["ipcs"] == [10, 50]
    with pytest.raises(UserError, match="wants a list"):
        smoke.plan(paper, reduced, ipcs=10)


def test_choose_prefers_the_users_value_then_the_profiles():
    lab = _lab("smoke")
    assert lab.choose(None, "convnet", smoke="convnet_w32") == "convnet_w32"
    assert lab.choose("lenet", "convnet", smoke="convnet_w32") == "lenet"
    assert _lab("paper").choose(None, "convnet", smoke="convnet_w32") == "convnet"
    assert lab.choose(0, 5, smoke=2) == 0  # a given falsy value still counts as given
