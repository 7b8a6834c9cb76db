"""The loss curve of a training run (损失曲线), drawn with matplotlib imported on first use."""

from __future__ import annotations

from typing import Any

from .history import TrainingHistory

__all__ = ["plot_losses"]


def plot_losses(history: TrainingHistory, *, ax: Any = None, label: str | None = None, log_scale: bool = False) -> Any:
    """Plot loss against step; returns the matplotlib ``Figure``.

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
    ax.plot(history.steps, history.losses, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    if log_scale:
        ax.set_yscale("log")
    if label is not None:
        ax.legend()
    return ax.figure
