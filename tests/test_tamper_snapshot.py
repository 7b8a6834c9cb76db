"""What a grading kernel snapshots as "everything a check relies on" stays put while llmcore works.

The kernel (grader.kernel_launcher) records every attribute of every llmcore and grader.checks
module loaded at start-up (the chapters' checks are preloaded, and with them llmcore.viz) and calls
a notebook tampered when one is replaced. llmcore's own lazy state must therefore never be a
reassigned module global, or an honest notebook that draws a figure would be graded as a cheat.
"""

from __future__ import annotations

import matplotlib
import torch

import grader.checks  # noqa: F401  (what a grading kernel preloads)
from grader import kernel_launcher


def _replaced(before: dict, after: dict) -> list[str]:
    return sorted(name for name, value in before.items() if name in after and after[name] is not value)


def test_drawing_figures_replaces_no_watched_attribute() -> None:
    matplotlib.use("Agg")
    from llmcore import causal_mask
    from llmcore.viz import masks, positions

    before = kernel_launcher._watched_objects()
    masks.plot_mask(masks.evaluate_mask(causal_mask, 6, 6), title="causal")
    positions.plot_rope_rotation()
    assert _replaced(before, kernel_launcher._watched_objects()) == []


def test_running_chapter_checks_replaces_no_watched_attribute() -> None:
    from grader.checks.spec import REGISTRY

    before = kernel_launcher._watched_objects()
    for exercise_id in ("causal_mask_mod", "sliding_window_mask", "rms_norm", "rope_frequencies"):
        REGISTRY[exercise_id].self_test()
    torch.manual_seed(0)
    assert _replaced(before, kernel_launcher._watched_objects()) == []
