"""Encoder–decoder models (Seq2SeqLM): T5 and BART against transformers, the 2017 model against chapter 1.

Oracles: transformers ``T5ForConditionalGeneration`` and ``BartForConditionalGeneration`` (eager
attention, random weights, padding in source and target); for the 2017 Transformer, which
transformers has no class for, chapter 1's ``llmcore.Transformer`` with copied weights - itself
tested against ``torch.nn.Transformer`` (tests/test_transformer.py) - an equivalence proof.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from llmcore import Transformer  # noqa: E402
from llmcore.models import ModelConfig, Seq2SeqLM, build, from_hf_model, from_pretrained, preset_config, save_pretrained  # noqa: E402
from llmcore.models.families.t5 import t5_config  # noqa: E402
from llmcore.models.families.transformer2017 import config_from_transformer, from_transformer  # noqa: E402
from llmcore.models.hub import architecture_for, from_hf_state_dict  # noqa: E402
from llmcore.transformer import TRANSFORMER_PRESETS, TransformerConfig  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_, relative_error  # noqa: E402

T5_ORACLE = "transformers T5ForConditionalGeneration (eager)"
BART_ORACLE = "transformers BartForConditionalGeneration (eager)"
CHAPTER1_ORACLE = "llmcore.Transformer (chapter 1)"
VOCAB = 96
SOURCE_LENGTHS, TARGET_LENGTHS = [20, 13, 17], [15, 9, 12]


def batch(vocab: int = VOCAB):
    src, src_mask = padded_batch(vocab, SOURCE_LENGTHS, seed=1)
    tgt, tgt_mask = padded_batch(vocab, TARGET_LENGTHS, seed=2)
    return src, src_mask, tgt, tgt_mask


def hf_logits(hf, src, src_mask, tgt, tgt_mask):
    with torch.no_grad():
        return hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask).logits


def compare(name, oracle, hf):
    src, src_mask, tgt, tgt_mask = batch(hf.config.vocab_size)
    ours = from_hf_model(hf)
    with torch.no_grad():
        actual = ours(src, src_mask, tgt, tgt_mask)
    assert_parity(name, oracle, actual, hf_logits(hf, src, src_mask, tgt, tgt_mask), tgt_mask)
    return ours


# ---------------------------------------------------------------------------------------------- T5


def tiny_hf_t5(*, untied_head: bool = False, **overrides):
    """A random T5. ``untied_head`` gives the head its own matrix, as v1.1/FLAN-T5 checkpoints have.

    transformers 5 ties the head to the embeddings in memory whatever the config says (the
    checkpoint loader unties it when the file holds a different ``lm_head.weight``), so the untied
    case is built by hand. T5 folds 1/√d_kv into W_q's initialisation instead of scaling scores; we
    fold it into the std-0.2 draw the same way, else the unscaled scores saturate every softmax and
    float32 rounding alone reaches 1e-5.
    """
    fields = dict(
        vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=80, num_layers=2, num_heads=4, dropout_rate=0.0,
        relative_attention_num_buckets=8, relative_attention_max_distance=12,
    )
    fields.update(overrides)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**fields)).eval()
    model.config._attn_implementation = "eager"
    if untied_head:
        model.lm_head.weight = nn.Parameter(model.shared.weight.detach().clone())
    randomize_(model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("SelfAttention.q.weight", "EncDecAttention.q.weight")):
                parameter.mul_(fields["d_kv"] ** -0.5)
    return model


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("t5 v1.0 (relu, tied)", dict()),
        ("t5 (relu, untied)", dict(tie_word_embeddings=False, untied_head=True)),
        ("t5 (gated-gelu, tied)", dict(feed_forward_proj="gated-gelu")),
        ("t5 v1.1 (gated-gelu, untied)", dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, untied_head=True)),
        ("t5 (3 decoder layers, d_kv≠d/H)", dict(num_decoder_layers=3, d_kv=24)),
        ("t5 (32 buckets, max 128)", dict(relative_attention_num_buckets=32, relative_attention_max_distance=128)),
    ],
)
def test_t5_logits_match_transformers(name, overrides):
    ours = compare(name, T5_ORACLE, tiny_hf_t5(**overrides))
    untied = overrides.get("untied_head", False)
    assert ours.config.tie_word_embeddings is not untied
    assert (ours.config.lm_head_scale is None) is untied


def test_t5_encoder_output_matches_transformers():
    hf = tiny_hf_t5()
    src, src_mask, _, _ = batch()
    with torch.no_grad():
        expected = hf.encoder(input_ids=src, attention_mask=src_mask).last_hidden_state
        actual = from_hf_model(hf).encode(src, src_mask)
    assert_parity("t5 encoder output", T5_ORACLE, actual, expected, src_mask)


def test_t5_with_the_usual_score_scale_is_caught():
    """The deliberate bug: 1/√d_kv on the scores, which T5 does not apply."""
    hf = tiny_hf_t5()
    ours = from_hf_model(hf)
    wrong = Seq2SeqLM(ours.config.replace(attention_scale=None))
    wrong.load_state_dict(ours.state_dict())
    src, src_mask, tgt, tgt_mask = batch()
    with torch.no_grad():
        error = relative_error(wrong.eval()(src, src_mask, tgt, tgt_mask), hf_logits(hf, src, src_mask, tgt, tgt_mask), tgt_mask)
    assert error > 1e-1


def test_t5_decoder_with_encoder_buckets_is_caught():
    """Bidirectional buckets in the causal decoder move every past offset into a different bucket."""
    hf = tiny_hf_t5()
    ours = from_hf_model(hf)
    ours.decoder_positions.bidirectional = True
    src, src_mask, tgt, tgt_mask = batch()
    with torch.no_grad():
        error = relative_error(ours(src, src_mask, tgt, tgt_mask), hf_logits(hf, src, src_mask, tgt, tgt_mask), tgt_mask)
    assert error > 1e-2


@pytest.mark.parametrize("untied", [False, True], ids=["v1.0", "v1.1"])
def test_t5_folder_round_trip_with_transformers(tmp_path, untied):
    hf = tiny_hf_t5(feed_forward_proj="gated-gelu" if untied else "relu", tie_word_embeddings=not untied, untied_head=untied)
    ours = from_hf_model(hf)
    src, src_mask, tgt, tgt_mask = batch()
    expected = hf_logits(hf, src, src_mask, tgt, tgt_mask)
    save_pretrained(ours, tmp_path / "ours")
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert_parity("t5 (saved by llmcore)", T5_ORACLE, hf_logits(reloaded, src, src_mask, tgt, tgt_mask), expected, tgt_mask)
    hf.save_pretrained(tmp_path / "hf")
    with torch.no_grad():
        loaded = from_pretrained(tmp_path / "hf")(src, src_mask, tgt, tgt_mask)
    assert_parity("t5 (loaded by llmcore)", T5_ORACLE, loaded, expected, tgt_mask)


def test_t5_config_translation():
    for proj, ffn, activation in (("relu", "mlp", "relu"), ("gated-gelu", "gated", "gelu_tanh"), ("gated-silu", "gated", "silu")):
        config = architecture_for("t5").config_from_hf(transformers.T5Config(feed_forward_proj=proj).to_dict())
        assert (config.ffn, config.activation) == (ffn, activation)
    # A 4.x-era FLAN-T5 config.json: tie_word_embeddings false means "untied head, no output scaling".
    flan = architecture_for("t5").config_from_hf(dict(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    ))
    assert not flan.tie_word_embeddings and flan.lm_head_scale is None
    with pytest.raises(ValueError, match="feed_forward_proj='gelu-relu'"):
        architecture_for("t5").config_from_hf(dict(transformers.T5Config().to_dict(), feed_forward_proj="gelu-relu"))
    with pytest.raises(ValueError, match="tie_word_embeddings=True with lm_head_scale=None"):
        architecture_for("t5").config_to_hf(preset_config("tiny-t5", lm_head_scale=None))
    with pytest.raises(ValueError, match="ModelConfig.block='post'"):
        architecture_for("t5").config_to_hf(preset_config("tiny-t5", block="post"))


def test_t5_output_scale_is_configuration():
    """v1.0's d^-0.5 before the tied head is ModelConfig.lm_head_scale: logits scale by exactly that."""
    config = preset_config("tiny-t5")
    assert config.lm_head_scale == 64**-0.5 and config.tie_word_embeddings
    assert t5_config(vocab_size=8, hidden_size=16, n_layers=1, n_heads=2, intermediate_size=8, tie_word_embeddings=False).lm_head_scale is None
    scaled = randomize_(Seq2SeqLM(config)).eval()
    unscaled = Seq2SeqLM(config.replace(lm_head_scale=None)).eval()
    unscaled.load_state_dict(scaled.state_dict())
    src, src_mask, tgt, tgt_mask = batch(config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(scaled(src, src_mask, tgt, tgt_mask) * 8, unscaled(src, src_mask, tgt, tgt_mask))


# -------------------------------------------------------------------------------------------- BART


def tiny_hf_bart(**overrides):
    """A random BART; ``final_logits_bias`` (a buffer, untouched by randomize_) is drawn too."""
    fields = dict(
        vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=80, decoder_ffn_dim=80, max_position_embeddings=32, dropout=0.0,
    )
    fields.update(overrides)
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(**fields)).eval()
    model.config._attn_implementation = "eager"
    randomize_(model)
    with torch.no_grad():
        model.final_logits_bias.normal_(std=0.2, generator=torch.Generator().manual_seed(1))
    return model


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("bart (tied)", dict()),
        ("bart (scale_embedding)", dict(scale_embedding=True)),
        ("bart (untied)", dict(tie_word_embeddings=False)),
        ("bart (3 decoder layers, relu)", dict(decoder_layers=3, activation_function="relu")),
    ],
)
def test_bart_logits_match_transformers(name, overrides):
    compare(name, BART_ORACLE, tiny_hf_bart(**overrides))


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_unpadded_batches_match_transformers(family):
    """Without padding the decoder runs the fused causal kernel and cross-attention takes no mask."""
    hf = tiny_hf_t5() if family == "t5" else tiny_hf_bart()
    generator = torch.Generator().manual_seed(3)
    src = torch.randint(1, VOCAB, (2, 11), generator=generator)
    tgt = torch.randint(1, VOCAB, (2, 7), generator=generator)
    ours = from_hf_model(hf)
    with torch.no_grad():
        actual = ours(src, None, tgt)
        expected = hf(input_ids=src, decoder_input_ids=tgt).logits
    assert_parity(f"{family} (no padding)", T5_ORACLE if family == "t5" else BART_ORACLE, actual, expected)


def test_bart_without_the_position_offset_is_caught():
    """The deliberate bug: reading position p from row p instead of p + 2 (same table, same shape)."""
    hf = tiny_hf_bart()
    ours = from_hf_model(hf)
    wrong = Seq2SeqLM(ours.config.replace(position_offset=0, max_positions=ours.config.max_positions + 2))
    wrong.load_state_dict(ours.state_dict())
    src, src_mask, tgt, tgt_mask = batch()
    with torch.no_grad():
        error = relative_error(wrong.eval()(src, src_mask, tgt, tgt_mask), hf_logits(hf, src, src_mask, tgt, tgt_mask), tgt_mask)
    assert error > 1e-2


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_bart_folder_round_trip_with_transformers(tmp_path, tied):
    hf = tiny_hf_bart(tie_word_embeddings=tied)
    ours = from_hf_model(hf)
    src, src_mask, tgt, tgt_mask = batch()
    expected = hf_logits(hf, src, src_mask, tgt, tgt_mask)
    save_pretrained(ours, tmp_path / "ours")
    reloaded = transformers.BartForConditionalGeneration.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert_parity("bart (saved by llmcore)", BART_ORACLE, hf_logits(reloaded, src, src_mask, tgt, tgt_mask), expected, tgt_mask)
    hf.save_pretrained(tmp_path / "hf")
    with torch.no_grad():
        loaded = from_pretrained(tmp_path / "hf")(src, src_mask, tgt, tgt_mask)
    assert_parity("bart (loaded by llmcore)", BART_ORACLE, loaded, expected, tgt_mask)


def test_bart_checkpoint_without_final_logits_bias_loads_zero():
    hf = tiny_hf_bart()
    ours = from_hf_model(hf)
    state = {name: tensor for name, tensor in hf.state_dict().items() if name != "final_logits_bias"}
    converted = from_hf_state_dict(architecture_for("bart"), state, ours.config)
    assert torch.equal(converted["final_logits_bias"], torch.zeros(1, VOCAB))


def test_bart_mbart_style_configs_are_refused():
    config = transformers.BartConfig().to_dict()
    with pytest.raises(ValueError, match="normalize_before=True"):
        architecture_for("bart").config_from_hf({**config, "normalize_before": True})
    with pytest.raises(ValueError, match="decoder_ffn_dim=8"):
        architecture_for("bart").config_from_hf({**config, "decoder_ffn_dim": 8})


# ------------------------------------------------------------------------------ 2017 Transformer


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(norm_first=True), dict(share_embeddings=False), dict(tie_output=False)],
    ids=["post-norm", "pre-norm", "separate tables", "untied output"],
)
def test_transformer_2017_equals_chapter_1(overrides):
    """Seq2SeqLM with chapter 1's weights computes chapter 1's logits (pads marked by pad_id)."""
    torch.manual_seed(0)
    reference = randomize_(Transformer.from_preset("tiny", **overrides)).eval()
    ours = from_transformer(reference)
    src, src_mask, tgt, tgt_mask = batch(reference.config.src_vocab_size)
    with torch.no_grad():
        expected = reference(src, tgt)  # padded_batch writes pad_id 0 at padding
        actual = ours(src, src_mask, tgt, tgt_mask)
    assert_parity(f"transformer 2017 ({'/'.join(overrides) or 'post-norm'})", CHAPTER1_ORACLE, actual, expected, tgt_mask)


@pytest.mark.parametrize("size", ["base", "big"])
def test_transformer_presets_are_chapter_1s(size):
    chapter1 = TransformerConfig(**TRANSFORMER_PRESETS[size])
    assert preset_config(f"transformer-{size}") == config_from_transformer(chapter1)
    with torch.device("meta"):
        reference = Transformer(chapter1)
    assert build(f"transformer-{size}", device="meta").num_parameters() == reference.num_parameters()


def test_chapter_1_config_with_two_vocabularies_is_refused():
    with pytest.raises(ValueError, match="TransformerConfig.src_vocab_size=32 differs"):
        config_from_transformer(TransformerConfig(src_vocab_size=32, tgt_vocab_size=40))


# ------------------------------------------------------------------------- presets and the model


@pytest.mark.parametrize(
    "name, published, tolerance",
    [
        # T5 paper §3.7 / Table 14 rounds loosely. Exact counts (tied head, vocabulary 32,128, two
        # 32 × heads bias tables): 60,506,624 / 222,903,552 / 737,668,096 / 2,851,598,336 /
        # 11,307,321,344. Hugging Face's T5 v1.1 checkpoints are larger (untied head: + 32,128·d,
        # e.g. t5-v1_1-base ≈ 248M, and gated FFNs), which is why model cards disagree with the paper.
        ("t5-small", 60e6, 0.01),
        ("t5-base", 220e6, 0.015),
        ("t5-large", 770e6, 0.05),
        ("t5-3b", 3e9, 0.05),
        ("t5-11b", 11e9, 0.03),
        # BART paper §2.1 / fairseq release: "140M" and "400M" (exact: 139,420,416 and 406,291,456).
        ("bart-base", 140e6, 0.005),
        ("bart-large", 400e6, 0.02),
        # Vaswani et al. 2017, Table 3: 65M and 213M (exact, shared 37K vocabulary: 63,082,496 and 214,245,376).
        ("transformer-base", 65e6, 0.03),
        ("transformer-big", 213e6, 0.01),
    ],
)
def test_preset_parameter_counts(name, published, tolerance):
    model = build(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - published) / published < tolerance, f"{name}: {count:,} vs published {published:,.0f}"


@pytest.mark.parametrize(
    "name, hf_class, hf_config",
    [
        ("t5-small", "T5ForConditionalGeneration", dict(d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6)),
        ("bart-base", "BartForConditionalGeneration", dict(
            d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
            encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        )),
    ],
)
def test_preset_counts_equal_transformers(name, hf_class, hf_config):
    config_class = transformers.T5Config if name.startswith("t5") else transformers.BartConfig
    with torch.device("meta"):
        hf = getattr(transformers, hf_class)(config_class(**hf_config))
    assert build(name, device="meta").num_parameters() == sum(p.numel() for p in hf.parameters())


def test_encode_then_decode_is_forward():
    model = randomize_(build("tiny-bart")).eval()
    src, src_mask, tgt, tgt_mask = batch(model.config.vocab_size)
    with torch.no_grad():
        logits = model(src, src_mask, tgt, tgt_mask)
        torch.testing.assert_close(model.decode(tgt, model.encode(src, src_mask), src_mask, tgt_mask), logits, rtol=0, atol=0)
        full = model(src, src_mask, tgt)
    assert torch.equal(full[0, :15], logits[0, :15])  # the longest target has no padding


def test_shared_tables_and_tied_head():
    model = build("tiny-t5")
    table = model.encoder_embeddings.embed_tokens.weight
    assert model.decoder_embeddings.embed_tokens.weight is table and model.lm_head.weight is table
    separate = Seq2SeqLM(preset_config("tiny-transformer", share_embeddings=False))
    assert separate.decoder_embeddings.embed_tokens.weight is not separate.encoder_embeddings.embed_tokens.weight
    assert separate.lm_head.weight is separate.decoder_embeddings.embed_tokens.weight


def test_unsupported_configs_are_named():
    with pytest.raises(ValueError, match="ModelConfig.position='rope'"):
        Seq2SeqLM(preset_config("tiny-t5", position="rope"))
    model = build("tiny-t5")
    with pytest.raises(ValueError, match=r"memory must be \[B=3"):
        model.decode(torch.zeros(3, 4, dtype=torch.long), torch.zeros(2, 5, 64))
    with pytest.raises(ValueError, match="token ids must be"):
        model.encode(torch.zeros(4, dtype=torch.long))


def test_config_dict_round_trip():
    config = preset_config("tiny-bart")
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert math.isclose(preset_config("t5-base").lm_head_scale, 768**-0.5)
