"""The 2017 encoder-decoder end to end: the model against torch.nn.Transformer with copied weights, its
parameter count against the architecture formula, config validation, the loss, greedy decoding, the
learning-rate schedule, the toy task, and a short training run that must learn to reverse strings.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcore import (
    TRANSFORMER_PRESETS,
    Transformer,
    TransformerConfig,
    cross_entropy,
    greedy_decode,
    record_attention,
    transformer_lr,
    transformer_lr_scheduler,
)
from llmcore.data import ToySeq2SeqTask, sequence_accuracy

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]
PAD = 0


def closed_form_sinusoid(n_positions, d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    return torch.tensor(
        [[(math.sin if j % 2 == 0 else math.cos)(pos / 10000 ** ((j - j % 2) / d_model)) for j in range(d_model)]
         for pos in range(n_positions)],
        dtype=torch.float64,
    )


def padded_ids(lengths, width, vocab_size, seed):
    """Rows of random real tokens (ids 1..V-1) followed by PAD."""
    ids = torch.randint(1, vocab_size, (len(lengths), width), generator=torch.Generator().manual_seed(seed))
    return ids.masked_fill(torch.arange(width) >= torch.tensor(lengths)[:, None], PAD)


@pytest.fixture
def one_thread():
    """Matrices of width 64 gain nothing from a second thread, and a busy CPU makes two threads far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(**overrides):
    base = dict(
        src_vocab_size=11, tgt_vocab_size=13, d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=3,
        d_ff=32, dropout=0.0, max_positions=16, pad_id=PAD,
    )
    return TransformerConfig(**{**base, **overrides})


# --------------------------------------------------------------------------------------------------
# The whole model against torch.nn.Transformer
# --------------------------------------------------------------------------------------------------


def copy_attention(theirs, ours):
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.weight.copy_(ours.o_proj.weight)
    theirs.out_proj.bias.copy_(ours.o_proj.bias)


def copy_affine(theirs, ours):
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


def torch_transformer_like(model: Transformer) -> nn.Transformer:
    """nn.Transformer holding llmcore's weights.

    nn.Transformer's default stacks end in a LayerNorm even in post-norm; the paper (and llmcore) has
    none there, so the stacks are built here: final norms only for pre-norm.
    """
    c = model.config
    layer_args = dict(dropout=0.0, activation="relu", batch_first=True, norm_first=c.norm_first, layer_norm_eps=c.norm_eps)
    final_norm = (lambda: nn.LayerNorm(c.d_model, c.norm_eps)) if c.norm_first else (lambda: None)
    oracle = nn.Transformer(
        c.d_model, c.n_heads, c.n_encoder_layers, c.n_decoder_layers, c.d_ff, **layer_args,
        custom_encoder=nn.TransformerEncoder(
            nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, **layer_args), c.n_encoder_layers,
            norm=final_norm(), enable_nested_tensor=False,
        ),
        custom_decoder=nn.TransformerDecoder(
            nn.TransformerDecoderLayer(c.d_model, c.n_heads, c.d_ff, **layer_args), c.n_decoder_layers, norm=final_norm()
        ),
    ).to(model.lm_head.weight.dtype)
    with torch.no_grad():
        for theirs, ours in zip(oracle.encoder.layers, model.encoder_layers, strict=True):
            copy_attention(theirs.self_attn, ours.self_attn)
            copy_affine(theirs.linear1, ours.ffn.up_proj)
            copy_affine(theirs.linear2, ours.ffn.down_proj)
            copy_affine(theirs.norm1, ours.self_attn_norm)
            copy_affine(theirs.norm2, ours.ffn_norm)
        for theirs, ours in zip(oracle.decoder.layers, model.decoder_layers, strict=True):
            copy_attention(theirs.self_attn, ours.self_attn)
            copy_attention(theirs.multihead_attn, ours.cross_attn)
            copy_affine(theirs.linear1, ours.ffn.up_proj)
            copy_affine(theirs.linear2, ours.ffn.down_proj)
            copy_affine(theirs.norm1, ours.self_attn_norm)
            copy_affine(theirs.norm2, ours.cross_attn_norm)
            copy_affine(theirs.norm3, ours.ffn_norm)
        if c.norm_first:
            copy_affine(oracle.encoder.norm, model.encoder_norm)
            copy_affine(oracle.decoder.norm, model.decoder_norm)
    return oracle.train()  # dropout is 0; train mode keeps torch off its fused inference fast path


def oracle_logits(model: Transformer, src, tgt):
    c = model.config
    dtype = model.lm_head.weight.dtype
    oracle = torch_transformer_like(model)
    pe = closed_form_sinusoid(c.max_positions, c.d_model).to(dtype)
    src_x = model.src_embed.weight[src] * math.sqrt(c.d_model) + pe[: src.shape[1]]
    tgt_x = model.tgt_embed.weight[tgt] * math.sqrt(c.d_model) + pe[: tgt.shape[1]]
    t = tgt.shape[1]
    out = oracle(
        src_x, tgt_x,
        tgt_mask=torch.ones(t, t, dtype=torch.bool).triu(1),   # True = masked, as torch expects
        src_key_padding_mask=src == PAD,
        tgt_key_padding_mask=tgt == PAD,
        memory_key_padding_mask=src == PAD,
    )
    return out @ model.lm_head.weight.T


def randomise_norms(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.3 * torch.randn_like(p))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first, share_embeddings", [(False, False), (True, True)])
def test_transformer_matches_torch_transformer_with_padding(dtype, norm_first, share_embeddings):
    vocab = dict(src_vocab_size=13) if share_embeddings else {}
    config = small_config(norm_first=norm_first, share_embeddings=share_embeddings, **vocab)
    torch.manual_seed(0)
    model = Transformer(config).to(dtype).eval()
    randomise_norms(model)
    src = padded_ids([7, 4, 1], 7, config.src_vocab_size, seed=1)
    tgt = padded_ids([5, 5, 2], 5, config.tgt_vocab_size, seed=2)
    logits = model(src, tgt)
    assert logits.shape == (3, 5, config.tgt_vocab_size) and logits.dtype == dtype
    torch.testing.assert_close(logits, oracle_logits(model, src, tgt), **TOLERANCE[dtype])


def test_post_norm_model_has_no_final_norms_and_pre_norm_has_both():
    post, pre = Transformer(small_config()), Transformer(small_config(norm_first=True))
    post_names = {n for n, _ in post.named_parameters()}
    pre_names = {n for n, _ in pre.named_parameters()}
    assert pre_names - post_names == {"encoder_norm.weight", "encoder_norm.bias", "decoder_norm.weight", "decoder_norm.bias"}


def test_output_projection_is_tied_and_embeddings_shared_on_request():
    tied = Transformer(small_config())
    assert tied.lm_head.weight is tied.tgt_embed.weight and tied.src_embed is not tied.tgt_embed
    untied = Transformer(small_config(tie_output=False))
    assert untied.lm_head.weight is not untied.tgt_embed.weight
    shared = Transformer(small_config(src_vocab_size=13, share_embeddings=True))
    assert shared.src_embed is shared.tgt_embed


def test_logits_do_not_depend_on_future_target_tokens():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src = padded_ids([6, 3], 6, 11, seed=3)
    tgt = padded_ids([5, 5], 5, 13, seed=4)
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] % 12) + 1  # different real tokens from position 3 on
    before, after = model(src, tgt), model(src, changed)
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_extra_source_padding_does_not_change_the_logits():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src = padded_ids([4, 2], 4, 11, seed=5)
    tgt = padded_ids([3, 3], 3, 13, seed=6)
    padded_src = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded_src, tgt), atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Parameter count, presets, validation
# --------------------------------------------------------------------------------------------------


def hand_count(src_vocab, tgt_vocab, d, d_ff, n_enc, n_dec, *, shared, tied, norm_first):
    attention = 4 * (d * d + d)                       # W_q, W_k, W_v, W_o with biases
    ffn = (d * d_ff + d_ff) + (d_ff * d + d)
    norm = 2 * d                                      # gain and bias
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm    # self- and cross-attention
    embeddings = src_vocab * d if shared else (src_vocab + tgt_vocab) * d
    output = 0 if tied else tgt_vocab * d             # the pre-softmax projection has no bias
    final_norms = 2 * norm if norm_first else 0
    return embeddings + output + n_enc * encoder_layer + n_dec * decoder_layer + final_norms


def test_base_preset_parameter_count_matches_the_architecture_formula():
    with torch.device("meta"):  # no memory, no initialisation cost
        model = Transformer.from_preset("base")
    expected = hand_count(37000, 37000, 512, 2048, 6, 6, shared=True, tied=True, norm_first=False)
    assert expected == 63_082_496  # 18.9M embedding + 44.1M in the 6 + 6 layers (the paper rounds to 65M)
    assert model.num_parameters() == expected


@pytest.mark.parametrize("preset, overrides, hand", [
    ("big", {}, (37000, 37000, 1024, 4096, 6, 6, True, True, False)),
    ("tiny", {}, (32, 32, 32, 64, 2, 2, False, True, False)),
    ("tiny", dict(norm_first=True, tie_output=False, n_decoder_layers=1), (32, 32, 32, 64, 2, 1, False, False, True)),
])
def test_other_presets_parameter_counts(preset, overrides, hand):
    *sizes, shared, tied, norm_first = hand
    with torch.device("meta"):
        model = Transformer.from_preset(preset, **overrides)
    assert model.num_parameters() == hand_count(*sizes, shared=shared, tied=tied, norm_first=norm_first)


def test_presets_follow_the_paper():
    paper_base = TransformerConfig(**TRANSFORMER_PRESETS["base"])
    assert (paper_base.d_model, paper_base.n_heads, paper_base.d_ff, paper_base.dropout) == (512, 8, 2048, 0.1)
    assert (paper_base.n_encoder_layers, paper_base.n_decoder_layers, paper_base.norm_first) == (6, 6, False)
    paper_big = TransformerConfig(**TRANSFORMER_PRESETS["big"])
    assert (paper_big.d_model, paper_big.n_heads, paper_big.d_ff, paper_big.dropout) == (1024, 16, 4096, 0.3)


def test_preset_overrides_and_unknown_preset():
    assert Transformer.from_preset("tiny", d_model=16, n_heads=2).config.d_model == 16
    with pytest.raises(ValueError, match="'huge'"):
        Transformer.from_preset("huge")


@pytest.mark.parametrize("overrides, field", [
    (dict(src_vocab_size=0), "src_vocab_size"),
    (dict(tgt_vocab_size=-1), "tgt_vocab_size"),
    (dict(d_model=0), "d_model"),
    (dict(n_heads=0), "n_heads"),
    (dict(d_ff=0), "d_ff"),
    (dict(max_positions=0), "max_positions"),
    (dict(n_encoder_layers=-1), "n_encoder_layers"),
    (dict(n_decoder_layers=-1), "n_decoder_layers"),
    (dict(n_heads=3), "n_heads"),                     # does not divide d_model=16
    (dict(d_model=9, n_heads=3), "d_model"),          # heads divide it, but the sinusoid needs an even width
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(share_embeddings=True), "share_embeddings"),  # 11 != 13
    (dict(pad_id=11), "pad_id"),
    (dict(pad_id=-1), "pad_id"),
])
def test_config_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"TransformerConfig\.{field}\b"):
        small_config(**overrides)


def test_zero_layers_are_allowed():
    model = Transformer(small_config(n_encoder_layers=0, n_decoder_layers=0))
    assert model(torch.tensor([[3, 4]]), torch.tensor([[1]])).shape == (1, 1, 13)


def test_forward_rejects_bad_ids_and_too_long_sequences():
    model = Transformer(small_config())
    with pytest.raises(ValueError, match="src_ids"):
        model(torch.zeros(1, 3), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="tgt_ids"):
        model(torch.ones(1, 3, dtype=torch.long), torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.ones(1, 17, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))


# --------------------------------------------------------------------------------------------------
# record_attention on the whole model
# --------------------------------------------------------------------------------------------------


def test_record_attention_returns_every_map_with_its_shape():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src = padded_ids([6, 4], 6, 11, seed=7)
    tgt = padded_ids([3, 3], 3, 13, seed=8)
    with torch.no_grad(), record_attention(model) as maps:
        model(src, tgt)
    expected_shapes = {f"encoder_layers.{i}.self_attn": (2, 4, 6, 6) for i in range(2)}
    expected_shapes.update({f"decoder_layers.{i}.self_attn": (2, 4, 3, 3) for i in range(3)})
    expected_shapes.update({f"decoder_layers.{i}.cross_attn": (2, 4, 3, 6) for i in range(3)})
    assert {name: [w.shape for w in ws] for name, ws in maps.items()} == {k: [v] for k, v in expected_shapes.items()}
    for name, (weights,) in maps.items():
        real_keys = (tgt if name.endswith(".self_attn") and name.startswith("decoder") else src) != PAD
        assert (weights[~real_keys[:, None, None, :].expand_as(weights)] == 0).all(), name
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert (maps["decoder_layers.0.self_attn"][0].triu(1) == 0).all()  # causal


# --------------------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------------------


def test_cross_entropy_hand_computed_vocab_of_three():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]], dtype=torch.float64)
    targets = torch.tensor([2, 0, -100])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))          # 3.40760596...
    log_p = [1 - lse, 2 - lse, 3 - lse]
    row_0 = 0.9 * -log_p[2] + 0.1 * -(sum(log_p) / 3)                 # 0.9·0.4076 + 0.1·1.4076
    row_1 = math.log(3)                                               # uniform: nll = smooth = log 3
    expected = (row_0 + row_1) / 2                                    # the ignored row counts for nothing
    assert row_0 == pytest.approx(0.5076059644, abs=1e-9)
    assert cross_entropy(logits, targets, label_smoothing=0.1).item() == pytest.approx(expected, abs=1e-12)
    assert cross_entropy(logits[:1], targets[:1]).item() == pytest.approx(lse - 3, abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_cross_entropy_matches_torch_on_sequences(dtype, label_smoothing, ignore_index):
    logits = 2 * torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    targets = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(1))
    targets[0, 3:] = ignore_index
    targets[2, 0] = ignore_index
    expected = F.cross_entropy(
        logits.transpose(1, 2), targets, label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    actual = cross_entropy(logits, targets, label_smoothing=label_smoothing, ignore_index=ignore_index)
    torch.testing.assert_close(actual, expected, **TOLERANCE[dtype])


def test_cross_entropy_gradient_matches_torch():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 4, -100, 2, 2, -100])
    ours = torch.autograd.grad(cross_entropy(logits, targets, label_smoothing=0.2), logits)[0]
    theirs = torch.autograd.grad(F.cross_entropy(logits, targets, label_smoothing=0.2), logits)[0]
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-10)


def test_cross_entropy_half_precision_is_computed_in_float32():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    targets = torch.tensor([1, 2, 3, 8])
    loss = cross_entropy(logits, targets, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), targets, label_smoothing=0.1))


def test_cross_entropy_of_an_all_ignored_batch_is_zero():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = cross_entropy(logits, torch.full((2, 3), PAD), ignore_index=PAD, label_smoothing=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(2, 3, 4))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="disagree"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="disagree"):
        cross_entropy(torch.zeros(6, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), label_smoothing=1.5)


# --------------------------------------------------------------------------------------------------
# Greedy decoding
# --------------------------------------------------------------------------------------------------

BOS, EOS, DPAD, VOCAB = 1, 2, 0, 8


class ScriptedModel:
    """Emits script[row][t] at step t (logit 1 on that id, 0 elsewhere), and records what it was given."""

    def __init__(self, script, ties=None):
        self.script = script
        self.ties = ties or {}
        self.decoder_inputs = []
        self.encode_calls = 0

    def encode(self, src_ids):
        self.encode_calls += 1
        return src_ids.float().unsqueeze(-1)

    def decode(self, tgt_ids, memory, src_ids):
        self.decoder_inputs.append(tgt_ids.clone())
        batch, length = tgt_ids.shape
        logits = torch.zeros(batch, length, VOCAB)
        for row in range(batch):
            for token in self.ties.get((row, length - 1), [self.script[row][length - 1]]):
                logits[row, -1, token] = 1.0
        return logits


def decode(model, batch=2, max_new_tokens=6):
    src = torch.full((batch, 3), 5)
    return greedy_decode(model, src, bos_id=BOS, eos_id=EOS, pad_id=DPAD, max_new_tokens=max_new_tokens)


def test_greedy_decode_writes_pad_after_eos_until_every_row_ends():
    model = ScriptedModel([[5, EOS, 6, 7, 3, 3], [4, 4, 3, EOS, 5, 5]])
    out = decode(model)
    assert out.tolist() == [[5, EOS, DPAD, DPAD], [4, 4, 3, EOS]]
    assert model.encode_calls == 1
    assert len(model.decoder_inputs) == 4  # stopped early, not after max_new_tokens = 6


def test_greedy_decode_feeds_back_its_own_tokens_after_bos():
    model = ScriptedModel([[5, EOS, 6, 7], [4, 3, 3, EOS]])
    decode(model)
    assert [t.tolist() for t in model.decoder_inputs] == [
        [[BOS], [BOS]],
        [[BOS, 5], [BOS, 4]],
        [[BOS, 5, EOS], [BOS, 4, 3]],
        [[BOS, 5, EOS, DPAD], [BOS, 4, 3, 3]],
    ]


def test_greedy_decode_without_eos_runs_to_max_new_tokens():
    model = ScriptedModel([[3, 4, 5, 6, 7, 3, 4], [7, 7, 7, 7, 7, 7, 7]])
    out = decode(model, max_new_tokens=5)
    assert out.tolist() == [[3, 4, 5, 6, 7], [7, 7, 7, 7, 7]]


def test_greedy_decode_single_step_eos_in_every_row():
    out = decode(ScriptedModel([[EOS] * 4, [EOS] * 4]))
    assert out.tolist() == [[EOS], [EOS]]


def test_greedy_decode_ties_go_to_the_lowest_id():
    model = ScriptedModel([[3, 3, 3], [3, 3, 3]], ties={(0, 0): [6, 4], (1, 1): [7, 5, EOS]})
    assert decode(model, max_new_tokens=3).tolist() == [[4, 3, 3], [3, EOS, DPAD]]


def test_greedy_decode_zero_and_negative_budgets():
    assert decode(ScriptedModel([[3], [3]]), max_new_tokens=0).shape == (2, 0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(ScriptedModel([[3], [3]]), max_new_tokens=-1)


def manual_greedy(model, src, eos_id, max_new_tokens):
    """Full forward passes, one argmax per row per step, EOS bookkeeping in plain Python."""
    rows = [[BOS] for _ in range(src.shape[0])]
    done = [False] * src.shape[0]
    for _ in range(max_new_tokens):
        logits = model(src, torch.tensor(rows))[:, -1]
        for r, row in enumerate(rows):
            token = DPAD if done[r] else max(range(logits.shape[1]), key=lambda v: (logits[r, v].item(), -v))
            row.append(token)
            done[r] = done[r] or token == eos_id
        if all(done):
            break
    return torch.tensor([row[1:] for row in rows])


def test_greedy_decode_matches_a_manual_argmax_loop_on_a_random_model(one_thread):
    torch.manual_seed(0)
    # An untied output layer: a tied random model just echoes its input token.
    model = Transformer(small_config(src_vocab_size=13, tgt_vocab_size=13, tie_output=False, pad_id=DPAD)).eval()
    src = padded_ids([6, 3, 5, 2], 6, 13, seed=9)
    with torch.no_grad():
        free_run = manual_greedy(model, src, eos_id=-1, max_new_tokens=8)
        # Make EOS the token that row 0 emits at step 3, so EOS handling is exercised for real.
        eos_id = int(free_run[0, 2])
        expected = manual_greedy(model, src, eos_id=eos_id, max_new_tokens=8)
    # The scenario must be meaningful: some row ended early and was padded, some row ran to the budget.
    assert expected.shape == (4, 8) and (expected == DPAD).any() and (expected == eos_id).any(dim=1).sum() < 4
    actual = greedy_decode(model, src, bos_id=BOS, eos_id=eos_id, pad_id=DPAD, max_new_tokens=8)
    assert torch.equal(actual, expected)


# --------------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------------


def closed_form_lr(step, d_model, warmup):
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def test_transformer_lr_key_values():
    d_model, warmup = 512, 4000
    assert transformer_lr(warmup, d_model, warmup) == pytest.approx((d_model * warmup) ** -0.5, rel=1e-12)
    assert transformer_lr(warmup, d_model, warmup) == pytest.approx(6.9877e-4, rel=1e-4)
    assert transformer_lr(1, d_model, warmup) == pytest.approx(512**-0.5 * 4000**-1.5, rel=1e-12)
    peak = transformer_lr(warmup, d_model, warmup)
    assert transformer_lr(warmup // 2, d_model, warmup) == pytest.approx(peak / 2, rel=1e-12)  # linear warm-up
    assert transformer_lr(4 * warmup, d_model, warmup) == pytest.approx(peak / 2, rel=1e-12)   # 1/√step decay
    assert transformer_lr(100, 64, 10, factor=2.0) == pytest.approx(2 * 64**-0.5 * 100**-0.5, rel=1e-12)


@pytest.mark.parametrize("step", [1, 7, 199, 200, 201, 1000, 123456])
def test_transformer_lr_matches_closed_form(step):
    assert transformer_lr(step, 64, 200) == pytest.approx(closed_form_lr(step, 64, 200), rel=1e-12)


def test_transformer_lr_rises_then_decays():
    values = [transformer_lr(s, 128, 50) for s in range(1, 300)]
    peak_index = values.index(max(values))
    assert peak_index + 1 == 50
    assert all(a < b for a, b in zip(values[:peak_index], values[1 : peak_index + 1]))
    assert all(a > b for a, b in zip(values[peak_index:], values[peak_index + 1 :]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(step=0), "step"), (dict(step=-3), "step"), (dict(step=1, warmup_steps=0), "warmup_steps"),
])
def test_transformer_lr_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transformer_lr(d_model=64, **kwargs)


def test_scheduler_is_offset_by_one():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = transformer_lr_scheduler(optimizer, d_model=16, warmup_steps=4, factor=3.0)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([3.0 * closed_form_lr(s, 16, 4) for s in range(1, 9)], rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Toy task
# --------------------------------------------------------------------------------------------------


def test_toy_encode_and_decode():
    task = ToySeq2SeqTask(n_symbols=10)
    assert task.encode("abc").tolist() == [[3, 4, 5, 2]]
    assert task.encode("").tolist() == [[2]]
    assert task.decode([3, 4, 5, 2, 7]) == "abc"
    assert task.decode(torch.tensor([1, 3, 0, 12, 2, 4])) == "aj"
    for text in ["a", "jihgfedcba", "aaab"]:
        assert task.decode(task.encode(text)[0]) == text
    with pytest.raises(ValueError, match="'k'"):
        task.encode("abk")


def test_toy_vocabulary_sizes():
    task = ToySeq2SeqTask(n_symbols=26, max_length=7)
    assert (task.vocab_size, task.max_target_length) == (29, 9)
    assert (task.PAD, task.BOS, task.EOS) == (0, 1, 2)


TRANSFORMS = {"copy": lambda s: s, "reverse": lambda s: s[::-1], "sort": sorted}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_toy_samples_pair_sources_with_transformed_targets(transform):
    task = ToySeq2SeqTask(transform, n_symbols=5, min_length=2, max_length=6)
    src, tgt = task.sample(64, torch.Generator().manual_seed(0))
    assert src.shape[0] == tgt.shape[0] == 64
    assert src.shape[1] <= 7 and tgt.shape[1] <= 8
    lengths = set()
    for src_row, tgt_row in zip(src.tolist(), tgt.tolist()):
        n = src_row.index(task.EOS)
        letters = src_row[:n]
        lengths.add(n)
        assert all(3 <= t < 8 for t in letters)
        assert src_row[n + 1 :] == [task.PAD] * (len(src_row) - n - 1)
        expected = [task.BOS] + list(TRANSFORMS[transform](letters)) + [task.EOS]
        assert tgt_row == expected + [task.PAD] * (len(tgt_row) - len(expected))
    assert lengths <= set(range(2, 7)) and len(lengths) > 1
    assert src.shape[1] == max(lengths) + 1 and tgt.shape[1] == max(lengths) + 2


def test_toy_sampling_is_reproducible_with_a_generator():
    task = ToySeq2SeqTask()
    first = task.sample(8, torch.Generator().manual_seed(5))
    second = task.sample(8, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("kwargs, field", [
    (dict(transform="rotate"), "transform"),
    (dict(n_symbols=0), "n_symbols"),
    (dict(n_symbols=27), "n_symbols"),
    (dict(min_length=0), "min_length"),
    (dict(min_length=5, max_length=4), "min_length"),
])
def test_toy_task_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ToySeq2SeqTask(**kwargs)


def test_sequence_accuracy_hand_cases():
    target = torch.tensor([[5, 2, 0], [6, 7, 2], [3, 2, 0]])
    # Row 0: right up to EOS (what follows is ignored); row 1: one wrong token; row 2: right.
    assert sequence_accuracy(torch.tensor([[5, 2, 9], [6, 8, 2], [3, 2, 0]]), target, eos_id=2) == pytest.approx(2 / 3)
    # A prediction that stops before EOS, or emits something else where EOS belongs, is wrong.
    assert sequence_accuracy(torch.tensor([[5]]), torch.tensor([[5, 2]]), eos_id=2) == 0.0
    assert sequence_accuracy(torch.tensor([[5, 3, 2]]), torch.tensor([[5, 2]]), eos_id=2) == 0.0
    assert sequence_accuracy(torch.tensor([[5, 2]]), torch.tensor([[5, 2]]), eos_id=2) == 1.0
    assert sequence_accuracy(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long), eos_id=2) == 0.0


# --------------------------------------------------------------------------------------------------
# Training smoke test
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_small_transformer_learns_to_reverse_strings(one_thread):
    torch.manual_seed(0)
    task = ToySeq2SeqTask("reverse")
    config = TransformerConfig(
        src_vocab_size=task.vocab_size, tgt_vocab_size=task.vocab_size, d_model=64, n_heads=4,
        n_encoder_layers=2, n_decoder_layers=2, d_ff=256, dropout=0.0, max_positions=32, pad_id=task.PAD,
    )
    model = Transformer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    scheduler = transformer_lr_scheduler(optimizer, config.d_model, warmup_steps=200)
    generator = torch.Generator().manual_seed(1)
    for _ in range(800):
        src, tgt = task.sample(64, generator)
        loss = cross_entropy(model(src, tgt[:, :-1]), tgt[:, 1:], label_smoothing=0.1, ignore_index=task.PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    src, tgt = task.sample(500, torch.Generator().manual_seed(123))
    predicted = greedy_decode(
        model, src, bos_id=task.BOS, eos_id=task.EOS, pad_id=task.PAD, max_new_tokens=task.max_length + 1
    )
    accuracy = sequence_accuracy(predicted, tgt[:, 1:], task.EOS)
    assert accuracy >= 0.9, f"exact-match accuracy {accuracy:.3f} after 800 steps"
    assert task.decode(greedy_decode(
        model, task.encode("abcdefg"), bos_id=task.BOS, eos_id=task.EOS, pad_id=task.PAD, max_new_tokens=9
    )[0]) == "gfedcba"
