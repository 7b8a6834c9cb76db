"""How big a model and its KV cache are, from the configuration alone (模型规模与显存估算).

Closed forms, so a 70B model is sized without allocating it: the tests pin them against models built
on the ``meta`` device (transformers' and llmcore's) and against published counts.

KV cache (键值缓存): every layer keeps one key and one value vector per cached position and per
*key/value* head, hence ``2 · n_layers · n_kv_heads · head_dim · cached_positions · batch · bytes``.
Grouped-query attention (GQA, Ainslie et al. 2023) shrinks it by ``n_heads / n_kv_heads``,
multi-query attention (MQA, Shazeer 2019) by ``n_heads``; Mistral's sliding window (Jiang et al.
2023) caps ``cached_positions`` at the window ``W`` (its rolling buffer has ``W`` slots).
"""

from __future__ import annotations

from .config import ModelConfig

__all__ = ["kv_cache_bytes", "kv_cache_bytes_for"]


def kv_cache_bytes(
    *,
    n_layers: int,
    n_kv_heads: int,
    head_dim: int,
    seq_len: int,
    batch_size: int = 1,
    bytes_per_value: int = 2,
    window: int | None = None,
) -> int:
    """Bytes held by a KV cache after ``seq_len`` positions.

    ``2 · n_layers · n_kv_heads · head_dim · min(seq_len, window) · batch_size · bytes_per_value``:
    the 2 counts K and V; ``n_kv_heads`` (not the query heads) is what GQA/MQA store; ``window``
    (``None`` = no window) bounds the positions a rolling buffer keeps. ``bytes_per_value`` is 2
    for float16/bfloat16, 4 for float32, 1 for an 8-bit cache. LLaMA-2-7B (32 layers, 32 KV heads
    of 128) at 4096 tokens in float16: 2 GiB per sequence.
    """
    sizes = dict(n_layers=n_layers, n_kv_heads=n_kv_heads, head_dim=head_dim, seq_len=seq_len,
                 batch_size=batch_size, bytes_per_value=bytes_per_value)
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seq_len" else 1):
            raise ValueError(f"kv_cache_bytes: {name} must be a {'non-negative' if name == 'seq_len' else 'positive'} int, got {value!r}")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"kv_cache_bytes: window must be a positive int or None, got {window!r}")
    cached = seq_len if window is None else min(seq_len, window)
    return 2 * n_layers * n_kv_heads * head_dim * cached * batch_size * bytes_per_value


def kv_cache_bytes_for(config: ModelConfig, seq_len: int, *, batch_size: int = 1, bytes_per_value: int = 2) -> int:
    """:func:`kv_cache_bytes` for a :class:`ModelConfig`: its KV heads and head size, and the window
    on the layers whose kind is ``sliding`` (the others cache every position; the ``strided`` and
    ``fixed`` sparse kinds still keep every key)."""
    kinds = config.resolved_layer_kinds
    common = dict(n_kv_heads=config.resolved_kv_heads, head_dim=config.resolved_head_dim, seq_len=seq_len,
                  batch_size=batch_size, bytes_per_value=bytes_per_value)
    sliding = sum(kind == "sliding" for kind in kinds)
    total = kv_cache_bytes(n_layers=sliding, window=config.sliding_window, **common) if sliding else 0
    if sliding < len(kinds):
        total += kv_cache_bytes(n_layers=len(kinds) - sliding, **common)
    return total
