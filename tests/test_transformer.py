"""The 2017 encoder-decoder Transformer end to end: the model against torch.nn.Transformer with copied weights,
its parameter count against the architecture formula, the presets against the paper, config validation,
record_attention on the whole model, and a short training run that must learn to reverse strings.
"""
import math

import pytest
import torch
from torch import nn

from llmcore import (
    TRANSFORMER_PRESETS,
    Transformer,
    TransformerConfig,
    cross_entropy,
    greedy_decode,
    record_attention,
    transformer_lr_scheduler,
)
from llmcore.data import ToySeq2SeqTask, sequence_accuracy
from seq2seq_helpers import PAD, padded_ids, small_config

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def closed_form_sinusoid(n_positions, d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    return torch.tensor(
        [[(math.sin if j % 2 == 0 else math.cos)(pos / 10000 ** ((j - j % 2) / d_model)) for j in range(d_model)]
         for pos in range(n_positions)],
        dtype=torch.float64,
    )


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
