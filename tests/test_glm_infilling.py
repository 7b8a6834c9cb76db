"""GLM's autoregressive blank infilling (Du et al. 2022) and the GLM-10B-style model that reads it.

The input builder is checked against the paper's Figure 2 worked by hand. The model
(``tiny-glm-infilling``: pre-LN GPT stack, two learned position tables, prefix mask) has no
transformers class; its oracle is :func:`naive_glm`, written independently from the GLM paper and
the original GLM code's description (word + position + block-position embeddings summed, per-head
loops, the Part A / Part B mask built with an explicit loop, the tanh GELU spelled out), run on each
example unpadded.
"""

from __future__ import annotations

import math

import pytest
import torch

from llmcore.data import blank_infilling
from llmcore.models import build
from zoo_helpers import assert_parity, randomize_, relative_error

ORACLE = "naive GLM (per-head loops)"
MASK, START, END = 250, 251, 252
X = [11, 12, 13, 14, 15, 16]  # x1 … x6


def figure_2_example():
    # Spans [x3] and [x5, x6]; Part B in the figure's order: x5 x6 first, then x3.
    return blank_infilling(X, [(4, 6), (2, 3)], mask_token_id=MASK, start_token_id=START, end_token_id=END, order=[1, 0])


def test_figure_2_of_the_glm_paper():
    example = figure_2_example()
    x1, x2, x3, x4, x5, x6 = X
    assert example.part_a_length == 5
    assert example.input_ids.tolist() == [x1, x2, MASK, x4, MASK, START, x5, x6, START, x3]
    assert example.targets.tolist() == [-100] * 5 + [x5, x6, END, x3, END]
    # The figure's "Position 1" counts from 1: 1 2 3 4 5 5 5 5 3 3.
    assert (example.position_ids + 1).tolist() == [1, 2, 3, 4, 5, 5, 5, 5, 3, 3]
    assert example.block_position_ids.tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]
    # Figure 2(d): Part A sees Part A; Part B sees Part A and the Part B tokens up to itself.
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[:, :5] = True
    for q in range(5, 10):
        expected[q, 5 : q + 1] = True
    assert torch.equal(example.attention_mask(), expected)


def test_spans_in_text_order_and_a_span_at_the_end():
    example = blank_infilling([1, 2, 3, 4], [(3, 4), (0, 1)], mask_token_id=MASK, start_token_id=START, end_token_id=END, order=[0, 1])
    assert example.input_ids.tolist() == [MASK, 2, 3, MASK, START, 1, START, 4]
    assert example.position_ids.tolist() == [0, 1, 2, 3, 0, 0, 3, 3]
    assert example.block_position_ids.tolist() == [0, 0, 0, 0, 1, 2, 1, 2]


def test_random_order_is_a_reproducible_permutation():
    spans = [(0, 1), (2, 4), (5, 6), (7, 9)]
    tokens = list(range(20, 30))

    def build_with(seed):
        generator = torch.Generator().manual_seed(seed)
        return blank_infilling(tokens, spans, mask_token_id=MASK, start_token_id=START, end_token_id=END, generator=generator)

    first, again = build_with(3), build_with(3)
    assert torch.equal(first.input_ids, again.input_ids)
    part_b = first.input_ids[first.part_a_length :].tolist()
    assert part_b.count(START) == 4
    assert sorted(t for t in part_b if t != START) == sorted(t for s, e in spans for t in tokens[s:e])
    orders = {tuple(build_with(seed).input_ids.tolist()) for seed in range(12)}
    assert len(orders) > 1


@pytest.mark.parametrize(
    "spans, order, message",
    [
        ([(1, 3), (2, 4)], None, "overlaps"),
        ([(2, 2)], None, "0 <= start < end"),
        ([(5, 9)], None, "0 <= start < end"),
        ([(0, 1), (2, 3)], [0, 0], "permutation"),
    ],
)
def test_bad_spans_are_refused(spans, order, message):
    with pytest.raises(ValueError, match=message):
        blank_infilling(X, spans, mask_token_id=MASK, start_token_id=START, end_token_id=END, order=order)


# ---------------------------------------------------------------------------------------------------
# The GLM-10B-style model against a naive oracle
# ---------------------------------------------------------------------------------------------------


def naive_glm(state, config, tokens, positions, blocks, part_a: int):
    """GLM (pre-LN GPT stack, 2-D learned positions, prefix mask) on one unpadded example, float64."""
    s = {name: tensor.double() for name, tensor in state.items()}
    heads, d = config.n_heads, config.hidden_size
    head_dim, eps, length = d // heads, config.norm_eps, len(tokens)

    def layer_norm(x, name):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * s[name + ".weight"] + s[name + ".bias"]

    def linear(x, name):
        return x @ s[name + ".weight"].T + s[name + ".bias"]

    allowed = torch.zeros(length, length, dtype=torch.bool)
    for q in range(length):
        for k in range(length):
            allowed[q, k] = k < part_a or k <= q

    h = (
        s["embeddings.embed_tokens.weight"][tokens]
        + s["embeddings.embed_positions.weight"][positions]
        + s["embeddings.embed_block_positions.weight"][blocks]
    )
    for i in range(config.n_layers):
        p = f"layers.{i}."
        n = layer_norm(h, p + "self_attn_norm")
        q_all, k_all, v_all = (linear(n, p + f"self_attn.{x}_proj") for x in "qkv")
        outputs = []
        for head in range(heads):
            cols = slice(head * head_dim, (head + 1) * head_dim)
            scores = q_all[:, cols] @ k_all[:, cols].T / math.sqrt(head_dim)
            outputs.append(torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v_all[:, cols])
        h = h + linear(torch.cat(outputs, dim=-1), p + "self_attn.o_proj")
        m = linear(layer_norm(h, p + "ffn_norm"), p + "ffn.up_proj")
        gelu = 0.5 * m * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (m + 0.044715 * m**3)))
        h = h + linear(gelu, p + "ffn.down_proj")
    return layer_norm(h, "norm") @ s["embeddings.embed_tokens.weight"].T


def infilling_batch():
    """Two examples of different lengths, right-padded: inputs, mask, positions, blocks, Part A lengths."""
    generator = torch.Generator().manual_seed(5)
    examples = [
        figure_2_example(),
        blank_infilling(
            torch.randint(1, 200, (11,), generator=generator).tolist(), [(1, 3), (5, 6), (8, 11)],
            mask_token_id=MASK, start_token_id=START, end_token_id=END, generator=generator,
        ),
    ]
    width = max(e.input_ids.numel() for e in examples)
    batch = torch.zeros(4, len(examples), width, dtype=torch.long)
    for row, example in enumerate(examples):
        n = example.input_ids.numel()
        batch[0, row, :n] = example.input_ids
        batch[1, row, :n] = 1
        batch[2, row, :n] = example.position_ids
        batch[3, row, :n] = example.block_position_ids
    ids, mask, positions, blocks = batch
    return examples, ids, mask, positions, blocks, torch.tensor([e.part_a_length for e in examples])


def oracle_logits(model, examples, width):
    state = model.state_dict()
    expected = torch.zeros(len(examples), width, model.config.vocab_size, dtype=torch.float64)
    for row, e in enumerate(examples):
        n = e.input_ids.numel()
        expected[row, :n] = naive_glm(
            state, model.config, e.input_ids.tolist(), e.position_ids.tolist(), e.block_position_ids.tolist(), e.part_a_length
        )
    return expected


def test_glm_infilling_model_matches_the_naive_oracle():
    model = randomize_(build("tiny-glm-infilling")).eval()
    examples, ids, mask, positions, blocks, part_a = infilling_batch()
    with torch.no_grad():
        actual = model(ids, mask, positions, block_position_ids=blocks, prefix_lengths=part_a)
    assert_parity("glm (blank infilling, 2-D learned)", ORACLE, actual, oracle_logits(model, examples, ids.shape[1]), mask)


def test_a_causal_mask_or_missing_block_positions_are_caught():
    model = randomize_(build("tiny-glm-infilling")).eval()
    examples, ids, mask, positions, blocks, part_a = infilling_batch()
    expected = oracle_logits(model, examples, ids.shape[1]).float()
    with torch.no_grad():
        causal = model(ids, mask, positions, block_position_ids=blocks)
        no_blocks = model(ids, mask, positions, prefix_lengths=part_a)
    assert relative_error(causal, expected, mask) > 1e-2
    assert relative_error(no_blocks, expected, mask) > 1e-2


def test_infilling_targets_give_a_loss_on_part_b_only():
    model = randomize_(build("tiny-glm-infilling")).eval()
    e = figure_2_example()
    logits = model(e.input_ids[None], position_ids=e.position_ids[None], block_position_ids=e.block_position_ids[None], prefix_lengths=e.part_a_length)
    loss = torch.nn.functional.cross_entropy(logits[0], e.targets, ignore_index=-100)
    by_hand = -torch.log_softmax(logits[0, 5:], dim=-1).gather(1, e.targets[5:, None]).mean()
    assert torch.allclose(loss, by_hand)
