"""Seeding and the random-number-generator states a checkpoint must carry to resume exactly."""

from __future__ import annotations

import random
from typing import Any

import torch

__all__ = ["set_seed", "rng_states", "restore_rng_states"]


def set_seed(seed: int) -> None:
    """Seed Python's ``random`` and PyTorch's global generators (CPU and every GPU).

    Call it before building a model: weight initialisation and dropout draw from the global
    generator, so two runs that start from the same seed compute the same numbers on the same
    hardware and thread count.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """The current state of Python's and PyTorch's global generators (``cuda`` empty without a GPU)."""
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` returned; GPU states are restored only where GPUs exist."""
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
