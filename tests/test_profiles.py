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
    assert 0 < cfg.gamma_outer < cfg.outer_iterations
    assert cfg.gamma_inner == cfg.inner_iterations  # warm-up networks entirely class-wise, as the paper


@pytest.mark.parametrize("name", ["smoke", "cpu", "quick", "paper"])
@pytest.mark.parametrize("ipc", [1, 10, 50])
def test_profiles_keep_the_papers_warmup_shares(name, ipc):
    """gamma_o / K_o and gamma_i / K_i stay the paper's (250/1000; 10/K_i) at every profile."""
    paper = CondenseConfig(method="dcc", ipc=ipc).resolved()
    cfg = get_profile(name).condense_config(CondenseConfig(method="dcc", ipc=ipc))
    assert cfg.gamma_outer == max(1, round(paper.gamma_outer * cfg.outer_iterations / paper.outer_iterations))
    share = paper.gamma_inner / paper.inner_iterations
    assert cfg.gamma_inner == max(1, int(share * cfg.inner_iterations + 0.5))
    if ipc in (1, 10):  # the paper's warm-up networks are entirely class-wise (gamma_i = K_i)
        assert cfg.gamma_inner == cfg.inner_iterations
    # the Simple warm-up's default length follows the same rule and leaves a collective step
    simple = get_profile(name).condense_config(CondenseConfig(method="dcc", ipc=ipc, warmup="inner"))
    paper_simple = CondenseConfig(method="dcc", ipc=ipc, warmup="inner").resolved()
    expected = int(paper_simple.simple_gamma_inner * simple.inner_iterations / paper.inner_iterations + 0.5)
    assert simple.simple_gamma_inner == min(max(1, expected), simple.inner_iterations - 1)


def test_a_warmup_of_no_length_stays_none():
    for name in PROFILES:
        cfg = get_profile(name).condense_config(
            CondenseConfig(method="dcc", ipc=1, gamma_outer=0, gamma_inner=0)
        )
        assert (cfg.gamma_outer, cfg.gamma_inner) == (0, 0)


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
        5,
        5,
    )
    # MNIST ipc 1 at cpu: 5 networks x 5 class-wise updates, then 15 x 5 collective (the paper's 1/4)
    assert (cfg.gamma_outer * cfg.gamma_inner, (20 - cfg.gamma_outer) * cfg.inner_iterations) == (25, 75)
    assert cfg.batch_real == 32 and (p.num_runs, p.num_nets, p.eval_epochs, p.device) == (1, 3, None, "cpu")
    assert get_profile("cpu").condense_config(CondenseConfig(method="dc", ipc=10)).net_epochs == 5
    text = p.reductions()
    for part in (
        "K_o 20 of 1000",
        "gamma_o 5 (paper 250)",
        "K_i <= 5",
        "gamma_i scaled with K_i",
        "T <= 5",
        "32 real/class",
        "1 run(s) x 3 networks",
    ):
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
    # papermill -p passes a list as its text: read as JSON (or one value: -p ipcs 10 is [10]);
    # anything else is refused in one line
    assert smoke.plan(paper, reduced, ipcs="[10, 50]")["ipcs"] == [10, 50]
    assert smoke.plan(paper, reduced, ipcs=10)["ipcs"] == [10]
    with pytest.raises(UserError, match="wants a list"):
        smoke.plan(paper, reduced, ipcs={"ipc": 10})


def test_choose_prefers_the_users_value_then_the_profiles():
    lab = _lab("smoke")
    assert lab.choose(None, "convnet", smoke="convnet_w32") == "convnet_w32"
    assert lab.choose("lenet", "convnet", smoke="convnet_w32") == "lenet"
    assert _lab("paper").choose(None, "convnet", smoke="convnet_w32") == "convnet"
    assert lab.choose(0, 5, smoke=2) == 0  # a given falsy value still counts as given


def test_quick_profile_is_pinned_and_says_its_reductions():
    """quick is sized to about one GPU-hour for `make reports` (README: *What it costs*): K_o 200 of
    the paper's 1000 and otherwise the paper's loops, 2 runs x 5 networks. Changing one changes
    every quick result's key and the plan's cost: change the README's cost table with it."""
    p = get_profile("quick")
    one = p.condense_config(CondenseConfig(method="dcc", ipc=1))
    assert (one.outer_iterations, one.gamma_outer, one.inner_iterations, one.gamma_inner, one.net_epochs) == (
        200,
        50,
        10,
        10,
        5,
    )
    ten = p.condense_config(CondenseConfig(method="dcc", ipc=10))
    assert (ten.inner_iterations, ten.net_epochs, ten.batch_real) == (10, 50, 256)
    assert (p.max_inner_iterations, p.max_net_epochs, p.batch_real) == (None, None, None)
    assert (p.num_runs, p.num_nets, p.eval_epochs, p.device) == (2, 5, None, "auto")
    assert p.default_dataset == "cifar10"
    text = p.reductions()
    for part in (
        "K_o 200 of 1000",
        "gamma_o 50 (paper 250)",
        "K_i as the paper",
        "T as the paper",
        "256 real/class",
        "2 run(s) x 5 networks",
        "E as the protocol",
    ):
        assert part in text


def test_quick_is_about_one_gpu_hour_by_the_cost_model(tmp_path):
    """Every notebook planned at quick (as `dcc sweep --plan --profile quick` does, on an empty store
    and without data: placeholder shapes), each job once: 0.5 to 1.5 hours on one GPU at the assumed
    throughput, with the cells of the paper's claims in it. Notebook 13's study, which the sweep
    does not plan, is priced apart. Plans nine notebooks: about half a minute on 2 cores."""
    from dcclib.lab import cost, sweep

    (tmp_path / "data").mkdir()
    s = sweep.plan("quick", parameters={"data_root": str(tmp_path / "data")}, results=tmp_path / "results")
    assert not [p.notebook for p in s.plans if p.error]
    jobs = s.jobs()
    hours = sum(j.flops for j in jobs) / cost.ASSUMED_FLOPS_PER_S / 3600
    assert 0.5 <= hours <= 1.5, f"quick plans {hours:.2f} GPU-hours at the assumed throughput"
    labels = {j.label for j in jobs}
    for ipc in (1, 10):  # Table 2 on CIFAR-10 (notebook 04)
        for method in ("dc", "dsa", "dcc", "dsac"):
            assert f"cifar10 {method} ipc {ipc} run 1" in labels
    for method in ("dc", "dcc"):  # Table 1, one fine-grained group (notebook 03)
        assert f"imagenet32-automobile {method} ipc 10 run 0" in labels
    for method in ("dcc", "dsac"):  # Table 4's warm-up ablation on CIFAR-10
        assert f"cifar10 {method} ipc 1 run 0 warmup=none" in labels
    kinds = {j.kind for j in jobs}
    assert {"velocity", "alignment"} <= kinds  # Figures 4 and 6
    study = cost.study_flops("quick") / cost.ASSUMED_FLOPS_PER_S / 3600
    assert 0 < study <= 0.25, f"notebook 13's quick study: {study:.2f} GPU-hours"
