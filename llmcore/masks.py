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
    "dense_mask_at",
    "strided_mask",
    "layer_kind_mask",
    "strided_local_mask",
    "strided_column_mask",
    "fixed_mask",
    "fixed_local_mask",
    "fixed_summary_mask",
    "block_sparse_mask",
    "glm_blank_infilling_mask",
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


def dense_mask_at(mask_mod: MaskMod, batch_size: int, q_positions: Tensor, kv_positions: Tensor) -> Tensor:
    """Like :func:`dense_mask` for arbitrary absolute positions: ``[batch_size, 1, Lq, Lkv]``.

    ``q_positions [Lq]`` and ``kv_positions [Lkv]`` are integer tensors. A KV cache needs this when
    its keys are not ``0 … S−1`` in order (the rolling buffer of a sliding-window layer).
    """
    b = torch.arange(batch_size, device=q_positions.device).view(-1, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=q_positions.device)
    keep = mask_mod(b, h, q_positions.view(1, 1, -1, 1), kv_positions.view(1, 1, 1, -1))
    if keep.dtype != torch.bool:
        raise TypeError(f"dense_mask_at: mask_mod must return a boolean tensor, got {keep.dtype}")
    return keep.expand(batch_size, 1, q_positions.shape[0], kv_positions.shape[0])


# --------------------------------------------------------------------------------------------------
# Sparse patterns: Sparse Transformer (strided, fixed), Phi-3-small block-sparse, GLM blank infilling
# --------------------------------------------------------------------------------------------------
#
# Every rule below is causal at token level (kv_idx <= q_idx), so no query ever loses its own key and
# no row of a dense mask is ever all-False. Pictures: row = query, column = key, 1 = may attend.


def _require_positive_int(function: str, argument: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{function}: {argument} must be a positive int, got {value!r}")
    return value


def strided_local_mask(stride: int) -> MaskMod:
    """Sparse Transformer "strided" factor head A(1): the last ``stride`` positions (a local band).

    Rule: ``0 <= q - kv < stride``, identical to :func:`sliding_window_mask` ``(stride)``.

    Child et al. (2019), *Generating Long Sequences with Sparse Transformers*, write
    ``A(1)_i = {t, t+1, ..., i}`` with ``t = max(0, i - l)``, which also contains ``i - l``
    (``l + 1`` keys); OpenAI's reference code (``attn_mode='local'``) keeps ``l`` keys, as here. The
    difference never matters in the union :func:`strided_mask`: ``q - kv = l`` is a multiple of
    ``l`` and so already belongs to the column head :func:`strided_column_mask`.

    stride = 3, 6 x 6::

        1 0 0 0 0 0
        1 1 0 0 0 0
        1 1 1 0 0 0
        0 1 1 1 0 0
        0 0 1 1 1 0
        0 0 0 1 1 1
    """
    _require_positive_int("strided_local_mask", "stride", stride)

    def last_stride_positions(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        distance = q_idx - kv_idx
        return (distance >= 0) & (distance < stride)

    return last_stride_positions


def strided_column_mask(stride: int) -> MaskMod:
    """Sparse Transformer "strided" factor head A(2): every ``stride``-th position back from the query.

    Rule: ``kv <= q  and  (q - kv) % stride == 0`` (``A(2)_i = {j : (i - j) mod l = 0}`` in
    Child et al. 2019, made causal; OpenAI's reference code calls this head ``attn_mode='strided'``).
    The query always sees itself (``q - kv = 0``).

    stride = 3, 6 x 6::

        1 0 0 0 0 0
        0 1 0 0 0 0
        0 0 1 0 0 0
        1 0 0 1 0 0
        0 1 0 0 1 0
        0 0 1 0 0 1
    """
    _require_positive_int("strided_column_mask", "stride", stride)

    def every_stride_back(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        distance = q_idx - kv_idx
        return (distance >= 0) & (distance % stride == 0)

    return every_stride_back


def strided_mask(stride: int) -> MaskMod:
    """Sparse Transformer "strided" pattern (Child et al. 2019), merged into one head.

    Rule::

        kv <= q  and  ( q - kv < stride   or   (q - kv) % stride == 0 )

    i.e. the union ``A(1) | A(2)`` of the two factor heads :func:`strided_local_mask` (the previous
    ``stride`` positions) and :func:`strided_column_mask` (every ``stride``-th position before the
    query). The paper offers three ways to use a factorisation: one factor per residual block
    (interleaved layers), one factor per head, or a *merged head* attending to the union of the
    factors. This function is the merged head; build the other two from the factor masks. With
    ``stride ~ sqrt(n)`` every query sees ``O(sqrt(n))`` keys, and any key reaches any later query
    in two hops (column head, then local head). GPT-3 (Brown et al. 2020) alternates dense layers
    with "locally banded sparse attention patterns ... similar to the Sparse Transformer"; the paper
    does not publish the exact band, so this is the Sparse Transformer pattern, not a replica of GPT-3.

    stride = 3, 8 x 8::

        1 0 0 0 0 0 0 0
        1 1 0 0 0 0 0 0
        1 1 1 0 0 0 0 0
        1 1 1 1 0 0 0 0
        0 1 1 1 1 0 0 0
        0 0 1 1 1 1 0 0
        1 0 0 1 1 1 1 0
        0 1 0 0 1 1 1 1
    """
    _require_positive_int("strided_mask", "stride", stride)

    def local_or_strided_column(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        distance = q_idx - kv_idx
        return (distance >= 0) & ((distance < stride) | (distance % stride == 0))

    return local_or_strided_column


def _check_block_and_summary(function: str, block: int, n_summary: int) -> None:
    _require_positive_int(function, "block", block)
    if isinstance(n_summary, bool) or not isinstance(n_summary, int) or not 1 <= n_summary <= block:
        raise ValueError(f"{function}: n_summary must be an int in 1..block={block}, got {n_summary!r}")


def fixed_local_mask(block: int) -> MaskMod:
    """Sparse Transformer "fixed" factor head A(1): causal attention inside the query's own block.

    Rule: ``kv <= q  and  kv // block == q // block`` (``A(1)_i = {j : floor(j/l) = floor(i/l)}``,
    Child et al. 2019, made causal). Blocks are aligned to absolute position 0.

    block = 3, 6 x 6::

        1 0 0 0 0 0
        1 1 0 0 0 0
        1 1 1 0 0 0
        0 0 0 1 0 0
        0 0 0 1 1 0
        0 0 0 1 1 1
    """
    _require_positive_int("fixed_local_mask", "block", block)

    def same_block(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx <= q_idx) & (kv_idx // block == q_idx // block)

    return same_block


def fixed_summary_mask(block: int, n_summary: int = 1) -> MaskMod:
    """Sparse Transformer "fixed" factor head A(2): the last ``n_summary`` positions of every block.

    Rule: ``kv <= q  and  kv % block >= block - n_summary`` (``A(2)_i = {j : j mod l in {t, ..., l}}``
    with ``t = l - c``, Child et al. 2019, made causal; ``c = n_summary``). These "summary" keys
    carry information from each earlier block to all later queries.

    block = 3, n_summary = 1, 6 x 6::

        0 0 0 0 0 0
        0 0 0 0 0 0
        0 0 1 0 0 0
        0 0 1 0 0 0
        0 0 1 0 0 0
        0 0 1 0 0 1

    This factor alone leaves early queries with no key at all (the all-zero rows above); use it
    only combined with :func:`fixed_local_mask`, as :func:`fixed_mask` does.
    """
    _check_block_and_summary("fixed_summary_mask", block, n_summary)

    def summary_column(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx <= q_idx) & (kv_idx % block >= block - n_summary)

    return summary_column


def fixed_mask(block: int, n_summary: int = 1) -> MaskMod:
    """Sparse Transformer "fixed" pattern (Child et al. 2019), merged into one head.

    Rule::

        kv <= q  and  ( kv // block == q // block   or   kv % block >= block - n_summary )

    the union of :func:`fixed_local_mask` (causal within the query's block of ``block`` positions)
    and :func:`fixed_summary_mask` (the last ``n_summary`` positions, ``c`` in the paper, of every
    block). The paper uses ``c`` in 8..32 for ``l`` in 128..256 and notes that giving different heads
    different summary offsets helps; here one offset serves all heads. ``n_summary = block`` is the
    plain causal mask.

    block = 4, n_summary = 1, 8 x 8::

        1 0 0 0 0 0 0 0
        1 1 0 0 0 0 0 0
        1 1 1 0 0 0 0 0
        1 1 1 1 0 0 0 0
        0 0 0 1 1 0 0 0
        0 0 0 1 1 1 0 0
        0 0 0 1 1 1 1 0
        0 0 0 1 1 1 1 1
    """
    _check_block_and_summary("fixed_mask", block, n_summary)

    def same_block_or_summary(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        same = kv_idx // block == q_idx // block
        summary = kv_idx % block >= block - n_summary
        return (kv_idx <= q_idx) & (same | summary)

    return same_block_or_summary


def block_sparse_mask(
    block_size: int,
    local_blocks: int,
    vertical_stride: int,
    *,
    head_sliding_step: int = 0,
) -> MaskMod:
    """Phi-3-small block-sparse attention ("local blocks + vertical stride"), as a token-level mask.

    With block indices ``qb = q // block_size`` and ``kb = kv // block_size``, the rule is::

        kv <= q  and  ( qb - kb < local_blocks   or   (kb + h * head_sliding_step + 1) % vertical_stride == 0 )

    (``qb >= kb`` is implied by ``kv <= q``.) A query sees every earlier key in its own block and the
    ``local_blocks - 1`` blocks before it, plus every key of the "vertical" blocks ``kb`` with
    ``(kb + 1) % vertical_stride == 0`` (the last block of each group of ``vertical_stride``). This is
    the rule of the blocksparse kernel released with Phi-3-small (Abdin et al. 2024, *Phi-3 Technical
    Report*; ``vllm/attention/ops/blocksparse_attention``: block-level
    ``(q_pos >= k_pos) & ((q_pos - k_pos < local_blocks) | mask_vert_strided)``, then multiplied by
    the token-level lower triangle), so inside the diagonal block it is causal at token level, not
    block-causal. Phi-3-small's configuration: ``block_size=64, local_blocks=16, vertical_stride=8``.

    Args:
        block_size: tokens per block (> 0).
        local_blocks: number of most recent blocks, including the query's own, seen in full (> 0).
        vertical_stride: period of the vertical blocks (> 0); ``1`` makes every block vertical, i.e.
            the plain causal mask.
        head_sliding_step: ``0`` (default) gives every head the same pattern ("homo_head" in the
            kernel). Phi-3-small shifts the vertical blocks by ``h * head_sliding_step`` for head
            ``h`` so that different heads cover different blocks; the kernel's default step is
            ``max(1, vertical_stride // n_heads)``. Must be >= 0.

    block_size = 2, local_blocks = 1, vertical_stride = 2, 8 x 8 (vertical blocks 1 and 3)::

        1 0 0 0 0 0 0 0
        1 1 0 0 0 0 0 0
        0 0 1 0 0 0 0 0
        0 0 1 1 0 0 0 0
        0 0 1 1 1 0 0 0
        0 0 1 1 1 1 0 0
        0 0 1 1 0 0 1 0
        0 0 1 1 0 0 1 1
    """
    _require_positive_int("block_sparse_mask", "block_size", block_size)
    _require_positive_int("block_sparse_mask", "local_blocks", local_blocks)
    _require_positive_int("block_sparse_mask", "vertical_stride", vertical_stride)
    if isinstance(head_sliding_step, bool) or not isinstance(head_sliding_step, int) or head_sliding_step < 0:
        raise ValueError(f"block_sparse_mask: head_sliding_step must be an int >= 0, got {head_sliding_step!r}")

    def local_or_vertical_blocks(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        q_block = q_idx // block_size
        kv_block = kv_idx // block_size
        local = q_block - kv_block < local_blocks
        vertical = (kv_block + h * head_sliding_step + 1) % vertical_stride == 0
        return (kv_idx <= q_idx) & (local | vertical)

    return local_or_vertical_blocks


def glm_blank_infilling_mask(part_a_length: int | Tensor) -> MaskMod:
    """GLM autoregressive blank infilling (Du et al. 2022, *GLM: General Language Model Pretraining*).

    The input is Part A (the corrupted text, spans replaced by [MASK]) followed by Part B (the
    masked-out spans, each starting with [START], in shuffled order). Rule, with ``A = part_a_length``::

        kv < A   or   kv <= q

    Part A tokens attend bidirectionally to all of Part A and to nothing in Part B; Part B tokens
    attend to all of Part A and causally to Part B, *including the spans placed before theirs* (the
    paper: "Part B tokens can attend to Part A and antecedents in B"). That is exactly the prefix-LM
    mask with prefix ``A`` (:func:`prefix_lm_mask`), for one span or many: the spans differ only in
    GLM's 2D position ids, not in the mask. The ``[B]`` form gives each batch row its own Part A.

    A = 3, 6 x 6 (Part A = positions 0-2, Part B = 3-5)::

        1 1 1 0 0 0
        1 1 1 0 0 0
        1 1 1 0 0 0
        1 1 1 1 0 0
        1 1 1 1 1 0
        1 1 1 1 1 1

    Args:
        part_a_length: an int, or a ``[B]`` integer tensor with one Part A length per batch row.
    """
    lengths = torch.as_tensor(part_a_length)
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex() or lengths.dim() > 1 or bool(
        (lengths < 0).any()
    ):
        raise ValueError(
            f"glm_blank_infilling_mask: part_a_length must be a non-negative int or [B] ints, got {part_a_length!r}"
        )
    return prefix_lm_mask(lengths)


def layer_kind_mask(kind: str, *, causal: bool = True, window: int | None = None, block: int | None = None) -> MaskMod:
    """The mask_mod of one layer kind of the model zoo: the one rule shared by the models and the mask explorer.

    ``full`` sees every key (every earlier one when ``causal``); ``sliding`` adds Mistral's window of
    ``window`` keys (the query itself and ``window − 1`` before it); ``strided`` and ``fixed`` add the
    Sparse Transformer patterns of block size ``block`` used by GPT-3's sparse layers (always causal).
    """
    base = causal_mask if causal else full_mask
    if kind == "full":
        return base
    if kind == "sliding":
        if window is None:
            raise ValueError("layer_kind_mask: a 'sliding' layer needs window")
        band = sliding_window_mask(window)
        return and_masks(base, band) if causal else band
    if kind in ("strided", "fixed"):
        if block is None:
            raise ValueError(f"layer_kind_mask: a {kind!r} layer needs block")
        sparse = strided_mask(block) if kind == "strided" else fixed_mask(block)
        return and_masks(causal_mask, sparse)
    raise ValueError(f"layer_kind_mask: unknown layer kind {kind!r}; known: full, sliding, strided, fixed")
