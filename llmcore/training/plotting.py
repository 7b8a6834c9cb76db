"""The loss curve of a training run (损失曲线), drawn with matplotlib imported on first use."""

from __future__ import annotations

from typing import Any, Sequence

from .history import TrainingHistory

__all__ = ["moving_average", "plot_losses"]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average (滑动平均): point ``i`` is the mean of ``values[i − window//2 : i + window//2 + 1]``.

    The window is cut at both ends (the first point averages the first ``window//2 + 1`` values), so
    the curve starts where the data starts and, unlike an exponential average seeded with the first
    value, has no lag: a plateau or a drop shows at the step where it happens.

    Args:
        values: the losses, one per step.
        window: an odd number of steps >= 1 (1 returns the values unchanged).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"moving_average: window must be an odd int >= 1, got {window!r}")
    values = [float(v) for v in values]
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + value)
    half, n = window // 2, len(values)
    return [(prefix[min(n, i + half + 1)] - prefix[max(0, i - half)]) / (min(n, i + half + 1) - max(0, i - half))
            for i in range(n)]


def plot_losses(history: TrainingHistory, *, ax: Any = None, label: str | None = None, log_scale: bool = False,
                smooth: int | None = None) -> Any:
    """Plot loss against step; returns the matplotlib ``Figure``.

    ``smooth`` (an odd number of steps) draws the raw losses faintly and their centred
    :func:`moving_average` over that many steps on top.

    Pass ``ax`` to draw several runs on one axes (give each a ``label``); without it a new figure
    (no pyplot state, shown as a cell's value in a notebook) is made. ``log_scale`` puts the loss
    on a logarithmic axis, where the late, slow part of a run stays readable.
    """
    if not isinstance(history, TrainingHistory):
        raise TypeError(f"plot_losses expects a TrainingHistory, got {type(history).__name__}")
    if not len(history):
        raise ValueError("the history is empty: train for at least one step before plotting")
    from ..viz._common import new_figure, require  # llmcore.viz (and matplotlib) only when drawing

    require("matplotlib", "llmcore.training.plot_losses")
    if ax is None:
        ax = new_figure(6.0, 3.5).add_subplot()
    if smooth is None:
        ax.plot(history.steps, history.losses, label=label)
    else:
        (raw,) = ax.plot(history.steps, history.losses, alpha=0.3)
        ax.plot(history.steps, moving_average(history.losses, smooth), color=raw.get_color(),
                label=(f"{label}: " if label else "") + f"moving average over {smooth} steps")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    if log_scale:
        ax.set_yscale("log")
    if label is not None or smooth is not None:
        ax.legend()
    return ax.figure
