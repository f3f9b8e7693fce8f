"""Notebook 13's study: checkpoints of one run, stored and reused, and its reading."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from dcclib.condense import CondenseConfig, condense
from dcclib.errors import UserError
from dcclib.lab.convergence import STUDIES, Study, run_study, set_configs, studies_for, trajectories
from dcclib.lab.convergence_view import gaps, study_status
from dcclib.lab.experiments import Lab
from dcclib.lab.profiles import get_profile
from tests.tiny import tiny_dataset

TINY = replace(
    get_profile("smoke"), max_inner_iterations=2, max_net_epochs=1, batch_real=4, num_nets=2, eval_epochs=2
)


STUDY = Study(runs=(("tiny", "dc"), ("tiny", "dcc")), points=(1, 2, 4))


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Lab, pd.DataFrame]:
    """The study computed once (a fresh store), with its log."""
    tmp = tmp_path_factory.mktemp("study")
    lab = Lab("13_test", TINY, device="cpu", results_dir=str(tmp / "r"), output_dir=str(tmp / "o"))
    lab.add_dataset(tiny_dataset(size=8, per_class=8))
    return lab, run_study(lab, STUDY)


def test_points_are_checkpoints_of_one_run_stored_and_reused(ran):
    lab, frame = ran
    assert list(frame.K_o) == [1, 2, 4, 1, 2, 4] and set(frame.networks) == {2}
    computed = [line for line in lab.log if line.startswith("computed")]
    assert len(computed) == 6  # one snapshot per point and method, in one run each
    assert sum("evaluation for DCC at K_o 1 (the same set)" in line for line in lab.log) == 1
    lab.log.clear()
    again = run_study(lab, STUDY)  # everything from the store: nothing computed
    assert not lab.log and again.equals(frame)
    # the last point is the whole run: a separate run of that K_o gives the same set bit for bit
    cfg = set_configs(lab, "tiny", "dcc", STUDY)[4]
    record = lab.store.exact(cfg)
    stored, _, _ = lab.store.load_set(cfg, record)
    separate = condense(CondenseConfig(**cfg["config"]), lab.data("tiny"), progress=False)
    assert torch.equal(stored, separate.images)
    # DC never switches: its point at K_o 2 equals a separate DC run of 2 networks
    dc2 = set_configs(lab, "tiny", "dc", STUDY)[2]
    two = replace(CondenseConfig(**dc2["config"]), outer_iterations=2)
    assert torch.equal(
        lab.store.load_set(dc2, lab.store.exact(dc2))[0],
        condense(two, lab.data("tiny"), progress=False).images,
    )


def test_the_long_runs_warmup_makes_dcc_equal_dc_before_gamma_o(ran):
    lab, frame = ran
    cfg = set_configs(lab, "tiny", "dcc", STUDY)[4]["config"]
    assert cfg["gamma_outer"] == 1 and cfg["gamma_inner"] == cfg["inner_iterations"]  # K_o / 4; = K_i
    by = frame.set_index(["method", "K_o"])
    assert by.loc[("dcc", 1), "acc_mean"] == by.loc[("dc", 1), "acc_mean"]  # still the warm-up
    # there the set is DC's bit for bit: DC's evaluation is reused (said in the record), not redone
    record = lab.store.get(lab.eval_config(set_configs(lab, "tiny", "dcc", STUDY)[1], "convnet", 0))
    assert "equals DC's set bit for bit" in record["result"]["same_set_as"]
    after = lab.store.get(lab.eval_config(set_configs(lab, "tiny", "dcc", STUDY)[2], "convnet", 0))
    assert "same_set_as" not in after["result"]  # after gamma_o the sets differ: evaluated on their own
    assert by.loc[("dcc", 1), "collective_updates"] == 0 and by.loc[("dcc", 4), "collective_updates"] == 6
    paths = trajectories(lab, STUDY)
    assert {"grad_norm", "moved", "loss"} <= set(paths.columns) and len(paths) == 8
    dc, dcc = (paths[paths.method == m].reset_index() for m in ("dc", "dcc"))
    assert dc.grad_norm[0] == dcc.grad_norm[0] and dc.moved[0] == dcc.moved[0]
    assert dc.grad_norm[1] != dcc.grad_norm[1]  # the collective loss from network 2 on
    assert (paths.moved > 0).all() and (paths.grad_norm > 0).all()


def test_status_says_when_the_contrastive_method_is_below_its_twin():
    def frame(dcc: float, std: float = 1.0, data: str = "MNIST [x]") -> pd.DataFrame:
        rows = [("dc", 80.0), ("dcc", dcc)]
        return pd.DataFrame(
            [
                {
                    "dataset": "mnist",
                    "data": data,
                    "method": m,
                    "K_o": 200,
                    "acc_mean": a,
                    "acc_std": std,
                    "networks": 4,
                    "collective_updates": 750 if m == "dcc" else 0,
                    "image_updates": 1000,
                }
                for m, a in rows
            ]
        )

    assert study_status(frame(75.0), True).startswith("contradicts the paper's claim at reduced settings")
    assert "DCC - DC -5.0" in study_status(frame(75.0), True)
    assert study_status(frame(80.5), True).startswith("no difference measurable")
    assert study_status(frame(85.0), False).startswith("consistent with the paper's claim at the paper's")
    assert study_status(frame(75.0, data="embedded-mnist (stand-in for MNIST)"), True).startswith(
        "not a reproduction"
    )
    g = gaps(frame(77.0, std=2.0))
    assert g.gap.tolist() == [-3.0] and g.se.round(6).tolist() == [round((8 / 4) ** 0.5, 6)]


def test_profiles_studies_and_given_runs():
    assert max(STUDIES["cpu"][0].points) == 200 and ("cifar10", "dcc") in STUDIES["cpu"][0].runs
    assert {m for s in STUDIES["cpu"] for d, m in s.runs if d == "mnist"} == {"dc", "dcc", "dsa", "dsac"}
    assert max(STUDIES["paper"][0].points) == 1000
    (one,) = studies_for("cpu", runs=["mnist:dc"], points=[5, 10])
    assert one.runs == (("mnist", "dc"),) and one.points == (5, 10)
    with pytest.raises(UserError, match="dataset:method"):
        studies_for("cpu", runs=["mnist"])
    with pytest.raises(UserError, match="positive"):
        studies_for("cpu", points=[0, 5])


def test_without_computing_only_the_stored_points_are_shown(ran):
    lab, frame = ran
    longer = Study(runs=STUDY.runs, points=(1, 2, 4, 6))  # another run: nothing stored for it
    lab.log.clear()
    assert run_study(lab, longer, compute=False).empty
    assert any("not in the store: tiny DC at K_o 6" in line for line in lab.log)
    assert not any(line.startswith("computed") for line in lab.log)
    assert trajectories(lab, longer).empty
