"""BLOOM against transformers ``BloomForCausalLM`` at random init (the independent oracle).

transformers builds ALiBi from the padding mask (``slope · kv`` with kv counted over real tokens)
while llmcore uses ``−slope · (q − kv)`` over absolute indices; the two differ by a constant per
query row, which the softmax ignores, so left padding is the case that proves it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.alibi import alibi_slopes  # noqa: E402
from llmcore.models import PRESETS, CausalLM, build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.models.families.bloom import bloom_from_hf, bloom_to_hf  # noqa: E402
from llmcore.models.hub import architecture_for, from_hf_state_dict, load_converted  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_, relative_error  # noqa: E402

ORACLE = "transformers BloomForCausalLM"


def tiny_hf_bloom(**overrides):
    fields = dict(vocab_size=96, hidden_size=64, n_layer=2, n_head=4)
    torch.manual_seed(0)
    model = transformers.BloomForCausalLM(transformers.BloomConfig(**{**fields, **overrides})).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def compare(name, hf_model, ours=None, *, lengths=(11, 7, 9), left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    ours = from_hf_model(hf_model) if ours is None else ours
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, attention_mask=mask)
    return assert_parity(name, ORACLE, actual, expected, mask)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("bloom (4 heads)", {}),
        ("bloom (6 heads: extra slopes)", dict(hidden_size=48, n_head=6)),
        ("bloom (12 heads: extra slopes)", dict(hidden_size=96, n_head=12)),
        ("bloom (untied)", dict(tie_word_embeddings=False)),
        ("bloom (post-LN residual)", dict(apply_residual_connection_post_layernorm=True)),
    ],
)
def test_bloom_logits_match_transformers(name, overrides):
    compare(name, tiny_hf_bloom(**overrides))


@pytest.mark.parametrize("heads", [4, 6])
def test_bloom_left_padding_matches_transformers(heads):
    compare(f"bloom ({heads} heads, left padding)", tiny_hf_bloom(hidden_size=12 * heads, n_head=heads), left=True)


def test_alibi_slopes_match_bloom_for_every_head_count_up_to_the_176b_model():
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    for heads in [*range(1, 33), 112]:
        assert torch.allclose(alibi_slopes(heads), _get_alibi_slopes(heads, torch.device("cpu")), rtol=1e-6), heads


def _split_like_gpt2(state_dict, config):
    """A buggy converter: reads query_key_value as [q | k | v] (GPT-2's order) instead of per head."""
    d = config.hidden_size
    converted = bloom_from_hf(state_dict, config)
    for name, tensor in state_dict.items():
        if name.endswith("query_key_value.weight") or name.endswith("query_key_value.bias"):
            layer, kind = name.rsplit(".query_key_value.", 1)
            for part, piece in zip("qkv", tensor.split(d, dim=0)):
                converted[f"{layer}.{part}_proj.{kind}"] = piece
    return converted


def test_a_wrong_qkv_split_is_caught():
    hf = tiny_hf_bloom(hidden_size=48, n_head=6)
    ours = from_hf_model(hf)
    buggy = dataclasses.replace(architecture_for("bloom"), from_hf_tensors=_split_like_gpt2)
    state = {name: tensor.detach() for name, tensor in hf.state_dict().items()}
    wrong = CausalLM(ours.config)
    load_converted(wrong, from_hf_state_dict(buggy, state, ours.config), "buggy")  # the shapes all fit
    ids, mask = padded_batch(hf.config.vocab_size, [10, 10])
    with torch.no_grad():
        assert relative_error(wrong.eval()(ids, mask), hf(input_ids=ids, attention_mask=mask).logits) > 0.1


def test_qkv_split_round_trips_and_is_per_head():
    config = from_hf_model(tiny_hf_bloom(hidden_size=8, n_head=2)).config
    rows = torch.arange(24, dtype=torch.float32).view(24, 1).expand(24, 8)
    name = "transformer.h.0.self_attention.query_key_value.weight"
    split = bloom_from_hf({name: rows}, config)
    # head 0 owns rows 0-3 (q), 4-7 (k), 8-11 (v); head 1 rows 12-15, 16-19, 20-23.
    assert split["transformer.h.0.self_attention.q_proj.weight"][:, 0].tolist() == [0, 1, 2, 3, 12, 13, 14, 15]
    assert split["transformer.h.0.self_attention.v_proj.weight"][:, 0].tolist() == [8, 9, 10, 11, 20, 21, 22, 23]
    assert torch.equal(bloom_to_hf(split, config)[name], rows)


def test_a_mis_shaped_query_key_value_is_refused_naming_the_tensor():
    config = from_hf_model(tiny_hf_bloom()).config
    name = "transformer.h.1.self_attention.query_key_value.weight"
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.self_attention\.query_key_value\.weight"):
        bloom_from_hf({name: torch.zeros(64, 192)}, config)


def test_base_model_checkpoint_layout_loads():
    """bigscience's files were saved from BloomModel: no ``transformer.`` prefix and no lm_head."""
    hf = tiny_hf_bloom(hidden_size=48, n_head=6)
    ours = from_hf_model(hf)
    state = {name.removeprefix("transformer."): tensor.detach() for name, tensor in hf.state_dict().items()}
    del state["lm_head.weight"]
    loaded = CausalLM(ours.config)
    load_converted(loaded, from_hf_state_dict(architecture_for("bloom"), state, ours.config), "base layout")
    compare("bloom (base-model file layout)", hf, loaded.eval())


@pytest.mark.parametrize("overrides", [{}, dict(apply_residual_connection_post_layernorm=True)], ids=["pre", "post-LN residual"])
def test_save_pretrained_is_read_back_by_transformers_and_llmcore(overrides, tmp_path):
    hf = tiny_hf_bloom(hidden_size=48, n_head=6, **overrides)
    save_pretrained(from_hf_model(hf), tmp_path)
    reread = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids, mask = padded_batch(hf.config.vocab_size, [9, 6])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        assert relative_error(reread(input_ids=ids, attention_mask=mask).logits, expected, mask) < 1e-6
        assert relative_error(from_pretrained(tmp_path)(ids, mask), expected, mask) < 1e-5


@pytest.mark.parametrize(
    "name",
    # BLOOM paper, Table 3: 559M, 1,065M, 1,722M, 3,003M, 7,069M and 176,247M parameters.
    ["bloom-560m", "bloom-1b1", "bloom-1b7", "bloom-3b", "bloom-7b1", "bloom-176b"],
)
def test_parameter_counts_match_the_bloom_paper(name):
    published = PRESETS[name].published_parameters
    count = sum(p.numel() for p in build(name, device="meta").parameters())
    assert abs(count - published) <= 0.5e6, f"{name}: {count:,} vs published {published:,.0f}"


def test_tiny_bloom_uses_alibi_with_a_non_power_of_two_head_count():
    model = build("tiny-bloom")
    assert model.config.n_heads == 6 and model.config.position == "alibi" and model.config.embedding_norm
    assert not any("embed_positions" in name for name, _ in model.named_parameters())
    ids = torch.randint(0, model.config.vocab_size, (2, 300))  # longer than max_positions: ALiBi extrapolates
    assert torch.isfinite(model(ids)).all()
