"""Exercises of notebook 06_glm_chatglm: GLM's blank infilling and its attention mask (SYLLABUS L09),
ChatGLM-6B's DeepNorm residual and GLM-130B's embedding gradient shrink (L10).

Conventions, as in llmcore: masks are boolean with True = may attend (ChatGLM-6B's own code uses
True = masked); Part B tokens take the Part A index of their span's ``[MASK]`` as position, and
block positions run ``1 … len + 1`` inside a span (0 in Part A); targets are −100 over Part A.

Blank infilling is randomised: the learner's function shuffles the spans with a ``torch.Generator``.
The check reads the order the learner chose from its Part B and compares everything else with
:func:`llmcore.data.blank_infilling` in that order; then a chi-square test over a fixed list of
seeds asks that every order comes up equally often, and a second call with the same seed must give
the same order.
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


def _run_infilling(function: Callable) -> Callable[..., Any]:
    """The learner's function on a case: called with a fresh generator from the case's seed; the order
    it chose is remembered for the reference."""

    def run(tokens: Tensor, spans: list[tuple[int, int]], mask_id: int, start_id: int, end_id: int, seed: int) -> Any:
        output = function(tokens, spans, mask_id, start_id, end_id, _generator(seed))
        _CHOSEN.order = _span_order(output, tokens, spans)
        return tuple(output) if isinstance(output, list) else output

    return run


def _infilling(tokens: Tensor, spans: list[tuple[int, int]], mask_id: int, start_id: int, end_id: int,
               order: list[int], *, positions: str = "mask", block_start: int = 1, targets: str = "shifted",
               start_token: bool = True, mask_per_token: bool = False) -> tuple:
    """Blank infilling written out with knobs: every mistake is one setting.

    positions: "mask" (the span's [MASK] index in Part A), "continue" (0 … L−1 throughout),
    "original" (the span's start in the original text), "by_block" (the k-th Part B block takes the
    k-th [MASK]'s index).
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
        else:
            where = None
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
    seed = int(torch.randint(0, 2**31, (1,), generator=random.generator))
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

# The order test: 3 spans (6 orders), 180 fixed seeds, 30 expected per order.
ORDER_TEST_SEEDS = tuple(range(1000, 1180))
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
        self._test_order(learner, watch)

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

    def _test_order(self, learner: Callable, watch: bool) -> None:
        tokens = torch.arange(10, 22)
        spans = [(1, 3), (5, 6), (8, 11)]
        watcher = DelegationWatch(self.forbidden if watch else {}, self.forbidden_ops if watch else {})
        with watcher:
            drawn = [tuple(_span_order(learner(tokens, spans, 0, 1, 2, _generator(seed)), tokens, spans))
                     for seed in ORDER_TEST_SEEDS]
            again = [tuple(_span_order(learner(tokens, spans, 0, 1, 2, _generator(seed)), tokens, spans))
                     for seed in ORDER_TEST_SEEDS[:10]]
        self._refuse_delegation(watcher, 0)
        where = "the order test (12 tokens, spans [1, 3) [5, 6) [8, 11), called with generators seeded 1000 … 1179)"
        if again != drawn[:10]:
            first = next(i for i, (a, b) in enumerate(zip(again, drawn)) if a != b)
            raise self._failure(
                f"✘ {self.title}: every case is right, but in {where}:",
                [f"    seed {ORDER_TEST_SEEDS[first]} gave the order {list(drawn[first])}, "
                 f"then {list(again[first])}"],
                [IGNORES_GENERATOR], 0)
        orders = sorted({tuple(p) for p in _permutations(3)})
        counts = [drawn.count(order) for order in orders]
        statistic, p = chi_square_p_value(counts)
        if p <= ORDER_TEST_P_VALUE:
            table = ", ".join(f"{list(order)}: {count}" for order, count in zip(orders, counts))
            diagnosis = [self.mistake("not_shuffled")] if counts[0] == len(drawn) else []
            raise self._failure(
                f"✘ {self.title}: every case is right, but the Part B order is not uniformly random in {where}:",
                [f"    times each order came up (30 expected each): {table}",
                 f"    chi-square = {statistic:.1f} with 5 degrees of freedom, p = {p:.2g} "
                 f"(must be > {ORDER_TEST_P_VALUE:g})"],
                diagnosis, 0)
        print(f"✔ {self.title}: the Part B order is uniform over the 6 orders of 3 spans "
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


DEEPNORM_RESIDUAL = register(Exercise(
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
    """``(x, alpha, upstream) -> (output, ∂(output · upstream)/∂x)``: the forward and the backward pass
    of ``function`` as values, so that a wrong gradient is diagnosed like a wrong output."""

    def run(x: Tensor, alpha: float, upstream: Tensor) -> tuple[Tensor, Tensor]:
        leaf = x.detach().clone().requires_grad_(True)
        output = function(leaf, alpha)
        if not isinstance(output, Tensor) or not output.requires_grad:
            return output, torch.zeros_like(x)
        (gradient,) = torch.autograd.grad(output, leaf, upstream if output.shape == upstream.shape else None,
                                          allow_unused=True)
        return output.detach(), torch.zeros_like(x) if gradient is None else gradient

    return run


def _shrink_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, shape: tuple[int, ...], dtype: torch.dtype, alpha: float) -> Case:
        return Case(description, (random.tensor(shape, dtype), alpha, random.tensor(shape, dtype)))

    if not hidden:
        return [
            case("x [B=2, L=3, d=5], float32, α = 0.1 (GLM-130B)", (2, 3, 5), torch.float32, 0.1),
            case("x [B=1, L=4, d=6], float64, α = 0.25", (1, 4, 6), torch.float64, 0.25),
            case("x [L=3, d=7], float32, α = 1 (no shrink: the gradient passes unchanged)", (3, 7), torch.float32,
                 1.0),
        ]
    return [
        case("x [B=3, L=2, d=9], float64, α = 0.1", (3, 2, 9), torch.float64, 0.1),
        case("x [B=2, L=5, d=4], float32, α = 0.6", (2, 5, 4), torch.float32, 0.6),
    ]


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
