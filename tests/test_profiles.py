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
    assert set(PROFILES) == {"smoke", "quick", "paper"}
    with pytest.raises(UserError):
        get_profile("fast")
