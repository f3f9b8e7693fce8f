"""The shared figures (dcclib.lab.views): error bars, the paper's markers only where comparable,
class names on image grids, line plots whose coinciding series stay visible."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from tiny import tiny_dataset  # noqa: E402

from dcclib.analyses.kernel_velocity import VelocityTrace, plot_velocity  # noqa: E402
from dcclib.lab.plots import (  # noqa: E402
    OURS_LABEL,
    PAPER_LABEL,
    REFERENCE_LABEL,
    image_grid,
    paper_marker,
    plot_comparison,
    plot_series,
)

REDUCED = "reduced settings (profile quick)"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _row(
    method: str, ipc: int, ours: float, paper: float, comparable: bool, note: str = REDUCED, **kw
) -> dict:
    row = {
        "table": "table2",
        "profile": "quick",
        "dataset": "CIFAR-10",
        "data used": "CIFAR-10 [cifar10-jpeg]",
        "ipc": ipc,
        "method": method,
        "model": "ConvNet",
        "warm-up": "bi-level",
        "ours": ours,
        "ours std": 1.5,
        "runs": 2,
        "n": 6,
        "paper": paper,
        "paper std": 0.5,
        "difference": ours - paper if comparable and not math.isnan(paper) else math.nan,
        "note": note,
    }
    return {**row, **kw}


def _paper_points(ax, marker_face: str = "black") -> list[tuple[float, float]]:
    """(x, y) of every drawn paper diamond of this face colour."""
    out = []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer) and c.lines[0] is not None and c.lines[0].get_marker() == "D":
            if matplotlib.colors.same_color(c.lines[0].get_markerfacecolor(), marker_face):
                out += list(zip(c.lines[0].get_xdata(), c.lines[0].get_ydata()))
    return out


def _ours_errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == OURS_LABEL]


def test_bars_carry_error_bars_and_the_paper_only_where_comparable():
    rows = [
        _row("DC", 1, 30.0, 28.3, True),
        _row("DSA", 1, 31.0, 28.8, False, note=REDUCED + "; paper's number is at 50 img/cls"),
        _row("DCC", 1, 33.0, 34.0, True),
        _row("DC", 10, 45.0, 44.9, True),
        _row("DSA", 10, 47.0, math.nan, False),  # the paper has no number
        _row("DCC", 10, 49.0, 49.9, True),
    ]
    fig = plot_comparison(pd.DataFrame(rows))
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert sorted(round(b.get_height(), 1) for b in bars) == [30.0, 31.0, 33.0, 45.0, 47.0, 49.0]
    (ours,) = _ours_errorbars(ax)
    segments = ours.lines[2][0].get_segments()  # one vertical segment per bar: mean ± std
    assert len(segments) == 6 and all(math.isclose(s[1][1] - s[0][1], 3.0) for s in segments)
    points = _paper_points(ax)
    assert sorted(round(y, 1) for _, y in points) == [28.3, 34.0, 44.9, 49.9]
    # each diamond sits on its own bar's centre
    centres = {round(b.get_height(), 1): b.get_x() + b.get_width() / 2 for b in bars}
    for ours_value, paper_value in ((30.0, 28.3), (33.0, 34.0), (45.0, 44.9), (49.0, 49.9)):
        assert any(math.isclose(x, centres[ours_value]) and math.isclose(y, paper_value) for x, y in points)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert OURS_LABEL in labels and PAPER_LABEL in labels
    assert REDUCED in ax.get_title() and "n = 6" in ax.get_title()


def test_no_paper_marker_beside_stand_in_data():
    stand = "reduced settings (profile smoke); stand-in data: not comparable with the paper"
    rows = [
        _row(
            "DC", 1, 60.0, 28.3, False, note=stand, **{"data used": "embedded-mnist (stand-in for CIFAR-10)"}
        ),
        _row("DCC", 1, 61.0, 34.0, False, note=stand + "; reference: the DC/DSA papers"),
    ]
    fig = plot_comparison(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert _paper_points(ax) == [] and _paper_points(ax, "white") == []
    assert len(_ours_errorbars(ax)) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert PAPER_LABEL not in labels and REFERENCE_LABEL not in labels


def test_a_reference_number_is_an_open_marker_and_n_goes_on_bars_when_it_differs():
    ref = "reference: the DC/DSA papers (the DCC paper has no number for this dataset)"
    rows = [
        _row("DC", 1, 90.0, 91.7, True, note=ref, dataset="MNIST", n=3),
        _row("DSA", 1, 88.0, 88.7, False, note=ref, dataset="MNIST", n=6),
    ]
    fig = plot_comparison(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert sorted(round(y, 1) for _, y in _paper_points(ax, "white")) == [88.7, 91.7]
    assert _paper_points(ax) == []
    assert {"n=3", "n=6"} <= {t.get_text() for t in ax.texts}
    assert REFERENCE_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_paper_marker_rule():
    assert paper_marker(pd.Series(_row("DC", 1, 30.0, 28.3, True))) == "paper"
    assert paper_marker(pd.Series(_row("DC", 1, 30.0, 28.3, False))) is None
    assert paper_marker(pd.Series(_row("DC", 1, 30.0, 28.3, True, note="stand-in data"))) is None
    assert paper_marker(pd.Series(_row("DC", 1, 30.0, math.nan, True, note="reference: x"))) is None


def test_panels_without_results_and_rows_sharing_a_bar():
    rows = [
        _row("DC", 1, 30.0, 28.3, True, model="ConvNet"),
        _row("DC", 1, 20.0, 28.3, False, model="MLP"),  # same method and ipc: model joins the hue
        _row("DC", 1, math.nan, 10.0, False, dataset="SVHN", note="not run: data missing"),
    ]
    fig = plot_comparison(pd.DataFrame(rows))
    assert len(fig.axes) >= 2
    assert "not run" in " ".join(t.get_text() for t in fig.axes[1].texts)
    bars = [p for p in fig.axes[0].patches if p.get_height() > 0]
    assert len(bars) == 2 and len({round(b.get_x(), 3) for b in bars}) == 2


@pytest.mark.parametrize(
    "per_class,per_row,where",
    [(2, 2, "rows"), (1, 1, "rows"), (1, 3, "columns"), (4, 3, "mixed")],
)
def test_image_grid_names_the_classes(per_class, per_row, where):
    data = tiny_dataset(num_classes=3, per_class=4, size=8)
    images = data.train_images.view(3, 4, *data.train_images.shape[1:])[:, :per_class].reshape(
        -1, *data.train_images.shape[1:]
    )
    fig, ax = plt.subplots()
    image_grid(ax, images, data, per_row, "a title")
    texts = [t.get_text() for t in ax.texts]
    assert ax.get_title() == "a title" and len(ax.images) == 1
    for name in data.class_names:
        assert any(name in t for t in texts)
    height, width = ax.images[0].get_array().shape[:2]
    if where == "rows":  # left of the image, one per row, at the rows' centres
        assert len(texts) == len(images) // per_row
        assert all(t.get_position()[0] < 0 for t in ax.texts)
        ys = [t.get_position()[1] for t in ax.texts]
        assert ys == sorted(ys) and 0 < ys[0] < ys[-1] < height
    elif where == "columns":  # under the image, one per column
        assert len(texts) == 3 and all(t.get_position()[1] > height - 1 for t in ax.texts)
        xs = [t.get_position()[0] for t in ax.texts]
        assert xs == sorted(xs) and 0 < xs[0] < xs[-1] < width


def test_image_grid_takes_labels_and_skips_uneven_counts():
    data = tiny_dataset(num_classes=3, per_class=4, size=8)
    fig, ax = plt.subplots()
    image_grid(ax, data.train_images[:2], data, 1, labels=torch.tensor([2, 0]))
    assert [t.get_text() for t in ax.texts] == ["class2", "class0"]
    fig, ax = plt.subplots()
    image_grid(ax, data.train_images[:4], data, 2)  # 4 images, 3 classes: unknown which is which
    assert len(ax.texts) == 0 and len(ax.images) == 1


def test_plot_series_keeps_coinciding_series_visible():
    frame = pd.DataFrame(
        [
            {"method": m, "run": r, "after task": f"T{t}", "acc": 60.0 + t + (r if m != "RB" else 0)}
            for m in ("RB", "DSA", "DSAC")
            for r in range(3)
            for t in (1, 2, 3)
        ]
    )
    frame.loc[frame["method"] == "DSAC", "acc"] = frame.loc[frame["method"] == "DSA", "acc"].to_numpy()
    fig, ax = plt.subplots()
    plot_series(ax, frame, "after task", "acc", "method")
    containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(containers) == 3
    lines = [c.lines[0] for c in containers]
    assert len({(ln.get_marker(), str(ln.get_linestyle())) for ln in lines}) == 3
    dsa, dsac = lines[1], lines[2]
    assert np.allclose(dsa.get_ydata(), dsac.get_ydata())  # the same values ...
    assert not np.allclose(dsa.get_xdata(), dsac.get_xdata())  # ... side by side, not on top
    assert containers[1].has_yerr and containers[1].lines[2][0].get_segments()[0][1][1] > 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["T1", "T2", "T3"]
    assert "n=3" in containers[1].get_label()


def test_plot_velocity_styles_and_run_bands():
    def trace(shift: float) -> VelocityTrace:
        outer = np.repeat(np.arange(3), 4)
        inner = np.tile(np.arange(4), 3)
        velocity = np.r_[np.nan, np.linspace(0.1, 0.3, 11) + shift]
        return VelocityTrace(outer, inner, np.zeros(12, dtype=bool), velocity, "full", 1)

    fig, ax = plt.subplots()
    plot_velocity({"DC": trace(0.0), "DCC": [trace(0.0), trace(0.02)]}, ax)
    dc, dcc = [ln for ln in ax.lines if ln.get_label() in ("DC", "DCC (mean ± std, 2 runs)")]
    assert (dc.get_marker(), dc.get_linestyle()) != (dcc.get_marker(), dcc.get_linestyle())
    assert len(ax.collections) == 1  # the band of the method with several runs
    assert sum(ln.get_label() == "network re-initialised" for ln in ax.lines) == 1


def test_a_column_that_follows_x_does_not_split_the_bars():
    rows = [_row("DC", 1, 30.0, 28.3, True, **{"warm-up": "-"}), _row("DCC", 1, 33.0, 34.0, True)]
    ax = plot_comparison(pd.DataFrame(rows)).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "1" and not any("warm-up" in label for label in labels)
    centres = sorted(p.get_x() + p.get_width() / 2 for p in ax.patches if p.get_height() > 0)
    assert np.allclose(centres, [0.0, 1.0])  # each bar centred on its category
