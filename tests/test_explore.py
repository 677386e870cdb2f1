"""Explorers recompute their figure when a control changes (or on Run), and fail visibly."""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest

from tlutils.explore import Explorer


def line(slope):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, slope])
    return fig


def test_changing_a_control_recomputes_the_figure():
    seen, figs = [], []
    ex = Explorer(lambda slope: seen.append(slope) or figs.append(line(slope)) or figs[-1],
                  {"slope": widgets.FloatSlider(value=1.0)})
    ex.show()
    assert seen == [1.0]
    ex.controls["slope"].value = 2.0
    assert seen == [1.0, 2.0] and ex.status.value == ""
    # other tests in this worker may leave figures open; only the explorer's own must be closed
    open_ = [f for f in figs if plt.fignum_exists(f.number)]
    assert not open_, "figures are closed after display (no duplicate output)"


def test_slow_figures_wait_for_the_run_button():
    ex = Explorer(line, {"slope": widgets.FloatSlider(value=1.0)}, run_button=True)
    ex.show()
    ex.controls["slope"].value = 3.0
    assert ex.renders == 1
    ex.button.click()
    assert ex.renders == 2


def test_errors_show_next_to_the_controls_and_bad_controls_are_refused():
    def broken(slope):
        raise RuntimeError("no such slope")
    ex = Explorer(broken, {"slope": widgets.FloatSlider()})
    ex.update()
    assert ex.status.value == "error: no such slope"
    with pytest.raises(TypeError, match="control 'slope' must be an ipywidgets value widget"):
        Explorer(line, {"slope": 1.0})
