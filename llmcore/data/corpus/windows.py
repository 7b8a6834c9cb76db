"""Byte-level tokens and random training windows for the shipped corpora.

Byte-level tokenisation (字节级分词) maps text to its UTF-8 bytes: a fixed vocabulary of 256 ids,
no training, no unknown tokens (ByT5, Xue et al., 2022; GPT-2's BPE starts from the same bytes).
A Chinese character becomes three tokens, an ASCII letter one.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BYTE_VOCAB_SIZE", "byte_tokens", "sample_windows"]

BYTE_VOCAB_SIZE = 256


def byte_tokens(text: str) -> Tensor:
    """The UTF-8 bytes of ``text`` as a ``[N]`` int64 tensor of ids in ``0 … 255``."""
    if not isinstance(text, str):
        raise TypeError(f"byte_tokens expects a str, got {type(text).__name__}")
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def sample_windows(
    tokens: Tensor, batch_size: int, context_length: int, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw ``batch_size`` random windows for next-token training (下一个词预测).

    Start positions are uniform over every offset that leaves room for the window and its next
    token, drawn with ``torch.randint`` from ``generator`` (so a seeded generator gives the same
    batches on every run). Returns ``x [B, L]`` and ``y [B, L]`` with ``y[:, t] = x[:, t + 1]``
    inside the window and ``y[:, L − 1]`` the token that follows it.
    """
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be a 1-D tensor [N], got shape {tuple(tokens.shape)}")
    if batch_size < 1 or context_length < 1:
        raise ValueError(f"batch_size and context_length must be positive, got {batch_size} and {context_length}")
    if tokens.numel() < context_length + 1:
        raise ValueError(
            f"{tokens.numel()} tokens are too few for a window of context_length={context_length} plus its next token"
        )
    starts = torch.randint(0, tokens.numel() - context_length, (batch_size,), generator=generator)
    offsets = torch.arange(context_length + 1)
    windows = tokens[starts.unsqueeze(1) + offsets]
    return windows[:, :-1], windows[:, 1:]
