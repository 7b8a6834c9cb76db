"""Decoding from an encoder–decoder model."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["EncoderDecoder", "greedy_decode"]


class EncoderDecoder(Protocol):
    """What :func:`greedy_decode` needs: ``encode(src) → memory`` and ``decode(tgt, memory, src) → logits``."""

    def encode(self, src_ids: Tensor) -> Tensor: ...

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor: ...


@torch.no_grad()
def greedy_decode(
    model: EncoderDecoder, src_ids: Tensor, *, bos_id: int, eos_id: int, pad_id: int, max_new_tokens: int
) -> Tensor:
    """Greedy decoding (贪心解码): encode once, then repeatedly append the most probable next token.

    Args:
        src_ids: ``[B, S]`` source ids (padded with ``pad_id``).
        bos_id: start token that opens every target.
        eos_id: a sequence is finished once it has produced ``eos_id``.
        pad_id: written after a sequence has finished.
        max_new_tokens: upper bound on generated tokens.

    Returns:
        ``[B, N]`` generated ids *without* the start token, ``N <= max_new_tokens``; each row holds its
        tokens up to and including ``eos_id``, then ``pad_id``. Stops early once every row is finished.
        Ties between equal logits go to the lowest id (``argmax``).
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    memory = model.encode(src_ids)
    batch = src_ids.shape[0]
    tokens = torch.full((batch, 1), bos_id, dtype=torch.long, device=src_ids.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src_ids.device)
    for _ in range(max_new_tokens):
        logits = model.decode(tokens, memory, src_ids)[:, -1]
        next_token = logits.argmax(dim=-1).masked_fill(finished, pad_id)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
        finished |= next_token == eos_id
        if bool(finished.all()):
            break
    return tokens[:, 1:]
