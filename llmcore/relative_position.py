"""T5's bucketed relative position bias (相对位置偏置; Raffel et al., 2020, §2.1).

T5 adds no position vector to the embeddings. Instead every attention score gets a learned scalar
that depends only on the key–query offset ``key − query`` and the head: offsets are mapped to a
small number of *buckets* (相对位置桶), exact for small distances and logarithmically wider up to
``max_distance``, beyond which all offsets share the last bucket. The table of ``buckets × heads``
scalars lives in the first layer of each stack and is shared by all its layers. The encoder tells
"before" from "after" (bidirectional buckets); the causal decoder only ever sees the past.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["relative_position_bucket", "RelativePositionBias"]


def _bucket_sizes(bidirectional: bool, num_buckets: int, max_distance: int) -> tuple[int, int]:
    """Buckets per direction and how many of them are exact; raises on sizes that leave no log range."""
    half = num_buckets // 2 if bidirectional else num_buckets
    max_exact = half // 2
    if max_exact < 1 or max_distance <= max_exact:
        raise ValueError(
            f"num_buckets={num_buckets} leaves {max_exact} exact buckets per direction; it must leave at least "
            f"one, and max_distance={max_distance} must exceed it"
        )
    return half, max_exact


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """Map offsets ``key − query`` to bucket ids in ``[0, num_buckets)`` (Mesh TensorFlow's rule).

    Bidirectional: half of the buckets are for keys after the query (offset > 0), half for the
    query itself and keys before it. Within a half of ``n`` buckets the first ``n/2`` hold the exact
    distances ``0 … n/2 − 1``; the other ``n/2`` split ``[n/2, max_distance)`` into bins of
    logarithmically growing width, and every distance ≥ ``max_distance`` lands in the last bucket.
    Unidirectional (decoder): all ``num_buckets`` are for keys at or before the query; keys after it
    (masked anyway) share bucket 0 with offset 0.

    Args:
        relative_position: integer tensor of any shape, ``key_position − query_position``.
        bidirectional: encoder (True) or causal decoder (False).
        num_buckets: 32 in every T5.
        max_distance: 128 in every T5.

    Returns:
        Bucket ids, same shape, ``int64``.
    """
    if relative_position.is_floating_point():
        raise TypeError(f"relative_position must be integers, got {relative_position.dtype}")
    half, max_exact = _bucket_sizes(bidirectional, num_buckets, max_distance)
    relative_position = relative_position.long()
    if bidirectional:
        offset = (relative_position > 0).long() * half
        distance = relative_position.abs()
    else:
        offset = torch.zeros_like(relative_position)
        distance = (-relative_position).clamp(min=0)
    # float32 logarithms as in Mesh TensorFlow: the released checkpoints were trained on these bins.
    log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    log_bucket = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
    return offset + torch.where(distance < max_exact, distance, log_bucket)


class RelativePositionBias(nn.Module):
    """A learned scalar per (bucket, head), added to the attention scores (T5).

    Submodule ``relative_attention_bias`` is ``nn.Embedding(num_buckets, n_heads)`` (Hugging Face's
    name). ``forward(query_length, key_length) → [1, H, Q, K]`` is computed once per forward pass and
    handed to every layer of the stack as the attention ``bias``.
    """

    def __init__(self, n_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        _bucket_sizes(bidirectional, num_buckets, max_distance)
        self.relative_attention_bias = nn.Embedding(num_buckets, n_heads)

    def forward(self, query_length: int, key_length: int, query_offset: int = 0) -> Tensor:
        """``[1, H, Q, K]`` for queries at ``query_offset … query_offset+Q−1`` and keys ``0 … K−1``
        (``query_offset = K − Q`` when decoding with a cache)."""
        device = self.relative_attention_bias.weight.device
        query = torch.arange(query_offset, query_offset + query_length, device=device)[:, None]
        key = torch.arange(key_length, device=device)[None, :]
        buckets = relative_position_bucket(
            key - query, bidirectional=self.bidirectional, num_buckets=self.num_buckets, max_distance=self.max_distance
        )
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)
