"""Session-wide hooks and fixtures: the model-zoo parity table (architecture → oracle → max error), one thread."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small matrices gain nothing from a second thread, and a busy CPU makes two threads far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    try:
        from zoo_helpers import PARITY_RESULTS
    except ImportError:
        return
    if not PARITY_RESULTS:
        return
    worst: dict[tuple[str, str], float] = {}
    for name, oracle, error in PARITY_RESULTS:
        worst[(name, oracle)] = max(error, worst.get((name, oracle), 0.0))
    terminalreporter.section("model-zoo parity (max |Δlogit| / max |logit|)")
    for (name, oracle), error in sorted(worst.items()):
        terminalreporter.write_line(f"{name:<28} {oracle:<44} {error:.1e}")
