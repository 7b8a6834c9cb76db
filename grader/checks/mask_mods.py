"""Evaluating a learner's ``mask_mod`` for a check (chapter 1's causal mask, chapter 5's window …).

A mask_mod ``(b, h, q_idx, kv_idx) -> bool tensor`` is called once with whole index tensors. What
it returns is checked first, so that ``None`` or a Python bool gets a sentence instead of an error
from inside :func:`llmcore.masks.dense_mask`, and Python ``and``/``if`` on the index tensors gets a
hint.
"""

from __future__ import annotations

from torch import Tensor

from llmcore import masks as reference_masks
from llmcore.masks import MaskMod

from .framework import CheckFailure

__all__ = ["PYTHON_LOGIC_HINT", "evaluate_mask_mod"]

PYTHON_LOGIC_HINT = (
    "a mask_mod receives whole tensors of indices, not single numbers: Python `and`/`or`/`not`/`if` on them "
    "fails. Use element-wise tensor operations: comparisons, `&`, `|`, `~`."
)


def evaluate_mask_mod(mask_mod: MaskMod, *, described: str, exercise: str, batch: int, heads: int, q_len: int,
                      kv_len: int, q_offset: int = 0) -> Tensor:
    """``mask_mod`` as a dense ``[B, H, L, S]`` mask, queries at positions ``q_offset …``.

    ``described`` names the function in messages ("causal_mask_mod", "the mask_mod of
    sliding_window_mask(3)"); failures are :class:`CheckFailure` of ``exercise`` with the mistake
    ids ``wrong_return`` and ``python_logic``.
    """

    def checked(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        result = mask_mod(b, h, q_idx, kv_idx)
        if result is None:
            raise CheckFailure(
                f"✘ {described} returned None: return the boolean tensor of which keys each query may see "
                "(is the `return` statement missing?).", exercise=exercise, mistake_id="wrong_return")
        if not isinstance(result, Tensor):
            raise CheckFailure(
                f"✘ {described} returned a {type(result).__name__}, not a tensor: it is called once with whole "
                f"tensors of indices (q_idx {list(q_idx.shape)}, kv_idx {list(kv_idx.shape)}) and must return a "
                "boolean tensor computed from them.", exercise=exercise, mistake_id="wrong_return")
        return result

    try:
        return reference_masks.dense_mask(checked, batch, heads, q_len, kv_len, q_offset=q_offset)
    except RuntimeError as error:
        if "Boolean value of Tensor" in str(error):
            raise CheckFailure(
                f"✘ {described} used a tensor as a Python truth value (with q_len={q_len}, kv_len={kv_len}):\n"
                f"    {error}\nHint: {PYTHON_LOGIC_HINT}",
                exercise=exercise, mistake_id="python_logic",
            ) from None
        raise
