"""Mistral's rolling buffer (滚动缓存), step by step: which position sits in which slot.

A sliding-window layer (滑动窗口注意力, Mistral 7B, Jiang et al. 2023, §2) lets a query see ``W``
keys, itself included, so its KV cache needs only ``W`` slots: position ``p`` is written into slot
``p mod W`` and overwrites position ``p − W``, which no later query can see. A prompt is fed in
chunks (Mistral's reference code uses chunks of ``W``); a chunk's queries read the slots as they
were *before* the chunk plus the chunk's own keys, then the chunk's last ``min(L, W)`` tokens are
written.

Everything drawn here comes from :class:`llmcore.cache.RollingKVCache` itself: the cache is fed
keys whose single feature *is* their position, and the picture shows what its buffer holds.

* :func:`rolling_buffer_states` - the states after each chunk (torch only);
* :func:`plot_rolling_buffer` - rows = steps, columns = slots (a matplotlib Figure);
* :func:`rolling_buffer_html` - the same table as HTML, for places without widgets or matplotlib;
* :func:`rolling_buffer_viewer` - a step slider over the figure; its static HTML table travels with
  it, so a notebook viewer without widgets still shows every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from ..cache import RollingKVCache
from ._common import Explorer, _escape, int_slider, new_figure

__all__ = ["BufferState", "RollingBufferViewer", "plot_rolling_buffer", "rolling_buffer_html",
           "rolling_buffer_states", "rolling_buffer_viewer"]

WRITTEN_COLOR = "#f28e00"
HELD_COLOR = "#2f5d9e"
EMPTY_COLOR = "#eeeeee"


@dataclass(frozen=True)
class BufferState:
    """The rolling buffer after one step.

    Attributes:
        step: 1 for the first chunk.
        written: the absolute positions of this step's chunk, in order.
        slots: ``[W]`` long, the position held by each slot after the step, −1 where empty.
        attended: the positions this step's queries read: the slots held before the step, then the chunk.
    """

    step: int
    written: tuple[int, ...]
    slots: Tensor
    attended: tuple[int, ...]


def _check_chunks(window: int, chunks: Sequence[int], function: str) -> list[int]:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"{function}: window must be a positive int, got {window!r}")
    chunks = list(chunks)
    if not chunks or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in chunks):
        raise ValueError(f"{function}: chunks must be a non-empty sequence of positive ints, got {chunks!r}")
    return chunks


def rolling_buffer_states(window: int, chunks: Sequence[int]) -> list[BufferState]:
    """Feed :class:`~llmcore.cache.RollingKVCache` chunks of ``chunks[i]`` tokens; the state after each.

    Example: ``rolling_buffer_states(4, [1] * 6)[-1].slots`` is ``[4, 5, 2, 3]``.
    """
    chunks = _check_chunks(window, chunks, "rolling_buffer_states")
    cache = RollingKVCache(window)
    states, start = [], 0
    for step, size in enumerate(chunks, start=1):
        held_before = tuple(cache.slot_positions().tolist())
        written = tuple(range(start, start + size))
        # A key whose one feature is its own position: the buffer's content tells which position each slot holds.
        keys = torch.tensor(written, dtype=torch.float64).view(1, 1, size, 1)
        cache.update(keys, keys)
        assert cache.keys is not None
        filled = min(cache.length, window)
        slots = torch.full((window,), -1, dtype=torch.long)
        slots[:filled] = cache.keys[0, 0, :filled, 0].long()
        states.append(BufferState(step, written, slots, held_before + written))
        start += size
    return states


def _chunk_label(written: tuple[int, ...]) -> str:
    return f"{written[0]}" if len(written) == 1 else f"{written[0]}–{written[-1]}"


def plot_rolling_buffer(window: int, chunks: Sequence[int], step: int | None = None) -> Any:
    """Rows = steps 1 … ``step`` (default: all), columns = the ``W`` slots; each cell shows the position it
    holds. Orange = written at that step, blue = kept from before, grey = empty."""
    states = rolling_buffer_states(window, chunks)
    step = len(states) if step is None else step
    if not 1 <= step <= len(states):
        raise ValueError(f"plot_rolling_buffer: step must be in 1..{len(states)}, got {step!r}")
    shown = states[:step]
    figure = new_figure(min(max(4.5, 1.6 + 0.55 * window), 10.0), 1.1 + 0.38 * len(shown))
    ax = figure.add_subplot()
    from matplotlib.patches import Rectangle

    for row, state in enumerate(shown):
        for slot, position in enumerate(state.slots.tolist()):
            color = EMPTY_COLOR if position < 0 else WRITTEN_COLOR if position in state.written else HELD_COLOR
            ax.add_patch(Rectangle((slot, row), 1, 1, facecolor=color, edgecolor="white", linewidth=1.5))
            if position >= 0:
                ax.text(slot + 0.5, row + 0.5, str(position), ha="center", va="center", fontsize=9, color="white")
    ax.set_xlim(0, window)
    ax.set_ylim(len(shown), 0)
    ax.set_xticks([s + 0.5 for s in range(window)], [str(s) for s in range(window)])
    ax.set_yticks([r + 0.5 for r in range(len(shown))],
                  [f"step {s.step}: +{_chunk_label(s.written)}" for s in shown])
    ax.set_xlabel("slot = position mod W")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"W = {window} · orange: written now, blue: kept", fontsize=10)
    return figure


def rolling_buffer_html(window: int, chunks: Sequence[int], step: int | None = None) -> str:
    """The table of :func:`plot_rolling_buffer` as HTML (rows = steps, columns = slots), with the
    positions each step's queries read. Needs nothing beyond torch."""
    states = rolling_buffer_states(window, chunks)
    step = len(states) if step is None else step
    if not 1 <= step <= len(states):
        raise ValueError(f"rolling_buffer_html: step must be in 1..{len(states)}, got {step!r}")
    cell = "padding:2px 8px;text-align:center;border:1px solid white;"
    header = "".join(f"<th style='{cell}'>slot {s}</th>" for s in range(window))
    rows = []
    for state in states[:step]:
        cells = []
        for position in state.slots.tolist():
            color = EMPTY_COLOR if position < 0 else WRITTEN_COLOR if position in state.written else HELD_COLOR
            text = "" if position < 0 else str(position)
            cells.append(f"<td style='{cell}background:{color};color:white'>{text}</td>")
        read = _escape(", ".join(str(p) for p in state.attended))
        rows.append(f"<tr><th style='{cell}'>step {state.step}: +{_chunk_label(state.written)}</th>{''.join(cells)}"
                    f"<td style='{cell}text-align:left'>queries read {read}</td></tr>")
    return (f"<table style='border-collapse:collapse;font-family:monospace'><tr><th></th>{header}<th></th></tr>"
            f"{''.join(rows)}</table>")


class RollingBufferViewer(Explorer):
    """The rolling-buffer widget; see :func:`rolling_buffer_viewer`. ``controls["step"]`` picks the step shown;
    ``last_state`` is that step's :class:`BufferState`."""

    def __init__(self, window: int, chunks: Sequence[int], step: int = 1) -> None:
        self.window, self.chunks = window, _check_chunks(window, chunks, "rolling_buffer_viewer")
        self.states = rolling_buffer_states(window, self.chunks)
        if not 1 <= step <= len(self.states):
            raise ValueError(f"rolling_buffer_viewer: step must be in 1..{len(self.states)}, got {step!r}")
        super().__init__()
        self.last_state: BufferState | None = None
        self.controls["step"] = int_slider("step", step, 1, len(self.states), "step")
        self._finish([self.controls["step"]])

    def _draw(self) -> tuple[Any, str]:
        step = self.controls["step"].value
        state = self.states[step - 1]
        self.last_state = state
        held = [p for p in state.slots.tolist() if p >= 0]
        info = (f"step {step}: positions {_chunk_label(state.written)} written into slots "
                f"{sorted({p % self.window for p in state.written[-self.window:]})}; the buffer holds "
                f"{sorted(held)}; this step's queries read {list(state.attended)}")
        return plot_rolling_buffer(self.window, self.chunks, step), info

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/html"] = rolling_buffer_html(self.window, self.chunks)
        return bundle


def rolling_buffer_viewer(window: int = 4, chunks: Sequence[int] | None = None, *,
                          step: int = 1) -> RollingBufferViewer:
    """A slider over the steps of a rolling buffer of ``window`` slots fed ``chunks`` (default: 11 single
    tokens). Leave it as a cell's last expression; without widgets the static table shows instead."""
    return RollingBufferViewer(window, [1] * 11 if chunks is None else chunks, step)
