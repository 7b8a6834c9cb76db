"""Inputs for exercise checks: one seeded source of random tensors, ids, lengths and masks.

A check's case builder receives a :class:`CaseRandom` made from the exercise's seed (see
:func:`grader.checks.spec.exercise_seed`), so every draw of every case is reproducible, and the
visible and hidden runs draw from different seeds. Masks follow the course's convention:
boolean, True = may attend.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CaseRandom", "causal", "lengths_mask", "left_lengths_mask"]


class CaseRandom:
    """Seeded random inputs for one run of a check (all draws come from one ``torch.Generator``)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32, *, scale: float = 1.0,
               shift: float = 0.0) -> Tensor:
        """Standard-normal entries times ``scale`` plus ``shift``."""
        return torch.randn(shape, generator=self.generator, dtype=dtype) * scale + shift

    def uniform(self, shape: tuple[int, ...]) -> Tensor:
        return torch.rand(shape, generator=self.generator)

    def ids(self, vocab_size: int, shape: tuple[int, ...], *, low: int = 0) -> Tensor:
        """Token ids drawn uniformly from ``[low, vocab_size)``."""
        return torch.randint(low, vocab_size, shape, generator=self.generator)

    def ids_except(self, vocab_size: int, shape: tuple[int, ...], excluded: int) -> Tensor:
        """Token ids from ``[0, vocab_size)`` that never equal ``excluded`` (e.g. the pad id)."""
        ids = torch.randint(0, vocab_size - 1, shape, generator=self.generator)
        return ids + (ids >= excluded).long()

    def padded_ids(self, lengths: list[int], length: int, pad_id: int, *, vocab_size: int = 50,
                   left: bool = False) -> Tensor:
        """``[len(lengths), length]`` ids: row b has ``lengths[b]`` real tokens (never ``pad_id``), padded
        on the right (or the left) with ``pad_id``."""
        ids = self.ids_except(vocab_size, (len(lengths), length), pad_id)
        positions = torch.arange(length)
        for row, n in enumerate(lengths):
            ids[row, positions < length - n if left else positions >= n] = pad_id
        return ids

    def sequences(self, lengths: list[int], vocab_size: int, *, lowest: int, pad_id: int,
                  start: int | None = None) -> Tensor:
        """Right-padded rows of random ids in ``[lowest, vocab_size)``, of the given lengths, each opened by
        ``start`` when given (as a decoder's <s>)."""
        width = max(lengths) + (start is not None)
        ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
        for row, n in enumerate(lengths):
            tokens = torch.randint(lowest, vocab_size, (n,), generator=self.generator)
            if start is not None:
                tokens = torch.cat([torch.tensor([start]), tokens])
            ids[row, : len(tokens)] = tokens
        return ids

    def child_seed(self, salt: int) -> int:
        """A seed for something built outside this generator (a module's weights), fixed by ``salt``."""
        return (self.seed * 1_000_003 + salt) % (2**62)


def lengths_mask(lengths: list[int], length: int) -> Tensor:
    """Padding mask ``[B, 1, 1, length]``: True at the first ``lengths[b]`` positions of row b."""
    return (torch.arange(length) < torch.tensor(lengths).view(-1, 1)).view(len(lengths), 1, 1, length)


def left_lengths_mask(lengths: list[int], length: int) -> Tensor:
    """Left-padding mask ``[B, 1, 1, length]``: True at the last ``lengths[b]`` positions of row b."""
    return (torch.arange(length) >= length - torch.tensor(lengths).view(-1, 1)).view(len(lengths), 1, 1, length)


def causal(length: int, kv_length: int | None = None) -> Tensor:
    """Causal mask ``[L, S]`` (True on and below the diagonal, aligned at the top left)."""
    return torch.ones(length, length if kv_length is None else kv_length, dtype=torch.bool).tril()
