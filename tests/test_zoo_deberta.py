"""DeBERTa-v2/v3 against transformers' DebertaV2ForMaskedLM, and its attention against two oracles.

The disentangled attention is tested alone first: its log buckets against transformers'
``make_log_bucket_position``, the module against transformers' ``DisentangledSelfAttention``, and
both against a naive per-(query, key, head) loop written from the formula in the module docstring
(independent of either implementation's gathers and transpositions). Then whole models (legacy and
``lm_predictions`` heads, the nGiE convolution, one position term only) are compared with padding,
with the std-0.2 weights and sequences long enough (up to 30 tokens, 16 buckets) to reach the
logarithmic buckets. Deliberate bugs - no p2c term, the paper's sign for the p2c index - are caught.
"""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf_deberta  # noqa: E402

from llmcore.models import PRESETS, DisentangledMaskedLM, build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.models.config import ModelConfig  # noqa: E402
from llmcore.models.disentangled_attention import DisentangledSelfAttention, log_bucket_positions, relative_position_buckets  # noqa: E402
from llmcore.models.hub import architecture_for, from_hf_state_dict  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_  # noqa: E402

ORACLE = "transformers DebertaV2ForMaskedLM (eager)"
BUCKETS, MAX_DISTANCE = 16, 64
LENGTHS = (30, 19, 24)


def hf_config(**overrides):
    fields = dict(
        vocab_size=101, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=72,
        max_position_embeddings=MAX_DISTANCE, relative_attention=True, pos_att_type=["p2c", "c2p"],
        position_buckets=BUCKETS, norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return transformers.DebertaV2Config(**{**fields, **overrides})


def tiny_hf(**overrides):
    torch.manual_seed(0)
    model = transformers.DebertaV2ForMaskedLM(hf_config(**overrides)).eval()
    return randomize_(model)


def hf_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


# --------------------------------------------------------------------------------------------------
# The attention alone
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("buckets, max_distance", [(16, 64), (256, 512), (4, 9)])
def test_log_buckets_match_transformers(buckets, max_distance):
    relative = torch.arange(-3 * max_distance, 3 * max_distance + 1)
    expected = hf_deberta.make_log_bucket_position(relative, buckets, max_distance).long()
    assert torch.equal(log_bucket_positions(relative, buckets, max_distance), expected)
    assert torch.equal(log_bucket_positions(-relative, buckets, max_distance), -expected)  # odd: p2c relies on it
    mid = buckets // 2
    assert torch.equal(expected[(relative.abs() <= mid)], relative[relative.abs() <= mid])  # exact near the query
    assert int(expected[relative == max_distance - 1]) == buckets - 1


def test_relative_positions_match_transformers():
    x = torch.zeros(1, 40, 8)
    expected = hf_deberta.build_relative_position(x, x, bucket_size=BUCKETS, max_position=MAX_DISTANCE)[0]
    assert torch.equal(relative_position_buckets(40, BUCKETS, MAX_DISTANCE), expected)


def naive_disentangled(x, attention, relative_table, mask, *, paper_p2c_sign=False):
    """softmax_k((Q_q·K_k + Q_q·K^r_δ(q,k) + K_k·Q^r_δ'(q,k)) / √(3D)) · V, one (b, h, q, k) at a time.

    ``δ(q,k) = clamp(span + bucket(q − k))`` for c2p and, as the released models compute it, for p2c
    too; ``paper_p2c_sign`` uses ``clamp(span + bucket(k − q))`` for p2c instead (the paper's δ(k,q)).
    """
    batch, length, _ = x.shape
    heads, dim = attention.n_heads, attention.head_dim
    span = relative_table.shape[0] // 2
    q = attention.q_proj(x).view(batch, length, heads, dim)
    k = attention.k_proj(x).view(batch, length, heads, dim)
    v = attention.v_proj(x).view(batch, length, heads, dim)
    key_positions = attention.k_proj(relative_table).view(2 * span, heads, dim)
    query_positions = attention.q_proj(relative_table).view(2 * span, heads, dim)

    def index(r: int) -> int:
        bucket = int(log_bucket_positions(torch.tensor(r), BUCKETS, MAX_DISTANCE))
        return min(max(span + bucket, 0), 2 * span - 1)

    out = torch.zeros(batch, length, heads, dim)
    for b in range(batch):
        for h in range(heads):
            for i in range(length):
                scores = torch.full((length,), float("-inf"))
                for j in range(length):
                    if not mask[b, j]:
                        continue
                    p2c_index = index(j - i) if paper_p2c_sign else index(i - j)
                    scores[j] = (
                        q[b, i, h] @ k[b, j, h]
                        + q[b, i, h] @ key_positions[index(i - j), h]
                        + k[b, j, h] @ query_positions[p2c_index, h]
                    ) / math.sqrt(3 * dim)
                out[b, i, h] = torch.softmax(scores, dim=0) @ v[b, :, h]
    return attention.o_proj(out.reshape(batch, length, heads * dim))


def attention_pair(terms):
    config = hf_config(pos_att_type=list(terms), hidden_size=32)
    reference = hf_deberta.DisentangledSelfAttention(config).eval()
    ours = DisentangledSelfAttention(
        ModelConfig(vocab_size=8, hidden_size=32, n_layers=1, n_heads=4, intermediate_size=8, max_positions=64,
                    position="disentangled", relative_buckets=BUCKETS, relative_max_distance=MAX_DISTANCE,
                    disentangled_terms=tuple(terms))
    ).eval()
    randomize_(reference, std=0.3)
    with torch.no_grad():
        for mine, theirs in (("q_proj", "query_proj"), ("k_proj", "key_proj"), ("v_proj", "value_proj")):
            getattr(ours, mine).load_state_dict(getattr(reference, theirs).state_dict())
        ours.o_proj.weight.copy_(torch.eye(32))
        ours.o_proj.bias.zero_()
    return reference, ours


@pytest.mark.parametrize("terms", [("c2p", "p2c"), ("c2p",), ("p2c",)], ids="+".join)
def test_attention_alone_matches_transformers(terms):
    reference, ours = attention_pair(terms)
    generator = torch.Generator().manual_seed(1)
    x, table = torch.randn(2, 28, 32, generator=generator), torch.randn(2 * BUCKETS, 32, generator=generator)
    keep = torch.ones(2, 28, dtype=torch.bool)
    keep[1, 20:] = False
    both = keep[:, None, None, :] & keep[:, None, :, None]
    relative = relative_position_buckets(28, BUCKETS, MAX_DISTANCE)
    with torch.no_grad():
        expected = reference(x, both, relative_pos=relative[None], rel_embeddings=table)[0]
        actual = ours(x, keep[:, None, None, :], relative_positions=relative, relative_embeddings=table)
    assert_parity(f"deberta attention ({'+'.join(terms)})", "transformers DisentangledSelfAttention", actual, expected, keep)


def test_attention_matches_the_naive_loop_and_the_paper_sign_is_caught():
    _, ours = attention_pair(("c2p", "p2c"))
    generator = torch.Generator().manual_seed(2)
    x, table = torch.randn(1, 22, 32, generator=generator), torch.randn(2 * BUCKETS, 32, generator=generator)
    keep = torch.ones(1, 22, dtype=torch.bool)
    keep[0, 18:] = False
    relative = relative_position_buckets(22, BUCKETS, MAX_DISTANCE)
    with torch.no_grad():
        actual = ours(x, keep[:, None, None, :], relative_positions=relative, relative_embeddings=table)
        assert_parity("deberta attention (c2p+p2c)", "naive per-element loop", actual,
                      naive_disentangled(x, ours, table, keep), keep)
        wrong = naive_disentangled(x, ours, table, keep, paper_p2c_sign=True)
    assert (wrong - actual)[keep].abs().max() / actual[keep].abs().max() > 1e-2


# --------------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------------


def compare(name, hf_model, *, left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(LENGTHS), left=left)
    ours = from_hf_model(hf_model)
    with torch.no_grad():
        actual = ours(ids, mask)
    return assert_parity(name, ORACLE, actual, hf_logits(hf_model, ids, mask), mask)


@pytest.mark.parametrize(
    "name, overrides, left",
    [
        ("deberta-v2 (legacy head)", {}, False),
        ("deberta-v2 (left padding)", {}, True),
        ("deberta-v2 (lm_predictions head)", dict(legacy=False), False),
        ("deberta-v2 (nGiE conv)", dict(conv_kernel_size=3, conv_act="gelu"), True),
        ("deberta-v2 (c2p only)", dict(pos_att_type=["c2p"]), False),
        ("deberta-v2 (2 segments)", dict(type_vocab_size=2), False),
    ],
)
def test_deberta_logits_match_transformers(name, overrides, left):
    compare(name, tiny_hf(**overrides), left=left)


def test_deberta_without_p2c_is_caught():
    hf = tiny_hf()
    ids, mask = padded_batch(hf.config.vocab_size, list(LENGTHS))
    ours = from_hf_model(hf)
    wrong = DisentangledMaskedLM(ours.config.replace(disentangled_terms=("c2p",))).eval()
    wrong.load_state_dict(ours.state_dict())
    expected = hf_logits(hf, ids, mask)
    with torch.no_grad():
        error = (wrong(ids, mask) - expected)[mask.bool()].abs().max() / expected.abs().max()
    assert error > 1e-2


def test_v3_checkpoint_extras_are_ignored():
    """v3 checkpoints carry the RTD head ``mask_predictions.*`` and v1's unused absolute table."""
    hf = tiny_hf(legacy=False)
    architecture = architecture_for("deberta-v2")
    ours = from_hf_model(hf)
    state = {name: tensor.detach() for name, tensor in hf.state_dict().items()}
    state |= {"mask_predictions.classifier.weight": torch.zeros(1, 48),
              "deberta.embeddings.position_embeddings.weight": torch.zeros(64, 48)}
    converted = from_hf_state_dict(architecture, state, ours.config)
    assert set(converted) == set(ours.state_dict()) - {"head.decoder.weight"}
    with pytest.raises(KeyError, match="deberta.encoder.unknown"):
        from_hf_state_dict(architecture, {**state, "deberta.encoder.unknown": torch.zeros(1)}, ours.config)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(share_att_key=False), "share_att_key"),
        (dict(position_biased_input=True), "position_biased_input"),
        (dict(norm_rel_ebd="none"), "norm_rel_ebd"),
        (dict(position_buckets=-1), "position_buckets"),
        (dict(conv_kernel_size=3, conv_act="tanh"), "conv_act"),
    ],
)
def test_unsupported_configs_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        architecture_for("deberta-v2").config_from_hf(hf_config(**overrides).to_dict())


def test_old_pipe_separated_attention_types_are_read():
    hf = hf_config(conv_kernel_size=3, conv_act="gelu").to_dict()
    config = architecture_for("deberta-v2").config_from_hf({**hf, "pos_att_type": "p2c|c2p"})
    assert set(config.disentangled_terms) == {"c2p", "p2c"} and config.conv_kernel_size == 3


def test_folders_round_trip_both_ways(tmp_path):
    hf = tiny_hf(conv_kernel_size=3, conv_act="gelu")
    ids, mask = padded_batch(hf.config.vocab_size, list(LENGTHS))
    expected = hf_logits(hf, ids, mask)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        assert_parity("deberta-v2 folder", "transformers save_pretrained → from_pretrained", ours(ids, mask), expected, mask)
    save_pretrained(ours, tmp_path / "ours")
    back = transformers.DebertaV2ForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    assert_parity("deberta-v2 save_pretrained", "transformers from_pretrained", hf_logits(back, ids, mask), expected, mask)


def test_deberta_v3_base_counts_match_the_model_card():
    """microsoft/deberta-v3-base: "86M backbone parameters" + "98M parameters in the Embedding layer"."""
    model = build("deberta-v3-base", device="meta")
    total = sum(p.numel() for p in model.parameters())
    table = model.encoder.embeddings.embed_tokens.weight.numel()
    assert table == 98_380_800 and total == 184_551_780
    assert abs(table - 98e6) < 0.5e6 and abs((total - table) - 86e6) < 0.5e6


def test_deberta_v2_xlarge_count_rounds_to_the_model_card():
    """microsoft/deberta-v2-xlarge: "The total parameters are 900M", i.e. 887M to one significant figure."""
    count = sum(p.numel() for p in build("deberta-v2-xlarge", device="meta").parameters())
    assert count == 887_085_156
    assert round(count, -8) == PRESETS["deberta-v2-xlarge"].published_parameters


def test_tiny_deberta_runs():
    model = build("tiny-deberta").eval()
    ids, mask = padded_batch(model.config.vocab_size, [40, 25])
    with torch.no_grad():
        out = model(ids, mask)
    assert out.shape == (2, 40, model.config.vocab_size) and torch.isfinite(out).all()


def test_disentangled_position_needs_the_deberta_encoder():
    from llmcore.models import MaskedLM

    with pytest.raises(ValueError, match="DisentangledEncoder"):
        MaskedLM(PRESETS["tiny-deberta"].config)
