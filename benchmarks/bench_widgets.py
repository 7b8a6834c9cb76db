"""How fast the widgets redraw after a control moves (W01, W02): the issue asks for ≤ 200 ms.

Each figure is the median wall-clock time of setting one control's value on a widget built outside
a kernel, which runs exactly what the browser's slider triggers: recompute from llmcore, draw the
matplotlib figure, render the PNG and put it in the widget's Output. The browser's own round trip
(websocket, image decode) is not included; tests/test_browser_widgets.py covers it end to end.

The mask explorer repaints only the artists that change (``llmcore.viz._common.BlitScene``) unless a
size changes (``mask_rebuild_64_length_change``). The position explorer rebuilds its figure on every
move; a control that changes no label (ALiBi's head) reuses the layout found for the first figure,
others (RoPE's distance range) are laid out afresh.
"""

from __future__ import annotations

from itertools import cycle

from benchmarks.common import Figure, median_seconds

TARGET_MS = 200.0
REPEATS = 9


def _redraw_ms(explorer, control: str, values: list) -> float:
    """Median ms of ``explorer.controls[control].value = v`` over values that always differ from the last."""
    values_cycle = cycle(values)
    slider = explorer.controls[control]

    def move() -> None:
        slider.value = next(values_cycle)

    before = explorer.redraws
    seconds = median_seconds(move, repeats=REPEATS, warmup=2)
    if explorer.redraws != before + REPEATS + 2 or explorer.last_error is not None:
        raise RuntimeError(f"{control}: expected one redraw per move, got {explorer.redraws - before}; {explorer.last_error!r}")
    return 1000 * seconds


def run() -> list[Figure]:
    from llmcore import viz

    masks = viz.mask_explorer(64, pattern="sliding_window", layers=4)
    mask_ms = _redraw_ms(masks, "window", [5, 9, 17, 33, 12, 7])

    def learner(b, h, q_idx, kv_idx):  # the off-by-one window a learner might write
        return (q_idx - kv_idx >= 0) & (q_idx - kv_idx <= 8)

    # A new length changes every size in the figure: it is rebuilt and laid out again, not blitted.
    rebuild_ms = _redraw_ms(masks, "length", [63, 64])

    compared = viz.mask_explorer(64, learner_mask=learner, pattern="sliding_window", layers=4)
    compared_ms = _redraw_ms(compared, "window", [5, 9, 17, 33, 12, 7])

    positions = viz.position_explorer("rope_decay")
    # every distance is new: each redraw lays the figure out afresh (constrained layout)
    rope_ms = _redraw_ms(positions, "distance", [128 + 16 * i for i in range(REPEATS + 2)])
    positions.controls["view"].value = "alibi"
    # which head is shown changes no label: the layout of the first figure is reused
    alibi_ms = _redraw_ms(positions, "head", [1, 2, 3, 4, 5])
    return [
        Figure("mask_redraw_64", mask_ms, "ms", "<=", TARGET_MS),
        Figure("mask_rebuild_64_length_change", rebuild_ms, "ms", "<=", TARGET_MS),
        Figure("mask_redraw_64_with_learner", compared_ms, "ms", "<=", TARGET_MS),
        Figure("position_redraw_rope_distance", rope_ms, "ms", "<=", TARGET_MS),
        Figure("position_redraw_alibi_head", alibi_ms, "ms", "<=", TARGET_MS),
    ]
