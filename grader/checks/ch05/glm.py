"""Exercises of notebook 06_glm_chatglm: GLM's blank infilling and its attention mask (SYLLABUS L09),
ChatGLM-6B's DeepNorm residual and GLM-130B's embedding gradient shrink (L10).

Conventions, as in llmcore: masks are boolean with True = may attend (ChatGLM-6B's own code uses
True = masked); Part B tokens take the Part A index of their span's ``[MASK]`` as position, and
block positions run ``1 … len + 1`` inside a span (0 in Part A); targets are −100 over Part A.

Blank infilling is randomised: the learner's function shuffles the spans with a ``torch.Generator``.
The check reads the order the learner chose from its Part B and compares everything else with
:func:`llmcore.data.blank_infilling` in that order; then a chi-square test over a fixed list of
seeds (four spans, 24 orders) asks that every order comes up equally often, and a second call with the
same seed must give the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from llmcore import deepnorm as reference_deepnorm
from llmcore import embeddings as reference_embeddings
from llmcore import masks as reference_masks
from llmcore.data import glm_infilling as reference_infilling

from ..cases import CaseRandom
from ..framework import Case, Mistake, describe_mismatch
from ..spec import Exercise, register
from ..watchers import DelegationWatch

__all__ = [
    "GLM_BLANK_INFILLING",
    "GLM_ATTENTION_MASK",
    "DEEPNORM_RESIDUAL",
    "EMBEDDING_GRAD_SHRINK",
    "check_glm_blank_infilling",
    "check_glm_attention_mask",
    "check_deepnorm_residual",
    "check_embedding_grad_shrink",
]

IGNORE = -100


# --------------------------------------------------------------------------------------------------
# GLM blank infilling: glm_blank_infilling(tokens, spans, mask_id, start_id, end_id, generator)
#   -> (input_ids, targets, position_ids, block_position_ids, part_a_length)
# --------------------------------------------------------------------------------------------------


@dataclass
class _ChosenOrder:
    """The Part B order the learner's function chose on the case being checked; the reference and the
    mistakes follow it, so that any shuffle is accepted."""

    order: list[int] = field(default_factory=list)


_CHOSEN = _ChosenOrder()


def _span_order(output: Any, tokens: Tensor, spans: list[tuple[int, int]]) -> list[int]:
    """Span numbers in the order their first token appears after Part A in the learner's input_ids
    (the cases use distinct tokens); the text order when that cannot be read."""
    identity = list(range(len(spans)))
    try:
        input_ids = torch.as_tensor(output[0]).flatten().tolist()
    except (TypeError, IndexError, ValueError, RuntimeError):
        return identity
    part_a = len(tokens) - sum(end - start for start, end in spans) + len(spans)
    part_b = input_ids[part_a:]
    found = []
    for number, (start, _) in enumerate(spans):
        first = int(tokens[start])
        if first not in part_b:
            return identity
        found.append((part_b.index(first), number))
    return [number for _, number in sorted(found)]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _GeneratorSeed(int):
    """A case's seed; the learner receives ``torch.Generator().manual_seed(seed)``, and an error message
    shows it that way."""

    def __repr__(self) -> str:
        return f"torch.Generator().manual_seed({int(self)})"


def _run_infilling(function: Callable) -> Callable[..., Any]:
    """The learner's function on a case: called with a fresh generator from the case's seed and a copy of
    the spans (a learner may sort or extend its list); the order it chose is remembered for the reference."""

    def run(tokens: Tensor, spans: list[tuple[int, int]], mask_id: int, start_id: int, end_id: int,
            generator: int) -> Any:
        output = function(tokens, list(spans), mask_id, start_id, end_id, _generator(generator))
        _CHOSEN.order = _span_order(output, tokens, spans)
        return tuple(output) if isinstance(output, list) else output

    return run


def _infilling(tokens: Tensor, spans: list[tuple[int, int]], mask_id: int, start_id: int, end_id: int,
               order: list[int], *, positions: str = "mask", block_start: int = 1, targets: str = "shifted",
               start_token: bool = True, mask_per_token: bool = False) -> tuple:
    """Blank infilling written out with knobs: every mistake is one setting.

    positions: "mask" (the span's [MASK] index in Part A), "continue" (0 … L−1 throughout),
    "original" (the span's start in the original text), "by_block" (the k-th Part B block takes the
    k-th [MASK]'s index), "count_up" (the [MASK]'s index, then +1, +2 … along the block),
    "forget_masks" (the span's start minus the whole length of every earlier span).
    """
    ids = tokens.tolist()
    part_a, mask_index, cursor = [], [], 0
    for start, end in spans:
        part_a += ids[cursor:start]
        mask_index.append(len(part_a))
        part_a += [mask_id] * ((end - start) if mask_per_token else 1)
        cursor = end
    part_a += ids[cursor:]
    inputs, target_ids = list(part_a), [IGNORE] * len(part_a)
    position_ids, block_ids = list(range(len(part_a))), [0] * len(part_a)
    for block, number in enumerate(order):
        start, end = spans[number]
        span = ids[start:end]
        block_inputs = [start_id, *span] if start_token else span
        inputs += block_inputs
        # each input predicts the next one, the last predicts [E] (or, with the mistake, copies itself)
        target_ids += block_inputs if targets == "inputs" else [*block_inputs[1:], end_id]
        if positions == "mask":
            where = mask_index[number]
        elif positions == "original":
            where = start
        elif positions == "by_block":
            where = mask_index[block]
        elif positions == "forget_masks":
            where = start - sum(e - s for s, e in spans[:number])
        else:
            where = None
        if positions == "count_up":
            position_ids += list(range(mask_index[number], mask_index[number] + len(block_inputs)))
        else:
            position_ids += (list(range(len(position_ids), len(position_ids) + len(block_inputs))) if where is None
                             else [where] * len(block_inputs))
        block_ids += list(range(block_start, block_start + len(block_inputs)))
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return as_long(inputs), as_long(target_ids), as_long(position_ids), as_long(block_ids), len(part_a)


def _reference_infilling(tokens: Tensor, spans: list[tuple[int, int]], mask_id: int, start_id: int, end_id: int,
                         seed: int) -> tuple:
    example = reference_infilling.blank_infilling(tokens, spans, mask_token_id=mask_id, start_token_id=start_id,
                                                  end_token_id=end_id, order=_CHOSEN.order)
    return (example.input_ids, example.targets, example.position_ids, example.block_position_ids,
            example.part_a_length)


def _infilling_variant(**knobs: Any) -> Callable[..., tuple]:
    def variant(tokens, spans, mask_id, start_id, end_id, seed):
        order = list(range(len(spans))) if knobs.get("never_shuffled") else _CHOSEN.order
        settings = {k: v for k, v in knobs.items() if k != "never_shuffled"}
        return _infilling(tokens, spans, mask_id, start_id, end_id, order, **settings)

    return variant


def _infilling_case(random: CaseRandom, description: str, length: int, spans: list[tuple[int, int]]) -> Case:
    # Distinct ordinary tokens above the three specials (0, 1, 2), so a span is recognised by its tokens.
    tokens = torch.randperm(200, generator=random.generator)[:length] + 3
    seed = _GeneratorSeed(int(torch.randint(0, 2**31, (1,), generator=random.generator)))
    return Case(description, (tokens, spans, 0, 1, 2, seed))


def _infilling_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    if not hidden:
        return [
            _infilling_case(random, "6 tokens, spans [2, 3) and [4, 6) (the paper's Figure 2)", 6, [(2, 3), (4, 6)]),
            _infilling_case(random, "12 tokens, 3 spans [1, 3) [5, 6) [8, 11)", 12, [(1, 3), (5, 6), (8, 11)]),
            _infilling_case(random, "9 tokens, one span [0, 4) at the start", 9, [(0, 4)]),
            _infilling_case(random, "15 tokens, 4 spans, the last one at the end [12, 15)", 15,
                            [(0, 1), (3, 5), (7, 10), (12, 15)]),
        ]
    return [
        _infilling_case(random, "20 tokens, 5 spans", 20, [(1, 2), (4, 7), (9, 10), (12, 16), (18, 20)]),
        _infilling_case(random, "7 tokens, 2 spans of one token [3, 4) [5, 6)", 7, [(3, 4), (5, 6)]),
        _infilling_case(random, "30 tokens, 3 spans of 5", 30, [(2, 7), (11, 16), (22, 27)]),
        _infilling_case(random, "8 tokens, touching spans [2, 3) [3, 5): two [MASK]s in a row", 8,
                        [(2, 3), (3, 5)]),
    ]


INFILLING_MISTAKES = [
    Mistake(
        "positions_continue",
        "Part B's positions continue after Part A (0 … L−1 over the whole input)",
        "a span token's position is the index of its span's [MASK] in Part A, the same for the whole block: "
        "the model learns *where* the blank is, not how long the span is.",
        "remember the index of each [MASK] while building Part A; give all len(span) + 1 tokens of a block that index.",
        output=_infilling_variant(positions="continue"),
    ),
    Mistake(
        "positions_in_original_text",
        "a span's position is its start in the original text, not its [MASK]'s index in Part A",
        "positions count Part A, where every earlier span has shrunk to one [MASK]; from the second span on, "
        "the original start is too far right.",
        "record len(part_a) at the moment you append the span's [MASK], and use that.",
        output=_infilling_variant(positions="original"),
    ),
    Mistake(
        "positions_by_block_order",
        "the k-th Part B block takes the k-th [MASK]'s position instead of its own span's",
        "after shuffling, block k holds span order[k]: its position is the [MASK] of that span.",
        "index the [MASK] positions with the span number (order[k]), not with the loop counter k.",
        output=_infilling_variant(positions="by_block"),
    ),
    Mistake(
        "positions_count_up",
        "Part B's positions count up from the [MASK]'s index (m, m+1, m+2 …) instead of staying at m",
        "GLM's 2D positions split the two jobs: the position id says *where* the blank is (the same [MASK] "
        "index for every token of the block), the block position id counts 1, 2, … inside the span.",
        "positions += [mask_index[number]] * (len(span) + 1); the counting goes into the block positions only.",
        output=_infilling_variant(positions="count_up"),
    ),
    Mistake(
        "mask_index_forgets_masks",
        "a span's [MASK] index subtracts the whole length of every earlier span, forgetting the [MASK] each "
        "of them left in Part A",
        "an earlier span of length ℓ shrinks Part A by ℓ − 1, not ℓ: its [MASK] stays.",
        "record len(part_a) when you append the span's [MASK] (or subtract Σ (ℓ − 1) over the earlier spans).",
        output=_infilling_variant(positions="forget_masks"),
    ),
    Mistake(
        "block_positions_from_zero",
        "block positions start at 0 inside a span",
        "0 is Part A's block position; inside a span they run 1, 2, …, len + 1 ([S] is 1).",
        "block positions of a block: list(range(1, len(span) + 2)).",
        output=_infilling_variant(block_start=0),
    ),
    Mistake(
        "targets_not_shifted",
        "Part B's targets copy its inputs ([S] x5 x6) instead of the next tokens (x5 x6 [E])",
        "Part B is generated left to right: the target at each position is the token that comes next, "
        "so [S] predicts the span's first token and the last token predicts [E].",
        "inputs += [start_id, *span]; targets += [*span, end_id].",
        output=_infilling_variant(targets="inputs"),
    ),
    Mistake(
        "no_start_token",
        "the Part B blocks have no [S] token",
        "each block opens with [S]: it is the input that predicts the span's first token.",
        "inputs += [start_id, *span] (len(span) + 1 tokens), targets += [*span, end_id].",
        output=_infilling_variant(start_token=False),
    ),
    Mistake(
        "mask_per_token",
        "every blanked token gets its own [MASK] (BERT-style), so Part A shows each span's length",
        "GLM replaces a whole span by a single [MASK]: the model must also decide how long the span is, "
        "which it signals by generating [E].",
        "append mask_id once per span to Part A, not once per token.",
        output=_infilling_variant(mask_per_token=True, positions="original"),
    ),
    Mistake(
        "not_shuffled",
        "the spans are never shuffled: Part B always follows the text order",
        "GLM permutes the spans at random for every example (with the generator you receive), so the model "
        "learns the dependencies between spans in every direction.",
        "order = torch.randperm(len(spans), generator=generator).tolist(), then build Part B in that order.",
        output=_infilling_variant(never_shuffled=True),
    ),
]

IGNORES_GENERATOR = Mistake(
    "ignores_generator",
    "two calls with generators seeded alike give different Part B orders",
    "all randomness must come from the generator you receive, so that a seed reproduces an example.",
    "torch.randperm(len(spans), generator=generator) (Python's random and torch's global generator ignore it).",
)

# The order test: 4 spans (24 orders) of a 10-token text, 1500 fixed seeds, 62.5 expected per order. Four
# spans rather than three because the classic biased shuffle (swap each i with a uniform j in [0, n)) is
# further from uniform relative to n!: 1500 draws catch it with probability ~0.9 (3 spans needed ~3000);
# the hidden run, which may take longer, draws 3000 (probability ~1).
ORDER_TEST_TOKENS = tuple(range(10, 20))
ORDER_TEST_SPANS = ((0, 2), (3, 4), (5, 6), (8, 10))
ORDER_TEST_SEEDS = tuple(range(1000, 2500))
ORDER_TEST_SEEDS_HIDDEN = tuple(range(1000, 4000))
ORDER_TEST_P_VALUE = 1e-3


def chi_square_p_value(counts: list[int]) -> tuple[float, float]:
    """``(statistic, p)`` of Pearson's chi-square test of ``counts`` against equal cells (df = cells − 1)."""
    total, cells = sum(counts), len(counts)
    expected = total / cells
    statistic = sum((c - expected) ** 2 / expected for c in counts)
    degrees = torch.tensor((cells - 1) / 2, dtype=torch.float64)
    return statistic, float(torch.special.gammaincc(degrees, torch.tensor(statistic / 2, dtype=torch.float64)))


@dataclass(eq=False, kw_only=True)
class _ShuffledExercise(Exercise):
    """An exercise whose cases accept any order; then the order itself is tested over many seeds."""

    def _run(self, learner: Any, *, hidden: bool, watch: bool) -> None:
        super()._run(learner, hidden=hidden, watch=watch)
        self._test_order(learner, watch, ORDER_TEST_SEEDS_HIDDEN if hidden else ORDER_TEST_SEEDS)

    def _diagnose(self, run: Any, expected: Any, got: Any) -> list[Mistake]:
        """Whole-output matches first; then a mistake whose every wrong returned value the learner
        reproduces, so that two mistakes in different values (positions and block positions) still
        get one of them named."""
        found = super()._diagnose(run, expected, got)
        if found or not isinstance(got, tuple) or len(got) != len(expected):
            return found
        for mistake, wrong, raised in self._mistake_runs(run):
            if raised is not None:
                continue
            differing = [i for i, (w, e) in enumerate(zip(wrong, expected)) if describe_mismatch(e, w) is not None]
            if differing and all(describe_mismatch(wrong[i], got[i]) is None for i in differing):
                return [mistake]
        return []

    def _test_order(self, learner: Callable, watch: bool, seeds: tuple[int, ...]) -> None:
        tokens = torch.tensor(ORDER_TEST_TOKENS)
        spans = list(ORDER_TEST_SPANS)
        watcher = DelegationWatch(self.forbidden if watch else {}, self.forbidden_ops if watch else {})

        def order(seed: int) -> tuple[int, ...]:
            return tuple(_span_order(learner(tokens.clone(), list(spans), 0, 1, 2, _generator(seed)), tokens, spans))

        with watcher:
            drawn = [order(seed) for seed in seeds]
            again = [order(seed) for seed in seeds[:10]]
        self._refuse_delegation(watcher, 0)
        span_text = " ".join(f"[{a}, {b})" for a, b in spans)
        where = (f"the order test ({len(tokens)} tokens, spans {span_text}, called with generators seeded "
                 f"{seeds[0]} … {seeds[-1]})")
        if again != drawn[:10]:
            first = next(i for i, (a, b) in enumerate(zip(again, drawn)) if a != b)
            raise self._failure(
                f"✘ {self.title}: every case is right, but in {where}:",
                [f"    seed {seeds[first]} gave the order {list(drawn[first])}, "
                 f"then {list(again[first])}"],
                [IGNORES_GENERATOR], 0)
        orders = sorted({tuple(p) for p in _permutations(len(spans))})
        counts = [drawn.count(order) for order in orders]
        statistic, p = chi_square_p_value(counts)
        expected = len(drawn) / len(orders)
        if p <= ORDER_TEST_P_VALUE:
            pairs = [f"{list(order)}: {count}" for order, count in zip(orders, counts)]
            rows = [", ".join(pairs[i:i + 6]) for i in range(0, len(pairs), 6)]
            diagnosis = [self.mistake("not_shuffled")] if counts[0] == len(drawn) else []
            raise self._failure(
                f"✘ {self.title}: every case is right, but the Part B order is not uniformly random in {where}:",
                [f"    times each order came up ({expected:g} expected each):",
                 *(f"      {row}" for row in rows),
                 f"    chi-square = {statistic:.1f} with {len(orders) - 1} degrees of freedom, p = {p:.2g} "
                 f"(must be > {ORDER_TEST_P_VALUE:g})"],
                diagnosis, 0)
        print(f"✔ {self.title}: the Part B order is uniform over the {len(orders)} orders of {len(spans)} spans "
              f"({len(drawn)} draws, p = {p:.2f}) and reproducible from the generator's seed.")


def _permutations(n: int) -> list[list[int]]:
    if n == 0:
        return [[]]
    return [[first, *[x if x < first else x + 1 for x in rest]] for first in range(n) for rest in _permutations(n - 1)]


def _library_infilling(tokens, spans, mask_id, start_id, end_id, generator):
    example = reference_infilling.blank_infilling(tokens, spans, mask_token_id=mask_id, start_token_id=start_id,
                                                  end_token_id=end_id, generator=generator)
    return (example.input_ids, example.targets, example.position_ids, example.block_position_ids,
            example.part_a_length)


GLM_BLANK_INFILLING = register(_ShuffledExercise(
    id="glm_blank_infilling",
    title="glm_blank_infilling",
    syllabus=("L09",),
    reference=_reference_infilling,
    cases=_infilling_cases,
    adapt=_run_infilling,
    mistakes=INFILLING_MISTAKES,
    forbidden={reference_infilling.blank_infilling: "llmcore.data.blank_infilling"},
    delegation=_library_infilling,
    output_names=("input_ids", "targets", "position_ids", "block_position_ids", "part_a_length"),
    fallback_hint="Part A: the text with one [MASK] per span (remember each [MASK]'s index). Part B, spans in a "
                  "shuffled order: inputs [S] + span, targets span + [E], positions = the [MASK]'s index, block "
                  "positions 1 … len + 1; Part A's targets are -100 and its block positions 0.",
))
check_glm_blank_infilling = GLM_BLANK_INFILLING.check


# --------------------------------------------------------------------------------------------------
# GLM's attention mask: glm_attention_mask(part_a_lengths [B], length) -> [B, L, L] bool, True = may attend
# --------------------------------------------------------------------------------------------------


def _reference_glm_mask(part_a_lengths: Tensor, length: int) -> Tensor:
    mask_mod = reference_masks.glm_blank_infilling_mask(part_a_lengths)
    return reference_masks.dense_mask(mask_mod, len(part_a_lengths), 1, length, length)[:, 0]


def _mask_rule(rule: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Callable[[Tensor, int], Tensor]:
    """A mistaken mask as a rule on (query, key, Part A length), broadcast to [B, L, L]."""

    def mask(part_a_lengths: Tensor, length: int) -> Tensor:
        q = torch.arange(length).view(1, -1, 1)
        k = torch.arange(length).view(1, 1, -1)
        return rule(q, k, part_a_lengths.view(-1, 1, 1))

    return mask


def _glm_mask_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    if not hidden:
        return [
            Case("B=1, L=7, Part A = 4 tokens", (torch.tensor([4]), 7)),
            Case("B=3, L=9, Part A = 2, 5 and 6 tokens (one Part A per row)", (torch.tensor([2, 5, 6]), 9)),
            Case("B=2, L=5, Part A = 0 (all Part B: causal) and 5 (all Part A: bidirectional)",
                 (torch.tensor([0, 5]), 5)),
        ]
    lengths = torch.randint(1, 11, (4,), generator=random.generator)
    return [
        Case(f"B=4, L=12, Part A = {lengths.tolist()}", (lengths, 12)),
        Case("B=1, L=1, Part A = 1", (torch.tensor([1]), 1)),
        Case("B=2, L=6, Part A = 3 and 1", (torch.tensor([3, 1]), 6)),
    ]


GLM_MASK_MISTAKES = [
    Mistake(
        "inverted",
        "the mask is inverted: True where attention is forbidden (ChatGLM-6B's own convention)",
        "in this course (and llmcore, transformers' boolean masks, SDPA) True means *may attend*; ChatGLM-6B's "
        "code builds the opposite, True = masked, and fills those scores with -10000.",
        "return the allowed pattern itself, (k < A) | (k <= q), not its complement.",
        output=_mask_rule(lambda q, k, a: ~((k < a) | (k <= q))),
    ),
    Mistake(
        "transposed",
        "the mask is transposed: its rows are keys and its columns queries",
        "mask[b, q, k] answers \"may query q attend to key k?\": a row is one query, and a Part A column is open "
        "to every row, so the open block of Part A is a set of columns, not of rows.",
        "index the grid as q = arange(L).view(1, L, 1) (rows), k = arange(L).view(1, 1, L) (columns): "
        "(k < A) | (k <= q), and no .transpose / .T at the end.",
        output=_mask_rule(lambda q, k, a: (q < a) | (q <= k)),
    ),
    Mistake(
        "part_a_causal",
        "Part A is causal: a Part A token cannot see the Part A tokens after it",
        "Part A is read in both directions, as BERT reads its input: every Part A token sees all of Part A.",
        "allow every key of Part A to every query: (k < A) | (k <= q).",
        output=_mask_rule(lambda q, k, a: k <= q),
    ),
    Mistake(
        "part_b_bidirectional",
        "Part B sees all of Part B, its future included",
        "Part B is generated left to right: a Part B token sees Part A and the Part B tokens up to itself, "
        "never later ones (they are what it predicts).",
        "keep the causal rule k <= q for Part B keys.",
        output=_mask_rule(lambda q, k, a: (k < a) | (q >= a)),
    ),
    Mistake(
        "part_a_sees_part_b",
        "Part A's rows see Part B",
        "Part A must not read the answers: its rows see Part A only (k < A).",
        "(k < A) | (k <= q): a Part A query (q < A) then keeps exactly the keys k < A.",
        output=_mask_rule(lambda q, k, a: (k < a) | (k <= q) | (q < a)),
    ),
    Mistake(
        "prefix_one_too_long",
        "the bidirectional prefix is one token too long (k <= A): the first Part B token is seen by all",
        "Part A is positions 0 … A−1; position A is Part B's first [S], which only later Part B tokens see.",
        "k < A, not k <= A.",
        output=_mask_rule(lambda q, k, a: (k <= a) | (k <= q)),
    ),
    Mistake(
        "no_self_attention_in_part_b",
        "Part B tokens do not see themselves (k < q)",
        "causal includes the diagonal: a token always sees itself, otherwise a row may be empty.",
        "k <= q, not k < q.",
        output=_mask_rule(lambda q, k, a: (k < a) | (k < q)),
    ),
]


GLM_ATTENTION_MASK = register(Exercise(
    id="glm_attention_mask",
    title="glm_attention_mask",
    syllabus=("L09",),
    reference=_reference_glm_mask,
    cases=_glm_mask_cases,
    mistakes=GLM_MASK_MISTAKES,
    forbidden={
        reference_masks.glm_blank_infilling_mask: "llmcore.masks.glm_blank_infilling_mask",
        reference_masks.prefix_lm_mask: "llmcore.masks.prefix_lm_mask (the same mask)",
        reference_infilling.BlankInfillingExample.attention_mask: "BlankInfillingExample.attention_mask",
    },
    delegation=_reference_glm_mask,
    output_names=("mask",),
    fallback_hint="q = torch.arange(L).view(1, L, 1), k = torch.arange(L).view(1, 1, L), "
                  "A = part_a_lengths.view(B, 1, 1); return (k < A) | (k <= q).",
))
check_glm_attention_mask = GLM_ATTENTION_MASK.check


# --------------------------------------------------------------------------------------------------
# ChatGLM-6B's DeepNorm residual: deepnorm_residual(x, sublayer, norm, n_layers) -> [..., d]
# --------------------------------------------------------------------------------------------------


def _reference_deepnorm(x: Tensor, sublayer: nn.Module, norm: nn.Module, n_layers: int) -> Tensor:
    return reference_deepnorm.deepnorm_residual(x, sublayer, norm, reference_deepnorm.deepnorm_alpha(n_layers))


def _sublayer(d_model: int, dtype: torch.dtype, seed: int) -> nn.Module:
    """A small GELU MLP (ChatGLM-6B's FFN, narrowed) with fixed random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = nn.Sequential(nn.Linear(d_model, 3 * d_model), nn.GELU(approximate="tanh"),
                            nn.Linear(3 * d_model, d_model))
    return mlp.to(dtype)


def _layer_norm(d_model: int, dtype: torch.dtype, random: CaseRandom) -> nn.Module:
    norm = nn.LayerNorm(d_model).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(random.tensor((d_model,), dtype, scale=0.3, shift=1.0))
        norm.bias.copy_(random.tensor((d_model,), dtype, scale=0.2))
    return norm


def _deepnorm_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, shape: tuple[int, ...], dtype: torch.dtype, n_layers: int, *, scale: float = 1.0,
             gradients: bool = False) -> Case:
        d = shape[-1]
        x = random.tensor(shape, dtype, scale=scale, shift=0.5)
        return Case(description, (x, _sublayer(d, dtype, random.child_seed(len(description))),
                                  _layer_norm(d, dtype, random), n_layers), check_gradients=gradients)

    if not hidden:
        return [
            case("x [B=2, L=3, d=8], float32, N=28 (ChatGLM-6B: α = √56 ≈ 7.48)", (2, 3, 8), torch.float32, 28),
            case("x [B=1, L=5, d=16], float64, N=8 (α = 4), gradients", (1, 5, 16), torch.float64, 8, gradients=True),
            case("x [L=4, d=6] (no batch), float32, N=1 (α = √2), input of scale 30", (4, 6), torch.float32, 1,
                 scale=30.0),
        ]
    return [
        case("x [B=3, L=2, d=12], float64, N=70 (GLM-130B: α ≈ 11.8), gradients", (3, 2, 12), torch.float64, 70,
             gradients=True),
        case("x [B=2, L=7, d=10], float32, N=2", (2, 7, 10), torch.float32, 2),
    ]


def _deepnorm_variant(rule: Callable[[Tensor, Callable, Callable, int], Tensor]) -> Callable[..., Tensor]:
    return lambda x, sublayer, norm, n_layers: rule(x, sublayer, norm, n_layers)


DEEPNORM_MISTAKES = [
    Mistake(
        "deepnet_quarter_power",
        "α = (2N)^¼, DeepNet's decoder-only constant",
        "DeepNet (Wang et al. 2022) gives a decoder-only model α = (2N)^¼; GLM-130B and ChatGLM-6B use "
        "α = (2N)^½ = √(2N), 7.48 for 28 layers.",
        "alpha = math.sqrt(2 * n_layers).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) * (2 * n) ** 0.25 + f(ln(x))),
    ),
    Mistake(
        "alpha_sqrt_n",
        "α = √N: the factor 2 is missing",
        "α = √(2N), with N the number of layers: 7.48 for ChatGLM-6B's 28 layers, not √28 ≈ 5.29.",
        "alpha = math.sqrt(2 * n_layers).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) * math.sqrt(n) + f(ln(x))),
    ),
    Mistake(
        "alpha_two_root_n",
        "α = 2·√N instead of √(2N) (`2 * n ** 0.5`: ** binds tighter than *)",
        "the square root covers 2N: α = √(2N) = (2N)^½, 7.48 for 28 layers, not 2·√28 ≈ 10.6.",
        "alpha = (2 * n_layers) ** 0.5, with the parentheses, or math.sqrt(2 * n_layers).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) * (2 * math.sqrt(n)) + f(ln(x))),
    ),
    Mistake(
        "alpha_is_n",
        "α = N: `(2 * n) ** 1/2` is ((2N)¹) / 2, since ** binds tighter than /",
        "the exponent ½ needs its own parentheses: (2N) ** (1/2), or ** 0.5.",
        "alpha = (2 * n_layers) ** 0.5 or math.sqrt(2 * n_layers).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) * n + f(ln(x))),
    ),
    Mistake(
        "sublayer_on_raw_input",
        "the sublayer reads the raw input: α·LN(x) + f(x)",
        "ChatGLM-6B normalises once and feeds the normed tensor to both paths: α·LN(x) + f(LN(x)).",
        "normed = norm(x); return alpha * normed + sublayer(normed).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) * math.sqrt(2 * n) + f(x)),
    ),
    Mistake(
        "raw_input_residual",
        "the residual carries the raw input: α·x + f(LN(x))",
        "ChatGLM-6B normalises first and keeps the *normalised* input on the skip path: α·LN(x) + f(LN(x)).",
        "normed = norm(x); return alpha * normed + sublayer(normed).",
        output=_deepnorm_variant(lambda x, f, ln, n: x * math.sqrt(2 * n) + f(ln(x))),
    ),
    Mistake(
        "alpha_on_sublayer",
        "α scales the sublayer's output instead of the residual: LN(x) + α·f(LN(x))",
        "DeepNorm up-weights the skip path so that each layer's update is small relative to it.",
        "alpha multiplies norm(x), the residual; sublayer(norm(x)) is added unscaled.",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) + math.sqrt(2 * n) * f(ln(x))),
    ),
    Mistake(
        "deepnet_post_ln",
        "DeepNet's own form, LN(α·x + f(x)), instead of ChatGLM's α·LN(x) + f(LN(x))",
        "DeepNet normalises after the sum; GLM-130B/ChatGLM-6B's code normalises the input once and feeds "
        "the normed tensor to both the sublayer and the skip path.",
        "normed = norm(x); return alpha * normed + sublayer(normed).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(math.sqrt(2 * n) * x + f(x))),
    ),
    Mistake(
        "post_ln",
        "plain post-LN, LN(x + f(x)), without α",
        "DeepNorm is post-LN with the residual scaled by α = √(2N), and ChatGLM moves the norm onto the input.",
        "normed = norm(x); return alpha * normed + sublayer(normed), with alpha = math.sqrt(2 * n_layers).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x + f(x))),
    ),
    Mistake(
        "pre_ln",
        "pre-LN, x + f(LN(x)), as in GPT-2 and LLaMA",
        "ChatGLM-6B keeps GLM-130B's DeepNorm: the skip path is α·LN(x), not x.",
        "normed = norm(x); return alpha * normed + sublayer(normed).",
        output=_deepnorm_variant(lambda x, f, ln, n: x + f(ln(x))),
    ),
    Mistake(
        "alpha_without_root",
        "α = 2N, the square root is missing",
        "α = √(2N): 7.48 for ChatGLM-6B's 28 layers, not 56.",
        "alpha = math.sqrt(2 * n_layers) (or (2 * n_layers) ** 0.5).",
        output=_deepnorm_variant(lambda x, f, ln, n: ln(x) * (2 * n) + f(ln(x))),
    ),
]


def _implied_alpha(args: tuple, got: Any) -> str | None:
    """A line giving the α the learner's output implies, where it has the form α·LN(x) + f(LN(x)) with
    another α (least squares on the skip path, then the fit must be exact to float precision)."""
    x, sublayer, norm, n_layers = args
    if not isinstance(got, Tensor) or got.shape != x.shape or not got.is_floating_point():
        return None
    with torch.no_grad():
        normed = norm(x).double()
        rest = got.detach().double() - sublayer(norm(x)).double()
        denominator = float((normed * normed).sum())
        if denominator == 0.0 or not torch.isfinite(rest).all():
            return None
        alpha = float((rest * normed).sum()) / denominator
        misfit = float((rest - alpha * normed).abs().max())
    tolerance = 1e-9 if x.dtype == torch.float64 else 1e-3
    expected = math.sqrt(2 * n_layers)
    if misfit > tolerance * max(1.0, float(rest.abs().max())) or abs(alpha - expected) <= 1e-6 * expected:
        return None
    return (f"    your output is α·LN(x) + f(LN(x)) with α = {alpha:.4g}; "
            f"it should be √(2N) = √{2 * n_layers} ≈ {expected:.4g} for N = {n_layers}")


@dataclass(eq=False, kw_only=True)
class _DeepNormExercise(Exercise):
    """Adds to a failure the α that the learner's output implies, when only α is wrong."""

    def _diagnose(self, run: Any, expected: Any, got: Any) -> list[Mistake]:
        try:
            self.__dict__["_alpha_line"] = _implied_alpha(tuple(run.case.args), got)
        except Exception:  # a learner's output that does not fit the form: no line
            self.__dict__["_alpha_line"] = None
        return super()._diagnose(run, expected, got)

    def _failure(self, headline: str, details: list[str], diagnosis: list[Mistake], number: int) -> Any:
        line = self.__dict__.pop("_alpha_line", None)
        return super()._failure(headline, [*details, line] if line else details, diagnosis, number)


DEEPNORM_RESIDUAL = register(_DeepNormExercise(
    id="deepnorm_residual",
    title="deepnorm_residual",
    syllabus=("L10",),
    reference=_reference_deepnorm,
    cases=_deepnorm_cases,
    mistakes=DEEPNORM_MISTAKES,
    forbidden={reference_deepnorm.deepnorm_residual: "llmcore.deepnorm.deepnorm_residual"},
    delegation=_reference_deepnorm,
    output_names=("output",),
    fallback_hint="alpha = math.sqrt(2 * n_layers); normed = norm(x); return alpha * normed + sublayer(normed).",
))
check_deepnorm_residual = DEEPNORM_RESIDUAL.check


# --------------------------------------------------------------------------------------------------
# GLM-130B's embedding gradient shrink: shrink_embedding_gradient(x, alpha) -> x in the forward pass,
# α · gradient in the backward pass. The check compares the output and the gradient into x.
# --------------------------------------------------------------------------------------------------


def _with_gradient(function: Callable[[Tensor, float], Tensor]) -> Callable[..., tuple[Tensor, Tensor]]:
    """``(x, alpha, upstream) -> (output, ∂L/∂x)`` with ``L = Σ output · upstream`` (+ ``Σ x · second_path``
    when x also reaches the loss another way): the forward and the backward pass of ``function`` as values,
    so that a wrong gradient is diagnosed like a wrong output. With ``requires_grad=False`` x needs no
    gradient and the call runs under ``torch.no_grad()``, as in an evaluation loop; the gradient is then 0."""

    def run(x: Tensor, alpha: float, upstream: Tensor, *, second_path: Tensor | None = None,
            requires_grad: bool = True) -> tuple[Tensor, Tensor]:
        if not requires_grad:
            with torch.no_grad():
                output = function(x.detach().clone(), alpha)
            return (output.detach() if isinstance(output, Tensor) else output), torch.zeros_like(x)
        leaf = x.detach().clone().requires_grad_(True)
        output = function(leaf, alpha)
        if not isinstance(output, Tensor) or not output.requires_grad:
            if second_path is None:
                return output, torch.zeros_like(x)
            (gradient,) = torch.autograd.grad((leaf * second_path).sum(), leaf)
            return output, gradient
        loss = (output * upstream).sum() if output.shape == upstream.shape else output.sum()
        if second_path is not None:
            loss = loss + (leaf * second_path).sum()
        (gradient,) = torch.autograd.grad(loss, leaf, allow_unused=True)
        return output.detach(), torch.zeros_like(x) if gradient is None else gradient

    return run


def _shrink_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, shape: tuple[int, ...], dtype: torch.dtype, alpha: float, **kwargs: Any) -> Case:
        if kwargs.get("second_path") is True:
            kwargs["second_path"] = random.tensor(shape, dtype)
        return Case(description, (random.tensor(shape, dtype), alpha, random.tensor(shape, dtype)), kwargs)

    if not hidden:
        return [
            case("x [B=2, L=3, d=5], float32, α = 0.1 (GLM-130B)", (2, 3, 5), torch.float32, 0.1),
            case("x [B=1, L=4, d=6], float64, α = 0.25", (1, 4, 6), torch.float64, 0.25),
            case("x [L=3, d=7], float32, α = 1 (no shrink: the gradient passes unchanged)", (3, 7), torch.float32,
                 1.0),
            case("x [B=2, L=3, d=4], float64, α = 0.1; x also reaches the loss another way (as tied embeddings "
                 "reach the output layer): only the gradient through your function is scaled", (2, 3, 4),
                 torch.float64, 0.1, second_path=True),
            case("x [B=2, L=3, d=5], float32, α = 0.1, x without requires_grad, under torch.no_grad() "
                 "(an evaluation loop): the output is x", (2, 3, 5), torch.float32, 0.1, requires_grad=False),
        ]
    return [
        case("x [B=3, L=2, d=9], float64, α = 0.1", (3, 2, 9), torch.float64, 0.1),
        case("x [B=2, L=5, d=4], float32, α = 0.6", (2, 5, 4), torch.float32, 0.6),
        case("x [B=1, L=6, d=3], float64, α = 0.5, x also reaches the loss another way", (1, 6, 3), torch.float64,
             0.5, second_path=True),
        case("x [B=1, L=2, d=8], float64, α = 0.1, under torch.no_grad()", (1, 2, 8), torch.float64, 0.1,
             requires_grad=False),
    ]


def _hook_on_clone(x: Tensor, alpha: float) -> Tensor:
    y = x.clone()
    y.register_hook(lambda gradient: gradient * alpha)
    return y


def _hook_on_input(x: Tensor, alpha: float) -> Tensor:
    if x.requires_grad:
        x.register_hook(lambda gradient: gradient * alpha)
    return x


SHRINK_MISTAKES = [
    Mistake(
        "detach_on_wrong_term",
        "the detach is on the wrong term: x.detach()·α + x·(1−α), so the gradient is scaled by 1 − α",
        "only the term that keeps its graph carries gradient: x·α keeps it, x.detach()·(1 − α) only restores "
        "the forward value.",
        "return x * alpha + x.detach() * (1 - alpha).",
        output=_with_gradient(lambda x, a: x.detach() * a + x * (1 - a)),
    ),
    Mistake(
        "forward_scaled",
        "the forward pass is scaled too: x·α",
        "the shrink must leave the forward value unchanged (the model sees the same embeddings); only the "
        "gradient is multiplied by α.",
        "add back the missing part without gradient: x * alpha + x.detach() * (1 - alpha).",
        output=_with_gradient(lambda x, a: x * a),
    ),
    Mistake(
        "no_detach",
        "nothing is detached: x·α + x·(1−α) is just x, and the gradient is not shrunk",
        "without detach both terms carry gradient and their coefficients sum to 1.",
        "detach the second term: x.detach() * (1 - alpha).",
        output=_with_gradient(lambda x, a: x * a + x * (1 - a)),
    ),
    Mistake(
        "fully_detached",
        "no gradient reaches x at all (everything detached)",
        "the shrink scales the gradient by α, it does not cut it: x·α must stay in the graph.",
        "return x * alpha + x.detach() * (1 - alpha), without detaching x * alpha.",
        output=_with_gradient(lambda x, a: x.detach()),
    ),
    Mistake(
        "hook_on_input",
        "the gradient hook is registered on x itself, so it scales x's whole gradient, from every path",
        "a hook on x sees the sum of the gradients from every use of x (with tied embeddings, the output layer's "
        "too); the shrink must scale only the gradient that flows through this function's output.",
        "return x * alpha + x.detach() * (1 - alpha) (or put the hook on a clone: y = x.clone(), hook on y).",
        output=_with_gradient(_hook_on_input),
    ),
    Mistake(
        "hook_without_grad",
        "register_hook fails when x needs no gradient (under torch.no_grad(), in an evaluation loop)",
        "a hook can only go on a tensor that requires grad; without one there is nothing to scale, and the "
        "function must simply return x's value.",
        "if y.requires_grad: y.register_hook(...), or return x * alpha + x.detach() * (1 - alpha), which needs no "
        "hook.",
        output=_with_gradient(_hook_on_clone),
    ),
]


EMBEDDING_GRAD_SHRINK = register(Exercise(
    id="embedding_grad_shrink",
    title="shrink_embedding_gradient",
    syllabus=("L10",),
    reference=_with_gradient(reference_embeddings.shrink_embedding_gradient),
    cases=_shrink_cases,
    adapt=_with_gradient,
    mistakes=SHRINK_MISTAKES,
    forbidden={reference_embeddings.shrink_embedding_gradient: "llmcore.embeddings.shrink_embedding_gradient"},
    delegation=reference_embeddings.shrink_embedding_gradient,
    output_names=("output", "gradient into x"),
    fallback_hint="return x * alpha + x.detach() * (1 - alpha): the value of x, with alpha times the gradient.",
))
check_embedding_grad_shrink = EMBEDDING_GRAD_SHRINK.check
