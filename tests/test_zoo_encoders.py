"""BERT, RoBERTa, ALBERT and ELECTRA against Hugging Face transformers at random init (the oracle).

Each tiny transformers model (eager attention, float32) gets weights redrawn with std 0.2, is
converted by ``from_hf_model``, and must give the same masked-LM logits (ELECTRA: discriminator
logits) at every real token of a padded batch. The pooler is checked against
``BertForPreTraining``/``AlbertForPreTraining``, folders both ways, and deliberate bugs (BERT's
position ids in RoBERTa, an unshared ALBERT) must be caught.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.models import PRESETS, Discriminator, MaskedLM, build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.models.hub import architecture_for, from_hf_state_dict, load_converted  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_  # noqa: E402

SIZES = dict(
    vocab_size=99, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=72,
    max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)
FAMILIES = {
    "bert": (transformers.BertConfig, transformers.BertForMaskedLM, {}),
    "roberta": (transformers.RobertaConfig, transformers.RobertaForMaskedLM, dict(pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5)),
    "albert": (transformers.AlbertConfig, transformers.AlbertForMaskedLM, dict(embedding_size=16, classifier_dropout_prob=0.0)),
    "electra": (transformers.ElectraConfig, transformers.ElectraForPreTraining, dict(embedding_size=16)),
}


def tiny_hf(family: str, model_class=None, **overrides):
    config_class, default_class, extra = FAMILIES[family]
    config = config_class(**{**SIZES, **extra, **overrides})
    torch.manual_seed(0)
    model = (model_class or default_class)(config).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def batch(hf_model, lengths=(13, 8, 11), *, left=False, seed=0):
    """Padded ids whose padding is the model's pad id (RoBERTa: 1) and whose real ids never are."""
    vocab, pad = hf_model.config.vocab_size, hf_model.config.pad_token_id or 0
    ids, mask = padded_batch(vocab, list(lengths), left=left, seed=seed)
    ids = torch.where(mask.bool(), ids.clamp(min=pad + 1), torch.full_like(ids, pad))
    return ids, mask


def hf_logits(hf_model, ids, mask, **kwargs):
    with torch.no_grad():
        return hf_model(input_ids=ids, attention_mask=mask, **kwargs).logits


def compare(name, hf_model, *, left=False, **kwargs):
    ids, mask = batch(hf_model, left=left)
    ours = from_hf_model(hf_model)
    with torch.no_grad():
        actual = ours(ids, mask, **kwargs)
    oracle = f"transformers {type(hf_model).__name__} (eager)"
    return assert_parity(name, oracle, actual, hf_logits(hf_model, ids, mask, **kwargs), mask)


@pytest.mark.parametrize(
    "name, family, overrides, left",
    [
        ("bert", "bert", {}, False),
        ("bert (left padding)", "bert", {}, True),
        ("bert (relu, untied)", "bert", dict(hidden_act="relu", tie_word_embeddings=False), False),
        ("roberta", "roberta", {}, False),
        ("roberta (left padding)", "roberta", {}, True),
        ("albert (factorised, shared)", "albert", {}, False),
        ("albert (left padding)", "albert", {}, True),
        ("electra (E < d)", "electra", {}, False),
        ("electra (E = d)", "electra", dict(embedding_size=48), True),
    ],
)
def test_encoder_logits_match_transformers(name, family, overrides, left):
    compare(name, tiny_hf(family, **overrides), left=left)


def test_bert_token_types_match_transformers():
    hf = tiny_hf("bert")
    ids, mask = batch(hf)
    types = (torch.arange(ids.shape[1]) >= 5).long().expand_as(ids)
    ours = from_hf_model(hf)
    with torch.no_grad():
        actual = ours(ids, mask, token_type_ids=types)
    expected = hf_logits(hf, ids, mask, token_type_ids=types)
    assert_parity("bert (token types)", "transformers BertForMaskedLM (eager)", actual, expected, mask)
    assert (actual - ours(ids, mask)).abs().max() > 1e-2  # the segments really enter


def test_converted_models_have_the_expected_structure():
    albert = from_hf_model(tiny_hf("albert"))
    assert isinstance(albert, MaskedLM) and len(albert.encoder.layers) == 1 and albert.config.n_layers == 3
    assert albert.head.decoder.weight is albert.encoder.embeddings.embed_tokens.weight
    assert albert.head.dense.out_features == 16
    electra = from_hf_model(tiny_hf("electra"))
    assert isinstance(electra, Discriminator) and not hasattr(electra.encoder, "pooler")


@pytest.mark.parametrize("family, pretraining", [("bert", "BertForPreTraining"), ("albert", "AlbertForPreTraining")])
def test_pooler_matches_transformers(family, pretraining):
    """The [CLS] pooler of the pre-training checkpoints: load a …ForPreTraining state with pooler=True."""
    hf = tiny_hf(family, getattr(transformers, pretraining))
    architecture = architecture_for(family)
    from llmcore import checkpoints

    config = architecture.config_from_hf(checkpoints.normalise_config(hf.config.to_dict())).replace(pooler=True)
    ours = MaskedLM(config).eval()
    state = {name: tensor.detach() for name, tensor in hf.state_dict().items()}
    load_converted(ours, from_hf_state_dict(architecture, state, config), pretraining)
    ids, mask = batch(hf)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask)
        pooled = getattr(hf, family)(input_ids=ids, attention_mask=mask).pooler_output
        actual_logits = ours(ids, mask)
        actual_pooled = ours.encoder.pooled(ours.encoder(ids, mask))
    oracle = f"transformers {pretraining} (eager)"
    assert_parity(f"{family} (pre-training MLM)", oracle, actual_logits, expected.prediction_logits, mask)
    assert_parity(f"{family} (pooler)", oracle, actual_pooled, pooled)


def test_pooler_of_a_checkpoint_is_dropped_without_config_pooler():
    hf = tiny_hf("bert", transformers.BertForPreTraining)
    ours = from_hf_model(hf)  # BertForMaskedLM has no pooler either; the NSP head is ignored
    assert not hasattr(ours.encoder, "pooler")
    with pytest.raises(ValueError, match="no pooler"):
        ours.encoder.pooled(torch.zeros(1, 2, 48))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_folders_round_trip_both_ways(tmp_path, family):
    hf = tiny_hf(family)
    ids, mask = batch(hf)
    expected = hf_logits(hf, ids, mask)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        assert_parity(f"{family} folder", "transformers save_pretrained → from_pretrained", ours(ids, mask), expected, mask)
    save_pretrained(ours, tmp_path / "ours")
    back = type(hf).from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert_parity(f"{family} save_pretrained", "transformers from_pretrained", hf_logits(back, ids, mask), expected, mask)


def test_roberta_with_bert_position_ids_is_caught():
    """RoBERTa's positions count real tokens from pad + 1; BERT's 0 … L−1 (shifted) differ under left padding."""
    hf = tiny_hf("roberta")
    ids, mask = batch(hf, left=True)
    ours = from_hf_model(hf)
    wrong = MaskedLM(ours.config.replace(positions_skip_padding=False)).eval()
    wrong.load_state_dict(ours.state_dict())
    expected = hf_logits(hf, ids, mask)
    with torch.no_grad():
        assert_parity("roberta (left padding, skip-padding positions)", "transformers RobertaForMaskedLM (eager)",
                      ours(ids, mask), expected, mask)
        error = ((wrong(ids, mask) - expected)[mask.bool()]).abs().max() / expected.abs().max()
    assert error > 1e-2


def test_unshared_albert_is_caught():
    """Three copies of the shared layer are the same network, but three different layers are not."""
    hf = tiny_hf("albert")
    ids, mask = batch(hf)
    ours = from_hf_model(hf)
    unshared = MaskedLM(ours.config.replace(share_layers=False)).eval()
    state = ours.state_dict()
    unshared.load_state_dict({**state, **{
        name.replace("layers.0.", f"layers.{i}."): tensor
        for i in range(3) for name, tensor in state.items() if name.startswith("encoder.layers.0.")
    }})
    expected = hf_logits(hf, ids, mask)
    with torch.no_grad():
        assert_parity("albert (unshared copies)", "transformers AlbertForMaskedLM (eager)", unshared(ids, mask), expected, mask)
        randomize_(unshared.encoder.layers[1], seed=1)
        assert (unshared(ids, mask) - expected)[mask.bool()].abs().max() / expected.abs().max() > 1e-2


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_hidden_groups=2), "num_hidden_groups"),
        (dict(inner_group_num=2), "inner_group_num"),
        (dict(embedding_size=48), "embedding_size"),
    ],
)
def test_unsupported_albert_configs_name_the_field(overrides, field):
    hf_config = transformers.AlbertConfig(**{**SIZES, **FAMILIES["albert"][2], **overrides}).to_dict()
    with pytest.raises(ValueError, match=field):
        architecture_for("albert").config_from_hf(hf_config)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="positions_skip_padding"):
        build("tiny-bert", positions_skip_padding=True, position_offset=0)


# Published sizes. Each count is the whole pre-training network: encoder, pooler where the model has
# one (BERT, ALBERT), MLM head (tied decoder + bias) or ELECTRA's discriminator head.
PUBLISHED = {
    # BERT §3 "110M" / "340M": the figures are rounded to two significant figures.
    "bert-base": (110_104_890, 0.5e6),
    "bert-large": (336_224_058, 5e6),
    # fairseq README "125M" / "355M" (no pooler; Hugging Face's single token-type row adds d).
    "roberta-base": (124_697_433, 0.5e6),
    "roberta-large": (355_412_057, 0.5e6),
    # ALBERT Table 1 "12M" / "18M"; xxlarge: the released checkpoint's 223M (see below).
    "albert-base": (11_812_272, 0.5e6),
    "albert-large": (17_845_424, 0.5e6),
    "albert-xxlarge": (223_150_256, 0.5e6),
    # ELECTRA Table 1 "14M" / "110M", Table 2 "335M" (discriminators). Base is BERT-Base's network
    # (109.5M without the pooler and MLM head), quoted like BERT's to two significant figures.
    "electra-small": (13_549_057, 0.5e6),
    "electra-base": (109_483_009, 5e6),
    "electra-large": (335_142_913, 0.5e6),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_match_the_published_figures(name):
    exact, rounding = PUBLISHED[name]
    count = sum(p.numel() for p in build(name, device="meta").parameters())
    assert count == exact
    published = PRESETS[name].published_parameters
    assert abs(count - published) <= rounding, f"{name}: {count:,} vs published {published:,.0f} ({PRESETS[name].source})"


def test_albert_xxlarge_paper_figure_is_not_reachable():
    """ALBERT Table 1 says 235M (and §3.2 233M) for H=4096, E=128, 12 shared layers, 64 heads, FFN 16384.

    That shape gives 223.2M with the pooler and MLM head; the albert-xxlarge-v2 model card says 223M.
    The encoder alone is 206M, so no choice of heads reaches 235M: the paper's figure is an overstatement.
    """
    model = build("albert-xxlarge", device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert 0.05 < (235e6 - count) / 235e6 < 0.06
    layer = sum(p.numel() for p in model.encoder.layers.parameters())
    assert layer == 201_379_840  # the one shared layer is 90% of the model


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta", "tiny-albert", "tiny-electra"])
def test_tiny_presets_run(name):
    model = build(name).eval()
    ids, mask = padded_batch(model.config.vocab_size, [10, 6])
    if model.config.positions_skip_padding:
        ids = torch.where(mask.bool(), ids.clamp(min=2), 1)
    with torch.no_grad():
        out = model(ids, mask)
    expected = (2, 10) if isinstance(model, Discriminator) else (2, 10, model.config.vocab_size)
    assert out.shape == expected and torch.isfinite(out).all()


@pytest.mark.parametrize("changes, field", [(dict(position="rope"), "position"), (dict(sliding_window=4), "layer_kinds")])
def test_an_encoder_refuses_what_it_would_ignore(changes, field):
    with pytest.raises(ValueError, match=field):
        build("tiny-bert", **changes)
