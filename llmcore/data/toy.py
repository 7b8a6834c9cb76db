"""A toy sequence-to-sequence task generated in code: copy, reverse or sort a string of letters.

Reversal is the classic test of an attention model: every output token depends on one input token
far away, and a trained model's cross-attention draws the anti-diagonal. A model of ~100K parameters
learns it on a CPU in seconds.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ToySeq2SeqTask", "sequence_accuracy"]

_TRANSFORMS = {
    "copy": lambda seq: seq,
    "reverse": lambda seq: seq[::-1],
    "sort": sorted,
}


@dataclass(frozen=True)
class ToySeq2SeqTask:
    """Random letter strings and their transformation.

    Vocabulary: ``0 = <pad>``, ``1 = <s>`` (target start), ``2 = </s>`` (end), then ``n_symbols``
    letters ``a, b, c, …``. A source is the letters then ``</s>``; a target is ``<s>``, the
    transformed letters, ``</s>``; both right-padded with ``<pad>`` to the batch's longest.
    """

    transform: str = "reverse"
    n_symbols: int = 10
    min_length: int = 3
    max_length: int = 10

    PAD = 0
    BOS = 1
    EOS = 2

    def __post_init__(self) -> None:
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"ToySeq2SeqTask.transform must be one of {sorted(_TRANSFORMS)}, got {self.transform!r}")
        if not 1 <= self.n_symbols <= len(string.ascii_lowercase):
            raise ValueError(f"ToySeq2SeqTask.n_symbols must be in [1, 26], got {self.n_symbols}")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(
                f"ToySeq2SeqTask needs 1 <= min_length <= max_length, got {self.min_length} and {self.max_length}"
            )

    @property
    def vocab_size(self) -> int:
        return self.n_symbols + 3

    @property
    def max_target_length(self) -> int:
        """Longest target including ``<s>`` and ``</s>``."""
        return self.max_length + 2

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``batch_size`` examples: ``src [B, S]`` and ``tgt [B, T]`` (with ``<s>`` and ``</s>``).

        Train with teacher forcing on ``tgt[:, :-1]`` (decoder input) and ``tgt[:, 1:]`` (labels).
        """
        lengths = torch.randint(self.min_length, self.max_length + 1, (batch_size,), generator=generator)
        letters = torch.randint(3, 3 + self.n_symbols, (batch_size, self.max_length), generator=generator)
        sources, targets = [], []
        for row, length in zip(letters.tolist(), lengths.tolist()):
            seq = row[:length]
            sources.append(seq + [self.EOS])
            targets.append([self.BOS] + list(_TRANSFORMS[self.transform](seq)) + [self.EOS])
        return self._pad(sources), self._pad(targets)

    def _pad(self, rows: list[list[int]]) -> Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.PAD] * (width - len(r)) for r in rows], dtype=torch.long)

    def encode(self, text: str) -> Tensor:
        """``"abc"`` → ``[1, 4]`` source ids ``a b c </s>``."""
        alphabet = string.ascii_lowercase[: self.n_symbols]
        unknown = sorted(set(text) - set(alphabet))
        if unknown:
            raise ValueError(f"characters {unknown} are not in this task's alphabet {alphabet!r}")
        return torch.tensor([[alphabet.index(ch) + 3 for ch in text] + [self.EOS]], dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        """Token ids → letters, stopping at ``</s>`` and skipping ``<pad>``/``<s>``."""
        out = []
        for token in ids.tolist() if isinstance(ids, Tensor) else ids:
            if token == self.EOS:
                break
            if token >= 3:
                out.append(string.ascii_lowercase[token - 3])
        return "".join(out)


def sequence_accuracy(predicted: Tensor, target: Tensor, eos_id: int) -> float:
    """Fraction of rows whose tokens up to and including the first ``eos_id`` match exactly.

    Args:
        predicted: ``[B, N]`` generated ids (no start token).
        target: ``[B, T]`` reference ids (no start token), ending in ``eos_id``.
    """
    correct = 0
    for pred_row, tgt_row in zip(predicted.tolist(), target.tolist()):
        expected = tgt_row[: tgt_row.index(eos_id) + 1]
        correct += pred_row[: len(expected)] == expected
    return correct / max(len(target), 1)
