"""The rolling-buffer view (llmcore.viz.rolling_buffer): states, figure, static HTML and the step slider."""

from __future__ import annotations

import pytest
import torch

from llmcore import viz


def test_states_follow_position_mod_window_and_what_each_step_reads():
    states = viz.rolling_buffer_states(4, [3, 5, 1])
    assert [s.slots.tolist() for s in states] == [[0, 1, 2, -1], [4, 5, 6, 7], [8, 5, 6, 7]]
    # the 5-token chunk reads the 3 slots held before it, then itself: its first query (position 3) needs 0, 1, 2
    assert states[1].attended == (0, 1, 2, 3, 4, 5, 6, 7)
    assert states[2].written == (8,)


@pytest.mark.parametrize("bad", [dict(window=0, chunks=[1]), dict(window=3, chunks=[]), dict(window=3, chunks=[2, 0])])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        viz.rolling_buffer_states(**bad)


def test_html_table_has_one_row_per_step_and_every_held_position():
    html = viz.rolling_buffer_html(3, [1] * 5)
    assert html.count("<tr>") == 1 + 5
    for position in (2, 3, 4):
        assert f">{position}</td>" in html
    assert viz.rolling_buffer_html(3, [1] * 5, step=2).count("<tr>") == 1 + 2


def test_figure_and_slider():
    pytest.importorskip("matplotlib")
    pytest.importorskip("ipywidgets")
    figure = viz.plot_rolling_buffer(4, [1] * 6, step=3)
    assert len(figure.axes) == 1 and len(figure.axes[0].patches) == 3 * 4
    viewer = viz.rolling_buffer_viewer(4, [1] * 6)
    assert viewer.last_state.step == 1
    viewer.controls["step"].value = 6
    assert torch.equal(viewer.last_state.slots, torch.tensor([4, 5, 2, 3]))
    assert viewer.last_png and "slots [1]" in viewer.info.value
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "<table" in bundle["text/html"]
