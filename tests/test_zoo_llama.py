"""LLaMA 1/2/3 against Hugging Face transformers at random init (the independent oracle)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.models import from_hf_model  # noqa: E402
from llmcore.models.families.llama import from_meta_state_dict, permute_for_half_split  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_  # noqa: E402

ORACLE = "transformers LlamaForCausalLM (eager)"


def tiny_hf_llama(**overrides):
    fields = dict(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    fields.update(overrides)
    config = transformers.LlamaConfig(**fields)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def compare(name, hf_model, *, lengths=(11, 7, 9), left=False, tol=1e-5):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    ours = from_hf_model(hf_model)
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, attention_mask=mask)
    return assert_parity(name, ORACLE, actual, expected, mask, tol=tol)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("llama (MHA)", dict(num_key_value_heads=4)),
        ("llama (GQA 4:2)", {}),
        ("llama (MQA)", dict(num_key_value_heads=1)),
        ("llama (tied, θ=5e5)", dict(tie_word_embeddings=True, rope_theta=500000.0)),
        ("llama (attention + mlp bias)", dict(attention_bias=True, mlp_bias=True)),
        ("llama (head_dim ≠ d/H)", dict(head_dim=24)),
    ],
)
def test_llama_logits_match_transformers(name, overrides):
    compare(name, tiny_hf_llama(**overrides))


def test_llama_left_padding_matches_transformers():
    compare("llama (left padding)", tiny_hf_llama(), left=True)


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "linear", "factor": 4.0},
        {"rope_type": "dynamic", "factor": 2.0},
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16, "beta_fast": 16.0, "beta_slow": 2.0},
    ],
    ids=lambda s: s["rope_type"],
)
def test_llama_rope_scaling_matches_transformers(scaling):
    hf = tiny_hf_llama(rope_parameters={"rope_theta": 10000.0, **scaling}, max_position_embeddings=16)
    # 30 tokens > 16 trained positions, so dynamic NTK actually rescales.
    compare(f"llama (RoPE {scaling['rope_type']})", hf, lengths=(30, 21))


def test_a_wrong_rope_layout_is_caught_by_the_parity_check():
    hf = tiny_hf_llama()
    ids, mask = padded_batch(hf.config.vocab_size, [12, 12])
    ours = from_hf_model(hf)
    for module in ours.modules():
        if hasattr(module, "rotary_interleaved"):
            module.rotary_interleaved = True
    with torch.no_grad():
        error = (ours(ids, mask) - hf(input_ids=ids, attention_mask=mask).logits).abs().max()
    assert error > 1e-1


def to_meta_rows(weight, n_heads):
    """Inverse of permute_for_half_split: half-split rows back to Meta's interleaved pairs."""
    rows, width = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, 2, head_dim // 2, width).transpose(1, 2).reshape(rows, width)


def test_permutation_is_inverted_by_the_meta_order():
    weight = torch.arange(4 * 8 * 3, dtype=torch.float32).view(32, 3)
    assert torch.equal(permute_for_half_split(to_meta_rows(weight, 4), 4), weight)
    head = permute_for_half_split(torch.arange(8).float().view(8, 1), 1).flatten().tolist()
    assert head == [0, 2, 4, 6, 1, 3, 5, 7]


def test_meta_checkpoint_converts_to_the_same_logits():
    hf = tiny_hf_llama()
    ours = from_hf_model(hf)
    config = ours.config
    meta = {
        "tok_embeddings.weight": ours.embeddings.embed_tokens.weight,
        "norm.weight": ours.norm.weight,
        "output.weight": ours.lm_head.weight,
        "rope.freqs": torch.zeros(8),
    }
    for i, layer in enumerate(ours.layers):
        attn, ffn = layer.self_attn, layer.ffn
        meta |= {
            f"layers.{i}.attention_norm.weight": layer.self_attn_norm.weight,
            f"layers.{i}.ffn_norm.weight": layer.ffn_norm.weight,
            f"layers.{i}.attention.wq.weight": to_meta_rows(attn.q_proj.weight, config.n_heads),
            f"layers.{i}.attention.wk.weight": to_meta_rows(attn.k_proj.weight, config.resolved_kv_heads),
            f"layers.{i}.attention.wv.weight": attn.v_proj.weight,
            f"layers.{i}.attention.wo.weight": attn.o_proj.weight,
            f"layers.{i}.feed_forward.w1.weight": ffn.gate_proj.weight,
            f"layers.{i}.feed_forward.w3.weight": ffn.up_proj.weight,
            f"layers.{i}.feed_forward.w2.weight": ffn.down_proj.weight,
        }
    meta = {name: tensor.detach().clone() for name, tensor in meta.items()}
    ids, mask = padded_batch(config.vocab_size, [10, 10])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits

    from llmcore.models import CausalLM

    converted = CausalLM(config)
    converted.load_state_dict(from_meta_state_dict(meta, config))
    interleaved = CausalLM(config.replace(rope_interleaved=True))
    interleaved.load_state_dict(
        {**from_meta_state_dict(meta, config), **{
            f"layers.{i}.self_attn.{p}_proj.weight": meta[f"layers.{i}.attention.w{p}.weight"]
            for i in range(config.n_layers) for p in ("q", "k")
        }}
    )
    with torch.no_grad():
        assert_parity("llama (Meta checkpoint, permuted)", ORACLE, converted.eval()(ids, mask), expected, mask)
        assert_parity("llama (Meta checkpoint, interleaved RoPE)", ORACLE, interleaved.eval()(ids, mask), expected, mask)


def test_meta_checkpoint_with_an_unknown_tensor_is_refused():
    hf = tiny_hf_llama()
    config = from_hf_model(hf).config
    with pytest.raises(KeyError, match="layers.0.attention.wx.weight"):
        from_meta_state_dict({"layers.0.attention.wx.weight": torch.zeros(1)}, config)


@pytest.mark.parametrize(
    "variant", [{"mscale": 0.707, "mscale_all_dim": 0.707}, {"attention_factor": 1.5}, {"truncate": False}]
)
def test_yarn_variants_llmcore_does_not_implement_are_refused(variant):
    hf = tiny_hf_llama(
        rope_parameters={"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, **variant},
        max_position_embeddings=16,
    )
    with pytest.raises(ValueError, match="YaRN"):
        from_hf_model(hf)
