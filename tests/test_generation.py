"""Text generation (文本生成): sampling filters by hand, sampling frequencies, beam search against
exhaustive search, stop tokens, streaming and errors.

Two kinds of model drive :func:`llmcore.generation.generate` here:

* :class:`TableLM`, a stand-in whose next-token logits are a fixed row of a table chosen by the
  last token (a Markov chain). Every distribution it implies is computed by hand with ``math.exp``,
  so sampling frequencies and greedy choices have an oracle that shares no code with llmcore.
* real tiny ``CausalLM``/``Seq2SeqLM`` models with a 4-token vocabulary, whose every possible output
  (4³ sequences) is scored by teacher forcing - the plain forward pass - to find the true best one;
  with fewer beams than outputs, a beam search written from the definition (no early exit) is the
  oracle.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from llmcore.generation import (
    _beam_search,
    _CausalSteps,
    apply_repetition_penalty,
    generate,
    sampling_distribution,
    top_k_filter,
    top_p_filter,
)
from llmcore.models import build
from zoo_helpers import randomize_

NEG_INF = float("-inf")


class TableLM(nn.Module):
    """Decoder-only stand-in: the logits after token ``t`` are ``table[t]`` (``[V, V]``), whatever came before.

    Duck-typed like ``CausalLM`` for :func:`generate`: a ``config`` (no layers, so its KV cache is
    empty) and ``forward(ids, mask, positions, *, cache, logits_to_keep)``. ``calls`` counts forwards.
    """

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))
        self.config = SimpleNamespace(position_2d=False, resolved_layer_kinds=(), position="none", sliding_window=None)
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, *, cache=None, logits_to_keep=0):
        self.calls += 1
        logits = self.table[input_ids]
        return logits[:, -logits_to_keep:] if logits_to_keep else logits


def softmax(values: list[float]) -> list[float]:
    """Probabilities of plain Python logits (−∞ allowed), the hand-computed reference."""
    finite = [v for v in values if v != NEG_INF]
    top = max(finite)
    weights = [0.0 if v == NEG_INF else math.exp(v - top) for v in values]
    return [w / sum(weights) for w in weights]


def chi_square(counts: torch.Tensor, probabilities: list[float]) -> tuple[float, int]:
    """Pearson's statistic over the cells of non-zero probability, and its degrees of freedom."""
    total = int(counts.sum())
    statistic, cells = 0.0, 0
    for count, p in zip(counts.tolist(), probabilities):
        if p == 0.0:
            assert count == 0, "a token of probability 0 was sampled"
            continue
        statistic += (count - total * p) ** 2 / (total * p)
        cells += 1
    return statistic, cells - 1


def assert_follows(counts: torch.Tensor, probabilities: list[float]) -> None:
    """The statistic stays below its mean plus six standard deviations (df ± √(2·df)): a wrong law exceeds it."""
    statistic, df = chi_square(counts, probabilities)
    assert statistic < df + 6 * math.sqrt(2 * df), f"chi-square {statistic:.1f} with {df} degrees of freedom"


# ----------------------------------------------------------------------------- filters by hand


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 0.0], [2.0, -1.0, 0.5, -3.0, 0.0]])
    seen = torch.tensor([[True, True, False, False, True], [False, False, True, True, False]])
    penalised = apply_repetition_penalty(logits, seen, 2.0)
    assert penalised.tolist() == [[1.0, -2.0, 0.5, -3.0, 0.0], [2.0, -1.0, 0.25, -6.0, 0.0]]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)
    with pytest.raises(ValueError, match="repetition_penalty"):
        apply_repetition_penalty(logits, seen, 0.0)


def test_top_k_keeps_the_k_largest_and_ties_at_the_kth_value():
    logits = torch.tensor([[1.0, 3.0, 0.0, 2.0, -1.0], [1.0, 2.0, 2.0, 0.0, 2.0]])
    assert top_k_filter(logits, 2).tolist() == [
        [NEG_INF, 3.0, NEG_INF, 2.0, NEG_INF],
        [NEG_INF, 2.0, 2.0, NEG_INF, 2.0],  # the 2nd value, 2.0, is shared by three tokens: all stay
    ]
    assert top_k_filter(logits, 1).tolist()[0] == [NEG_INF, 3.0, NEG_INF, NEG_INF, NEG_INF]
    assert torch.equal(top_k_filter(logits, 5), logits) and torch.equal(top_k_filter(logits, 9), logits)
    for k in (0, -1):
        with pytest.raises(ValueError, match="top_k"):
            top_k_filter(logits, k)


def test_top_p_keeps_the_smallest_set_reaching_p():
    # Probabilities 1/2, 1/4, 1/8, 1/8 exactly (dyadic, so the sums below are exact in float32).
    logits = torch.tensor([[math.log(4), math.log(2), 0.0, 0.0]])
    assert torch.softmax(logits, -1).tolist() == [[0.5, 0.25, 0.125, 0.125]]
    kept = lambda p: (top_p_filter(logits, p) > NEG_INF)[0].tolist()  # noqa: E731
    assert kept(0.4) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    # The boundary: 1/2 + 1/4 is exactly 0.75, so the first two tokens already reach p.
    assert kept(0.75) == [True, True, False, False]
    assert kept(0.76) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    # The most probable token survives however small p is, and keeps its logit.
    assert kept(1e-9) == [True, False, False, False]
    assert top_p_filter(logits, 1e-9)[0, 0] == logits[0, 0]


def test_top_p_works_on_each_row_in_its_own_order():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    kept = (top_p_filter(logits, 0.8) > NEG_INF).tolist()
    assert kept == [[False, True, True], [True, True, False]]


@pytest.mark.parametrize("p", [0.0, -0.1, 1.01])
def test_top_p_outside_its_range_is_refused(p):
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.zeros(1, 3), p)


LOGITS = [2.0, 1.0, 0.5, -1.0, 0.0]


def test_temperature_divides_the_logits():
    for temperature in (0.5, 1.0, 3.0):
        probs = sampling_distribution(torch.tensor([LOGITS]), temperature=temperature)[0].tolist()
        assert probs == pytest.approx(softmax([v / temperature for v in LOGITS]), abs=1e-6)
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            sampling_distribution(torch.tensor([LOGITS]), temperature=temperature)


def test_sampling_distribution_applies_temperature_then_top_k_then_top_p():
    # T = 0.5 doubles the logits: 4, 2, 1, -2, 0. Top-3 keeps tokens 0, 1, 2 with weights e⁴, e², e¹.
    weights = [math.exp(4), math.exp(2), math.exp(1)]
    expected_top_k = [w / sum(weights) for w in weights] + [0.0, 0.0]
    probs = sampling_distribution(torch.tensor([LOGITS]), temperature=0.5, top_k=3)[0].tolist()
    assert probs == pytest.approx(expected_top_k, abs=1e-6)
    # Top-p 0.9 on the temperature-scaled distribution: token 0 has ≈ 0.84 < 0.9, so token 1 joins, then stop.
    full = softmax([4.0, 2.0, 1.0, -2.0, 0.0])
    assert full[0] < 0.9 <= full[0] + full[1]
    pair = [math.exp(4), math.exp(2)]
    expected_top_p = [pair[0] / sum(pair), pair[1] / sum(pair), 0.0, 0.0, 0.0]
    probs = sampling_distribution(torch.tensor([LOGITS]), temperature=0.5, top_p=0.9)[0].tolist()
    assert probs == pytest.approx(expected_top_p, abs=1e-6)
    # Both: top-k 3 renormalises first, so token 0 has e⁴/(e⁴+e²+e) ≈ 0.84 and token 1 is still needed.
    probs = sampling_distribution(torch.tensor([LOGITS]), temperature=0.5, top_k=3, top_p=0.85)[0].tolist()
    assert expected_top_k[0] < 0.85
    assert probs == pytest.approx(expected_top_p, abs=1e-6)


# ----------------------------------------------------------------------------- sampling frequencies

# Token 0 is the prompt; tokens 1..4 follow it with hand-chosen logits (row t: logits after token t).
CHAIN = [
    [NEG_INF, 1.0, 0.0, 2.0, -1.0],
    [NEG_INF, 0.0, 1.5, 0.5, 0.5],
    [NEG_INF, 2.0, 0.0, 0.0, 1.0],
    [NEG_INF, -1.0, 1.0, 0.0, 3.0],
    [NEG_INF, 0.5, 0.5, 2.5, 0.0],
]


def filtered(
    row: list[float], temperature: float, top_k: int | None, top_p: float | None, penalty: float = 1.0, seen=()
) -> list[float]:
    """The sampling law of one table row, computed by hand: repetition penalty on the ``seen`` tokens,
    then temperature, then top-k, then top-p."""
    row = [(v / penalty if v > 0 else v * penalty) if i in seen else v for i, v in enumerate(row)]
    scaled = [v / temperature for v in row]
    order = sorted(range(len(row)), key=lambda i: -scaled[i])
    if top_k is not None:
        kth = scaled[order[top_k - 1]]
        scaled = [v if v >= kth else NEG_INF for v in scaled]
    if top_p is not None:
        probs = softmax(scaled)
        mass, kept = 0.0, set()
        for i in order:
            if mass < top_p:
                kept.add(i)
            mass += probs[i]
        scaled = [v if i in kept else NEG_INF for i, v in enumerate(scaled)]
    return softmax(scaled)


@pytest.mark.parametrize(
    "temperature, top_k, top_p, penalty",
    [
        (1.0, None, None, 1.0),
        (0.7, None, None, 1.0),
        (1.5, 3, None, 1.0),
        (1.0, None, 0.8, 1.0),
        (1.3, 3, 0.9, 1.0),
        (0.8, None, None, 2.0),
        (1.2, 3, 0.9, 3.0),
    ],
)
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no cache"])
def test_two_sampled_tokens_follow_the_hand_computed_joint_law(temperature, top_k, top_p, penalty, use_cache):
    model = TableLM(CHAIN)
    draws = 20000
    result = generate(
        model, torch.zeros(draws, 1, dtype=torch.long), max_new_tokens=2, do_sample=True, temperature=temperature,
        top_k=top_k, top_p=top_p, repetition_penalty=penalty, seed=1234, use_cache=use_cache,
    )
    first, second = result.new_tokens[:, 0], result.new_tokens[:, 1]
    # The prompt token 0 is seen from the start; the first sampled token a is seen at the second step.
    joint = [
        filtered(CHAIN[0], temperature, top_k, top_p, penalty, {0})[a]
        * filtered(CHAIN[a], temperature, top_k, top_p, penalty, {0, a})[b]
        for a in range(5)
        for b in range(5)
    ]
    counts = torch.bincount(first * 5 + second, minlength=25)
    assert_follows(counts, joint)
    # The bound has power: the unfiltered law (temperature 1, no top-k/top-p) is rejected unless it is the one in use.
    if (temperature, top_k, top_p, penalty) != (1.0, None, None, 1.0):
        plain = [softmax(CHAIN[0])[a] * softmax(CHAIN[a])[b] for a in range(5) for b in range(5)]
        statistic, df = chi_square(counts, [max(p, 1e-12) for p in plain])
        assert statistic > df + 6 * math.sqrt(2 * df)


def test_sampling_from_a_real_model_follows_its_softmax():
    model = randomize_(build("tiny-llama", vocab_size=6), std=0.1).eval()
    prompt = torch.tensor([[1, 4, 2, 5]])
    with torch.no_grad():
        logits = model(prompt)[0, -1]
    expected = softmax([v / 0.8 for v in logits.tolist()])
    result = generate(model, prompt.expand(8000, -1), max_new_tokens=1, do_sample=True, temperature=0.8, seed=5)
    assert_follows(torch.bincount(result.new_tokens[:, 0], minlength=6), expected)


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    model = randomize_(build("tiny-llama"), std=0.05).eval()
    prompt = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    options = dict(max_new_tokens=10, do_sample=True, top_k=50)
    sampled = generate(model, prompt, seed=7, **options)
    assert sampled.scores is None
    first = sampled.new_tokens
    assert torch.equal(first, generate(model, prompt, seed=7, **options).new_tokens)
    assert torch.equal(first, generate(model, prompt, generator=torch.Generator().manual_seed(7), **options).new_tokens)
    assert not torch.equal(first, generate(model, prompt, seed=8, **options).new_tokens)


def test_greedy_ties_go_to_the_lowest_id():
    model = TableLM([[1.0, 5.0, 2.0, 5.0]] * 4)
    assert generate(model, torch.tensor([[0]]), max_new_tokens=2).new_tokens.tolist() == [[1, 1]]


def test_repetition_penalty_steers_greedy_decoding_by_hand():
    # Constant logits 3.0, 2.7, 2.2, 0.5 after every token; penalty 1.5 divides a seen token's logit once.
    row = [3.0, 2.7, 2.2, 0.5]
    model = TableLM([row] * 4)
    # Step 1: 3.0 → token 0. Step 2: 0 is seen (2.0) → token 1 (2.7). Step 3: 2.0, 1.8, 2.2 → token 2.
    # Step 4: 2.0, 1.8, 1.47, 0.5 → token 0 again.
    result = generate(model, torch.tensor([[3]]), max_new_tokens=4, repetition_penalty=1.5)
    assert result.new_tokens.tolist() == [[0, 1, 2, 0]]
    # Prompt tokens count as seen: with token 0 in the prompt, 3.0 becomes 2.0 and token 1 wins first.
    assert generate(model, torch.tensor([[0]]), max_new_tokens=1, repetition_penalty=1.5).new_tokens.tolist() == [[1]]
    # Padding is not a token the row has seen.
    padded = generate(model, torch.tensor([[0, 3]]), torch.tensor([[0, 1]]), max_new_tokens=1, repetition_penalty=1.5)
    assert padded.new_tokens.tolist() == [[0]]


# ----------------------------------------------------------------------------- beam search vs exhaustive search

VOCAB, STEPS, STOP = 4, 3, 3


def candidate_outputs(stop: int | None) -> list[tuple[int, ...]]:
    """Every output of at most STEPS tokens: it ends at the stop token or at STEPS tokens."""
    if stop is None:
        return list(itertools.product(range(VOCAB), repeat=STEPS))
    others = [t for t in range(VOCAB) if t != stop]
    outputs = [body + (stop,) for n in range(STEPS) for body in itertools.product(others, repeat=n)]
    return outputs + list(itertools.product(others, repeat=STEPS))


def causal_log_prob(model, prompt: list[int], output: tuple[int, ...]) -> float:
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([prompt + list(output)])).double(), dim=-1)[0]
    return sum(float(log_probs[len(prompt) - 1 + i, token]) for i, token in enumerate(output))


def seq2seq_log_prob(model, source: list[int], output: tuple[int, ...], start: int) -> float:
    decoder_input = torch.tensor([[start, *output[:-1]]])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([source]), None, decoder_input).double(), dim=-1)[0]
    return sum(float(log_probs[i, token]) for i, token in enumerate(output))


def exhaustive_best(score_of, stop: int | None, length_penalty: float) -> tuple[tuple[int, ...], float]:
    scored = [(score_of(output) / len(output) ** length_penalty, output) for output in candidate_outputs(stop)]
    scored.sort(reverse=True)
    assert scored[0][0] - scored[1][0] > 1e-4, "the best two outputs are too close to tell apart"
    return scored[0][1], scored[0][0]


@pytest.fixture(scope="module")
def tiny_causal():
    return randomize_(build("tiny-llama", vocab_size=VOCAB), seed=3).eval()


@pytest.fixture(scope="module")
def tiny_seq2seq():
    return randomize_(build("tiny-transformer", vocab_size=VOCAB), seed=4).eval()


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("stop", [None, STOP], ids=["no stop", "stop token"])
def test_causal_beam_search_finds_the_exhaustive_best(tiny_causal, stop, length_penalty):
    prompts = [[1, 2, 0, 1], [2, 2]]
    ids = torch.tensor([[1, 2, 0, 1], [0, 0, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    beams = len(candidate_outputs(stop))
    result = generate(
        tiny_causal, ids, mask, max_new_tokens=STEPS, num_beams=beams, length_penalty=length_penalty,
        stop_tokens=[] if stop is None else [stop], pad_token_id=0,
    )
    for row, prompt in enumerate(prompts):
        best, score = exhaustive_best(lambda out: causal_log_prob(tiny_causal, prompt, out), stop, length_penalty)
        assert result.new_tokens[row, : len(best)].tolist() == list(best)
        assert (result.new_tokens[row, len(best) :] == 0).all()
        assert float(result.scores[row]) == pytest.approx(score, abs=1e-5)
        assert bool(result.finished[row]) == (stop is not None and best[-1] == stop)
        assert result.sequences[row, : ids.shape[1]].tolist() == ids[row].tolist()


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("stop", [None, STOP], ids=["no stop", "stop token"])
def test_seq2seq_beam_search_finds_the_exhaustive_best(tiny_seq2seq, stop, length_penalty):
    sources = [[1, 2, 3, 1, 2], [3, 1]]
    src = torch.tensor([[1, 2, 3, 1, 2], [3, 1, 0, 0, 0]])
    src_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    beams = len(candidate_outputs(stop))
    result = generate(
        tiny_seq2seq, src, src_mask, max_new_tokens=STEPS, num_beams=beams, length_penalty=length_penalty,
        stop_tokens=[] if stop is None else [stop], decoder_start_token_id=0,
    )
    for row, source in enumerate(sources):
        best, score = exhaustive_best(lambda out: seq2seq_log_prob(tiny_seq2seq, source, out, 0), stop, length_penalty)
        assert result.new_tokens[row, : len(best)].tolist() == list(best)
        assert float(result.scores[row]) == pytest.approx(score, abs=1e-5)
        assert bool(result.finished[row]) == (stop is not None and best[-1] == stop)


def reference_beam_search(log_probs_after, num_beams: int, steps: int, stop: int, length_penalty: float):
    """Beam search without early stopping, written from the definition: at each step the best
    candidates (beam score + next log-prob) in order; a stop token (or the last step) finishes a
    hypothesis, the others fill the ``num_beams`` live beams; the answer is the best finished
    hypothesis by ``score / length^α``."""
    live: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    finished: list[tuple[float, tuple[int, ...]]] = []
    for step in range(steps):
        candidates = sorted(
            (
                (score + lp, tokens + (token,))
                for tokens, score in live
                for token, lp in enumerate(log_probs_after(tokens))
            ),
            key=lambda candidate: -candidate[0],
        )
        live = []
        for score, tokens in candidates[: 2 * num_beams]:
            if len(live) == num_beams:
                break
            if tokens[-1] == stop or step == steps - 1:
                finished.append((score / len(tokens) ** length_penalty, tokens))
            else:
                live.append((tokens, score))
    return max(finished)


def test_beam_search_with_few_beams_matches_the_reference_and_stops_early(tiny_causal):
    """Fewer beams than outputs: the early exit (no live beam can still beat the worst kept finished
    one) must not change the answer of a search that runs every step."""
    steps = 6
    forwards = []
    hook = tiny_causal.register_forward_hook(lambda *args: forwards.append(1))
    try:
        stopped_early = 0
        for prompt in ([1, 2, 0, 1], [2, 2], [0, 3, 1], [3]):
            def log_probs_after(tokens, prompt=prompt):
                with torch.no_grad():
                    logits = tiny_causal(torch.tensor([prompt + list(tokens)]))[0, -1].double()
                return torch.log_softmax(logits, dim=-1).tolist()

            for num_beams, length_penalty in itertools.product((2, 3), (0.0, 1.0)):
                best_score, best = reference_beam_search(log_probs_after, num_beams, steps, STOP, length_penalty)
                forwards.clear()
                result = generate(
                    tiny_causal, torch.tensor([prompt]), max_new_tokens=steps, num_beams=num_beams,
                    length_penalty=length_penalty, stop_tokens=[STOP],
                )
                stopped_early += len(forwards) < steps
                assert result.new_tokens[0, : len(best)].tolist() == list(best), (prompt, num_beams, length_penalty)
                assert float(result.scores[0]) == pytest.approx(best_score, abs=1e-5)
        assert stopped_early, "no case exercised the early exit"
    finally:
        hook.remove()


def test_beam_search_rows_of_a_padded_batch_match_their_own_search(tiny_causal):
    ids = torch.tensor([[1, 2, 0, 1], [0, 0, 0, 3]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 1]])
    options = dict(max_new_tokens=6, num_beams=2, stop_tokens=[STOP], length_penalty=1.0)
    batched = generate(tiny_causal, ids, mask, **options)
    for row in range(2):
        alone = generate(tiny_causal, ids[row][mask[row].bool()].unsqueeze(0), **options)
        width = alone.new_tokens.shape[1]
        assert batched.new_tokens[row, :width].tolist() == alone.new_tokens[0].tolist()
        assert (batched.new_tokens[row, width:] == 0).all()
        assert float(batched.scores[row]) == pytest.approx(float(alone.scores[0]), abs=1e-5)


def test_beam_search_with_one_beam_is_greedy(tiny_causal):
    """``generate`` sends num_beams=1 to greedy decoding; the beam loop itself must agree with it."""
    ids = torch.tensor([[1, 2, 0, 1], [0, 0, 2, 2]])
    keep = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]]).bool()
    greedy = generate(tiny_causal, ids, keep, max_new_tokens=5)
    with torch.inference_mode():
        beam = _beam_search(
            lambda prompt, mask: _CausalSteps(tiny_causal, prompt, mask, True, prompt.shape[1] + 5),
            ids, keep, False, max_new_tokens=5, num_beams=1, length_penalty=1.0,
            stop=torch.zeros(0, dtype=torch.long), pad_token_id=0, on_token=None,
        )
    assert torch.equal(beam.new_tokens, greedy.new_tokens)
    assert torch.equal(generate(tiny_causal, ids, keep, max_new_tokens=5, num_beams=1).new_tokens, greedy.new_tokens)


def test_beam_search_is_the_same_with_and_without_cache(tiny_causal):
    ids = torch.tensor([[1, 2, 0, 1], [0, 0, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    options = dict(max_new_tokens=4, num_beams=3, stop_tokens=[STOP])
    cached = generate(tiny_causal, ids, mask, **options)
    uncached = generate(tiny_causal, ids, mask, use_cache=False, **options)
    assert torch.equal(cached.new_tokens, uncached.new_tokens)
    assert torch.allclose(cached.scores, uncached.scores, atol=1e-5)
    assert cached.cache_bytes > 0 and uncached.cache_bytes == 0


# ----------------------------------------------------------------------------- stop tokens, streaming, early exit

# After token t the only sensible next token is t + 1 (mod 6): rows run 1, 2, 3, … from their prompt.
COUNTER = [[10.0 if j == (t + 1) % 6 else 0.0 for j in range(6)] for t in range(6)]


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no cache"])
def test_a_row_stops_at_its_stop_token_and_is_padded_after(use_cache):
    model = TableLM(COUNTER)
    # Finished rows feed their pad id back to the model, so it must be a real token id.
    streamed: list[list[int]] = []
    result = generate(
        model, torch.tensor([[0], [3], [5]]), max_new_tokens=6, stop_tokens=[4], pad_token_id=5,
        use_cache=use_cache, on_token=lambda tokens: streamed.append(tokens.tolist()),
    )
    # The last row stops at step 5, so decoding ends there: 5 columns, not 6.
    assert result.new_tokens.tolist() == [
        [1, 2, 3, 4, 5],
        [4, 5, 5, 5, 5],
        [0, 1, 2, 3, 4],
    ]
    assert result.finished.tolist() == [True, True, True]
    assert result.sequences.tolist() == [[0, 1, 2, 3, 4, 5], [3, 4, 5, 5, 5, 5], [5, 0, 1, 2, 3, 4]]
    assert result.scores is None
    # Streaming: one [B] tensor per step, in order, equal to the columns of new_tokens.
    assert streamed == [list(column) for column in zip(*result.new_tokens.tolist())]


def test_decoding_stops_once_every_row_has_finished():
    model = TableLM(COUNTER)
    result = generate(model, torch.tensor([[0], [1]]), max_new_tokens=20, stop_tokens=[3, 4], pad_token_id=0)
    # Row 0: 1, 2, 3 (stops); row 1: 2, 3 (stops), so 3 steps and 3 forward calls (the first and two more).
    assert result.new_tokens.tolist() == [[1, 2, 3], [2, 3, 0]]
    assert result.finished.tolist() == [True, True]
    assert model.calls == 3


def test_rows_that_never_stop_run_to_max_new_tokens():
    model = TableLM(COUNTER)
    result = generate(model, torch.tensor([[0], [2]]), max_new_tokens=3, stop_tokens=[5])
    assert result.new_tokens.tolist() == [[1, 2, 3], [3, 4, 5]]
    assert result.finished.tolist() == [False, True]
    # The last token is never fed back: 3 tokens take 3 forward calls.
    assert model.calls == 3


def test_streaming_from_a_real_model_equals_new_tokens():
    model = randomize_(build("tiny-gpt2")).eval()
    streamed: list[torch.Tensor] = []
    result = generate(model, torch.tensor([[5, 6, 7], [0, 8, 9]]), torch.tensor([[1, 1, 1], [0, 1, 1]]),
                      max_new_tokens=6, on_token=streamed.append)
    assert len(streamed) == 6 and all(t.shape == (2,) for t in streamed)
    assert torch.equal(torch.stack(streamed, dim=1), result.new_tokens)


def test_beam_search_streams_the_columns_of_the_best_outputs(tiny_causal):
    streamed: list[torch.Tensor] = []
    result = generate(tiny_causal, torch.tensor([[1, 2], [2, 1]]), max_new_tokens=3, num_beams=4,
                      stop_tokens=[STOP], on_token=streamed.append)
    assert torch.equal(torch.stack(streamed, dim=1), result.new_tokens)


def test_zero_new_tokens_returns_the_prompt():
    model = TableLM(COUNTER)
    result = generate(model, torch.tensor([[1, 2]]), max_new_tokens=0)
    assert result.new_tokens.shape == (1, 0) and result.sequences.tolist() == [[1, 2]]
    assert model.calls == 0


def test_generate_restores_training_mode():
    model = build("tiny-llama").train()
    generate(model, torch.tensor([[1, 2]]), max_new_tokens=1)
    assert model.training


def test_cache_bytes_counts_the_cache_that_was_used():
    model = build("tiny-llama").eval()  # 2 layers, 2 KV heads of 16
    prompt = torch.tensor([[1, 2, 3, 4, 5]] * 3)
    with_cache = generate(model, prompt, max_new_tokens=4)
    needed = 2 * 2 * 3 * 2 * (5 + 4 - 1) * 16 * 4  # layers × (k, v) × B × H_kv × positions fed × D × bytes
    assert needed <= with_cache.cache_bytes <= 2 * needed
    assert generate(model, prompt, max_new_tokens=4, use_cache=False).cache_bytes == 0


def test_logits_to_keep_returns_the_last_positions():
    model = randomize_(build("tiny-llama")).eval()
    ids = torch.randint(0, 256, (2, 7))
    with torch.no_grad():
        full = model(ids)
        assert torch.allclose(model(ids, logits_to_keep=3), full[:, -3:], atol=1e-6)
        assert model(ids, logits_to_keep=1).shape == (2, 1, 256)
        assert torch.allclose(model(ids, logits_to_keep=0), full)
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(ids, logits_to_keep=-1)
    seq2seq = randomize_(build("tiny-t5")).eval()
    with torch.no_grad():
        memory = seq2seq.encode(torch.randint(1, 256, (2, 5)))
        targets = torch.randint(1, 256, (2, 6))
        last_two = seq2seq.decode(targets, memory, logits_to_keep=2)
        assert torch.allclose(last_two, seq2seq.decode(targets, memory)[:, -2:], atol=1e-6)
    with pytest.raises(ValueError, match="logits_to_keep"):
        seq2seq.decode(targets, memory, logits_to_keep=-1)


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def llama():
    return build("tiny-llama").eval()


def test_a_right_padded_prompt_is_refused(llama):
    with pytest.raises(ValueError, match="left padding"):
        generate(llama, torch.tensor([[1, 2, 0]]), torch.tensor([[1, 1, 0]]), max_new_tokens=1)


def test_a_row_of_padding_only_and_a_mask_of_the_wrong_shape_are_refused(llama):
    with pytest.raises(ValueError, match="at least one real token"):
        generate(llama, torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 1], [0, 0]]), max_new_tokens=1)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate(llama, torch.tensor([[1, 2]]), torch.tensor([[1, 1, 1]]), max_new_tokens=1)
    with pytest.raises(ValueError, match="input_ids"):
        generate(llama, torch.tensor([1, 2]), max_new_tokens=1)
    with pytest.raises(ValueError, match="at least one token"):
        generate(llama, torch.zeros(1, 0, dtype=torch.long), max_new_tokens=1)


def test_a_seq2seq_model_needs_a_decoder_start_token():
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        generate(build("tiny-t5").eval(), torch.tensor([[5, 6]]), max_new_tokens=1)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_beams=2, do_sample=True), "num_beams"),
        (dict(num_beams=0), "num_beams"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(do_sample=True, temperature=0.0), "temperature"),
        (dict(do_sample=True, temperature=-1.0), "temperature"),
        (dict(do_sample=True, top_p=0.0), "top_p"),
        (dict(do_sample=True, top_p=1.5), "top_p"),
        (dict(do_sample=True, top_k=0), "top_k"),
        (dict(do_sample=True, top_k=-3), "top_k"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=2.0), "top_p"),
        (dict(temperature=0.0), "temperature"),
        (dict(num_beams=2, repetition_penalty=1.2), "beam search"),
    ],
    ids=str,
)
def test_bad_options_are_refused_with_a_clear_error(llama, options, message):
    options = {"max_new_tokens": 2, **options}
    with pytest.raises(ValueError, match=message):
        generate(llama, torch.tensor([[1, 2, 3]]), **options)
