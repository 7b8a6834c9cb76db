"""GLM's autoregressive blank infilling (自回归空白填充; Du et al., 2022, §2.1 and Figure 2).

A text ``x`` loses some spans. **Part A** is the corrupted text, each span replaced by one
``[MASK]``; **Part B** is the spans in a shuffled order, each preceded by ``[START]`` as input and
followed by ``[END]`` as target. The model reads Part A bidirectionally and writes Part B left to
right, seeing all of Part A and the spans written before (``llmcore.masks.glm_blank_infilling_mask``).

Two position ids say where a token belongs (二维位置编码):

* ``position_ids``: the index in Part A; every token of a span takes the index of its ``[MASK]``,
  so the model cannot learn a span's length from its positions;
* ``block_position_ids``: 0 in Part A and ``1 … len + 1`` inside a span's Part B block.

Figure 2 of the paper, ``x₁ … x₆`` with spans ``[x₃]`` and ``[x₅, x₆]``, Part B order (x₅x₆, x₃)::

    input_ids           x1 x2 M  x4 M  | S  x5 x6 S  x3
    targets             -  -  -  -  -  | x5 x6 E  x3 E
    position_ids        0  1  2  3  4  | 4  4  4  2  2     (the paper counts from 1)
    block_position_ids  0  0  0  0  0  | 1  2  3  1  2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .. import masks

__all__ = ["BlankInfillingExample", "blank_infilling", "glm_span_length_probabilities", "sample_glm_spans"]


@dataclass(frozen=True)
class BlankInfillingExample:
    """One GLM input: every tensor is ``[L]`` with ``L = len(Part A) + Σ (len(span) + 1)``.

    ``targets`` holds ``ignore_index`` over Part A (no loss there) and the next token of each span
    (``[END]`` last) over Part B. Feed a batch to ``CausalLM(input_ids, attention_mask,
    position_ids, block_position_ids=..., prefix_lengths=part_a_length)``.
    """

    input_ids: Tensor
    targets: Tensor
    position_ids: Tensor
    block_position_ids: Tensor
    part_a_length: int

    def attention_mask(self) -> Tensor:
        """The ``[L, L]`` boolean mask (row = query, ``True`` = may attend): Part A bidirectional, Part B causal."""
        length = self.input_ids.shape[0]
        mask_mod = masks.glm_blank_infilling_mask(self.part_a_length)
        return masks.dense_mask(mask_mod, 1, 1, length, length, device=self.input_ids.device)[0, 0]


def _checked_spans(spans: Sequence[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    ordered = sorted((int(start), int(end)) for start, end in spans)
    previous_end = 0
    for start, end in ordered:
        if not 0 <= start < end <= length:
            raise ValueError(f"blank_infilling: span ({start}, {end}) must satisfy 0 <= start < end <= {length}")
        if start < previous_end:
            raise ValueError(f"blank_infilling: span ({start}, {end}) overlaps the span ending at {previous_end}")
        previous_end = end
    return ordered


def blank_infilling(
    tokens: Sequence[int] | Tensor,
    spans: Sequence[tuple[int, int]],
    *,
    mask_token_id: int,
    start_token_id: int,
    end_token_id: int,
    order: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    ignore_index: int = -100,
) -> BlankInfillingExample:
    """Build GLM's Part A / Part B input from ``tokens`` (``[n]``) and the spans to blank out.

    Args:
        tokens: the original text as token ids.
        spans: half-open ``(start, end)`` index ranges into ``tokens``, non-empty and non-overlapping
            (any order; they are numbered by position in the text).
        mask_token_id / start_token_id / end_token_id: ids of ``[MASK]``, ``[START]`` (``[S]``) and
            ``[END]`` (``[E]``).
        order: the Part B order as a permutation of span numbers (0 = leftmost span); ``None``
            shuffles with ``generator`` as GLM does, so the model learns the spans' dependencies in
            every direction.
        ignore_index: the target of Part A tokens.
    """
    ids = torch.as_tensor(tokens, dtype=torch.long).flatten()
    ordered = _checked_spans(spans, ids.numel())
    if order is None:
        order = torch.randperm(len(ordered), generator=generator).tolist()
    if sorted(order) != list(range(len(ordered))):
        raise ValueError(f"blank_infilling: order {list(order)} is not a permutation of 0..{len(ordered) - 1}")

    part_a: list[int] = []
    mask_positions: list[int] = []
    cursor = 0
    for start, end in ordered:
        part_a += ids[cursor:start].tolist()
        mask_positions.append(len(part_a))
        part_a.append(mask_token_id)
        cursor = end
    part_a += ids[cursor:].tolist()

    inputs, targets = list(part_a), [ignore_index] * len(part_a)
    positions, blocks = list(range(len(part_a))), [0] * len(part_a)
    for number in order:
        start, end = ordered[number]
        span = ids[start:end].tolist()
        inputs += [start_token_id, *span]
        targets += [*span, end_token_id]
        positions += [mask_positions[number]] * (len(span) + 1)
        blocks += list(range(1, len(span) + 2))
    return BlankInfillingExample(
        input_ids=torch.tensor(inputs, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        position_ids=torch.tensor(positions, dtype=torch.long),
        block_position_ids=torch.tensor(blocks, dtype=torch.long),
        part_a_length=len(part_a),
    )


def glm_span_length_probabilities(poisson_lambda: float = 3.0, max_length: int = 39) -> Tensor:
    """``[max_length]`` float64: the probability of a span of length ``1 … max_length``.

    GLM draws span lengths from a Poisson distribution with ``λ = 3`` restricted to ``1 … 39`` and
    renormalised (Du et al., 2022, §2.1, following BART; THUDM/GLM ``blocklm_utils.py``,
    ``poisson(3, 40)``). Entry ``k − 1`` is ``λᵏ e^{−λ} / k!`` divided by the sum over ``1 … max_length``.
    """
    if poisson_lambda <= 0 or max_length < 1:
        raise ValueError(
            f"glm_span_length_probabilities: need λ > 0 and max_length >= 1, got {poisson_lambda}, {max_length}"
        )
    k = torch.arange(1, max_length + 1, dtype=torch.float64)
    log_pmf = k * math.log(poisson_lambda) - poisson_lambda - torch.lgamma(k + 1)
    pmf = log_pmf.exp()
    return pmf / pmf.sum()


def sample_glm_spans(
    length: int,
    generator: torch.Generator | None = None,
    *,
    mask_ratio: float = 0.15,
    poisson_lambda: float = 3.0,
    max_span_length: int = 39,
) -> list[tuple[int, int]]:
    """GLM's spans for a text of ``length`` tokens: ``round(mask_ratio · length)`` tokens (at least 1) blanked.

    Draw order (fixed, so one generator gives one result): span lengths ~ truncated Poisson(λ)
    (:func:`glm_span_length_probabilities`) with ``torch.multinomial`` until they cover the budget, the
    last one cut to fit; then the spans, in the drawn order, are spread over the text by a
    ``torch.randperm`` of the ``length − budget + 1`` gaps between the kept tokens (the first ``n``
    gaps, sorted). Spans never overlap, and at least one kept token separates two of them (unless the
    text has fewer gaps than spans, where they touch). Returns half-open ``(start, end)`` pairs
    sorted by ``start``, ready for :func:`blank_infilling`.
    """
    if length < 1:
        raise ValueError(f"sample_glm_spans: length must be >= 1, got {length}")
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"sample_glm_spans: mask_ratio must be in (0, 1), got {mask_ratio}")
    budget = max(1, round(mask_ratio * length))
    probabilities = glm_span_length_probabilities(poisson_lambda, max_span_length)
    lengths: list[int] = []
    while sum(lengths) < budget:
        drawn = int(torch.multinomial(probabilities, 1, generator=generator)) + 1
        lengths.append(min(drawn, budget - sum(lengths)))
    kept = length - budget
    gaps = sorted(torch.randperm(kept + 1, generator=generator)[: len(lengths)].tolist())
    if len(gaps) < len(lengths):  # more spans than gaps (a tiny text): the spans touch
        gaps += [gaps[-1]] * (len(lengths) - len(gaps))
    spans, covered = [], 0
    for gap, span_length in zip(gaps, lengths):
        start = gap + covered  # `gap` kept tokens precede this span, plus every blanked token before it
        spans.append((start, start + span_length))
        covered += span_length
    return spans
