"""How big a model and its KV cache are, from the configuration alone (模型规模与显存估算).

Closed forms, so a 70B model is sized without allocating it: the tests pin them against models built
on the ``meta`` device (transformers' and llmcore's) and against published counts.

Parameter count (参数量) of a decoder-only model: the token table, then per layer the attention
projections (``d·H·h`` for Q and the output, ``d·H_kv·h`` for K and V each), the FFN (three
``d × d_ff`` matrices when gated, two otherwise; a router and ``E`` copies for a mixture of experts)
and the norms, then the final norm and the output head, which is counted only when it is not tied
to the token table. LLaMA-7B: 6,738,415,616 (Touvron et al., 2023; the 7B of Table 2).

KV cache (键值缓存): every layer keeps one key and one value vector per cached position and per
*key/value* head, hence ``2 · n_layers · n_kv_heads · head_dim · cached_positions · batch · bytes``.
Grouped-query attention (GQA, Ainslie et al. 2023) shrinks it by ``n_heads / n_kv_heads``,
multi-query attention (MQA, Shazeer 2019) by ``n_heads``; Mistral's sliding window (Jiang et al.
2023) caps ``cached_positions`` at the window ``W`` (its rolling buffer has ``W`` slots).
"""

from __future__ import annotations

from .config import ModelConfig

__all__ = ["kv_cache_bytes", "kv_cache_bytes_for", "parameter_count"]


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


_UNSUPPORTED = {
    "type_vocab_size": "segment embeddings (encoder models)",
    "embedding_size": "factorised embeddings (ALBERT)",
    "share_layers": "cross-layer sharing (ALBERT)",
    "pooler": "a pooler (encoder models)",
    "position_2d": "GLM's 2D positions",
    "conv_kernel_size": "DeBERTa's convolution",
}


def parameter_count(config: ModelConfig) -> int:
    """Trainable parameters of the decoder-only :class:`~llmcore.models.CausalLM` built from ``config``.

    With ``d = hidden_size``, ``h = head_dim``, ``H``/``H_kv`` the query/key-value heads and
    ``d_ff = intermediate_size``::

        embeddings   V·d  (+ max_positions·d for learned positions, + a norm for embedding_norm)
        per layer    attention  d·H·h + 2·d·H_kv·h + H·h·d   (+ biases: qkv_bias, o_bias)
                     FFN        3·d·d_ff gated, 2·d·d_ff plain (+ biases), times E plus a d·E router for MoE
                     norms      2 (pre/post; 1 for a parallel block; +2 with sandwich_norm), each d
                                (RMSNorm) or 2d (LayerNorm with bias)
        final norm   one norm when final_norm
        head         V·d unless tie_word_embeddings (the head *is* the token table then), + V for lm_head_bias

    Conventions: ``intermediate_size`` is the FFN width already rounded as the model rounds it
    (LLaMA: :func:`llmcore.ffn.gated_hidden_size`); buffers (RoPE frequencies, ALiBi slopes,
    sinusoids) are not parameters. Encoder and encoder–decoder features raise ``ValueError``.
    """
    for name, feature in _UNSUPPORTED.items():
        if getattr(config, name):
            raise ValueError(f"parameter_count covers decoder-only models; this config uses {feature} ({name})")
    if config.position not in ("rope", "alibi", "learned", "sinusoidal", "none"):
        raise ValueError(f"parameter_count: position {config.position!r} has parameters it does not count")
    d, d_ff, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    heads, kv_heads, head_dim = config.n_heads, config.resolved_kv_heads, config.resolved_head_dim
    norm = d if config.norm == "rmsnorm" else 2 * d if config.norm_bias else d

    embeddings = vocab * d
    if config.position == "learned":
        embeddings += config.max_positions * d
    if config.embedding_norm:
        embeddings += norm

    attention = d * heads * head_dim + 2 * d * kv_heads * head_dim + heads * head_dim * d
    if config.qkv_bias:
        attention += (heads + 2 * kv_heads) * head_dim
    if config.o_bias:
        attention += d
    matrices = 3 if config.ffn == "gated" else 2
    ffn = matrices * d * d_ff
    if config.mlp_bias:
        ffn += (matrices - 1) * d_ff + d
    if config.n_experts:
        ffn = config.n_experts * ffn + d * config.n_experts
    norms_per_layer = (1 if config.block == "parallel" else 2) + (2 if config.sandwich_norm else 0)
    layer = attention + ffn + norms_per_layer * norm

    head = 0 if config.tie_word_embeddings else vocab * d
    if config.lm_head_bias:
        head += vocab
    final_norm = norm if config.final_norm else 0
    return embeddings + config.n_layers * layer + final_norm + head
