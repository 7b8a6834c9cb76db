"""Attention masks written once, as predicates.

Every mask in the history of the Transformer is a rule deciding whether query position ``q_idx``
may look at key position ``kv_idx``. We write each rule once as a *mask_mod*, the convention of
PyTorch's FlexAttention::

    mask_mod(b, h, q_idx, kv_idx) -> bool      # True = may attend

The four arguments are integer tensors that broadcast against each other (batch index, head index,
query position, key position). A mask_mod must use only element-wise tensor operations
(``&``, ``|``, ``~``, comparisons, indexing a tensor with them) - never Python ``and``/``if`` on
the arguments - so that the same predicate works when broadcast here (:func:`dense_mask`) and under
``torch.vmap`` in FlexAttention's ``create_block_mask``.

Conventions
-----------
* ``True`` means *keep* (may attend), as in ``torch.nn.functional.scaled_dot_product_attention``.
* Positions are absolute indices into the query and key sequences. When the queries are the last
  ``Q`` of ``KV`` positions (incremental decoding with a KV cache) pass ``q_offset=KV - Q`` to
  :func:`dense_mask` so that causal masks align bottom-right.
* Sliding window of size ``W`` (Mistral, 滑动窗口注意力): a query sees exactly ``W`` keys, itself and
  the ``W - 1`` before it, i.e. ``0 <= q_idx - kv_idx < W``. (attention-gym writes
  ``q - kv <= W``, which is ``W + 1`` keys; we count the query itself inside the window, as Mistral's
  rolling buffer of ``W`` slots does.)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

__all__ = [
    "MaskMod",
    "full_mask",
    "causal_mask",
    "padding_mask",
    "sliding_window_mask",
    "prefix_lm_mask",
    "and_masks",
    "or_masks",
    "not_mask",
    "dense_mask",
]


def full_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    """Bidirectional attention (BERT encoder, 2017 encoder): every query sees every key."""
    return torch.ones_like(q_idx == kv_idx)


def causal_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    """Look-ahead mask (因果掩码) of the 2017 decoder and GPT: a query sees itself and the past."""
    return kv_idx <= q_idx


def padding_mask(key_keep: Tensor) -> MaskMod:
    """Hide padded keys (填充掩码).

    Args:
        key_keep: ``[B, S]`` boolean, ``True`` at real tokens and ``False`` at padding, or ``[B]``
            integer lengths (the first ``length`` keys of each row are real).

    Returns:
        A mask_mod true where ``kv_idx`` is a real token of batch row ``b``.
    """
    if key_keep.dtype == torch.bool:
        if key_keep.dim() != 2:
            raise ValueError(f"padding_mask: a boolean key_keep must be [B, S], got shape {tuple(key_keep.shape)}")

        def keep_real_tokens(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return key_keep[b, kv_idx]

        return keep_real_tokens
    if key_keep.dim() != 1 or key_keep.is_floating_point():
        raise ValueError(
            "padding_mask: key_keep must be a [B, S] boolean tensor or a [B] integer tensor of lengths, "
            f"got dtype {key_keep.dtype} and shape {tuple(key_keep.shape)}"
        )
    lengths = key_keep

    def keep_first_length_tokens(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return kv_idx < lengths[b]

    return keep_first_length_tokens


def sliding_window_mask(window: int) -> MaskMod:
    """Causal sliding window of ``window`` keys including the query itself (Mistral, Longformer-style).

    ``0 <= q_idx - kv_idx < window``; ``window=1`` lets a token see only itself.
    """
    if not isinstance(window, int) or window <= 0:
        raise ValueError(f"sliding_window_mask: window must be a positive int, got {window!r}")

    def within_window(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        distance = q_idx - kv_idx
        return (distance >= 0) & (distance < window)

    return within_window


def prefix_lm_mask(prefix_length: int | Tensor) -> MaskMod:
    """Prefix-LM (UniLM, GLM Part A / Part B): bidirectional inside the prefix, causal after it.

    Args:
        prefix_length: an int, or a ``[B]`` integer tensor with one prefix length per row.
    """
    prefix = torch.as_tensor(prefix_length)
    if prefix.is_floating_point() or prefix.dim() > 1 or bool((prefix < 0).any()):
        raise ValueError(f"prefix_lm_mask: prefix_length must be a non-negative int or [B] ints, got {prefix_length!r}")

    def prefix_or_causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        row_prefix = prefix.to(kv_idx.device)[b] if prefix.dim() == 1 else prefix.to(kv_idx.device)
        return (kv_idx < row_prefix) | (kv_idx <= q_idx)

    return prefix_or_causal


def and_masks(*mask_mods: MaskMod) -> MaskMod:
    """A position is kept only if every mask keeps it (e.g. causal AND padding in a decoder)."""
    if not mask_mods:
        raise ValueError("and_masks needs at least one mask_mod")

    def all_keep(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        keep = mask_mods[0](b, h, q_idx, kv_idx)
        for mask_mod in mask_mods[1:]:
            keep = keep & mask_mod(b, h, q_idx, kv_idx)
        return keep

    return all_keep


def or_masks(*mask_mods: MaskMod) -> MaskMod:
    """A position is kept if any mask keeps it (e.g. local band OR strided columns in GPT-3)."""
    if not mask_mods:
        raise ValueError("or_masks needs at least one mask_mod")

    def any_keep(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        keep = mask_mods[0](b, h, q_idx, kv_idx)
        for mask_mod in mask_mods[1:]:
            keep = keep | mask_mod(b, h, q_idx, kv_idx)
        return keep

    return any_keep


def not_mask(mask_mod: MaskMod) -> MaskMod:
    """The complement of a mask."""

    def negated(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return ~mask_mod(b, h, q_idx, kv_idx)

    return negated


def dense_mask(
    mask_mod: MaskMod,
    batch_size: int,
    n_heads: int,
    q_len: int,
    kv_len: int,
    *,
    q_offset: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Evaluate a mask_mod on every (b, h, q, kv) and return a dense boolean tensor.

    Args:
        mask_mod: the predicate.
        batch_size, n_heads: pass 1 for a mask that does not depend on the batch row or the head;
            the result then broadcasts over that dimension.
        q_len, kv_len: number of query and key positions.
        q_offset: absolute position of the first query (``kv_len - q_len`` when decoding with a cache).

    Returns:
        ``[batch_size, n_heads, q_len, kv_len]`` boolean tensor, ``True`` = may attend.
    """
    for name, value in (("batch_size", batch_size), ("n_heads", n_heads), ("q_len", q_len), ("kv_len", kv_len)):
        if value < 0:
            raise ValueError(f"dense_mask: {name} must be >= 0, got {value}")
    b = torch.arange(batch_size, device=device).view(-1, 1, 1, 1)
    h = torch.arange(n_heads, device=device).view(1, -1, 1, 1)
    q_idx = torch.arange(q_offset, q_offset + q_len, device=device).view(1, 1, -1, 1)
    kv_idx = torch.arange(kv_len, device=device).view(1, 1, 1, -1)
    keep = mask_mod(b, h, q_idx, kv_idx)
    if keep.dtype != torch.bool:
        raise TypeError(f"dense_mask: mask_mod must return a boolean tensor, got {keep.dtype}")
    return keep.expand(batch_size, n_heads, q_len, kv_len)
