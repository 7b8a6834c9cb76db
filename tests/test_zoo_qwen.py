"""Qwen-1 and Qwen2 against independent oracles.

* Qwen2: transformers ``Qwen2ForCausalLM`` (eager), including its sliding-window layers.
* Qwen-1 has no class in transformers (``QWenLMHeadModel`` is remote code), so two oracles:
  (1) for inputs within the trained length, where LogN and dynamic NTK are inactive, Qwen-1 *is*
  LLaMA with a Q/K/V bias and an untied head: transformers ``LlamaForCausalLM`` with
  ``attention_bias=True`` and a zero ``o_proj`` bias, fed the same tensors; (2) for longer inputs, a
  naive float64 per-row, per-position, per-head loop written from Qwen's code (``get_ntk_alpha``,
  ``logn_list``, ``QWenMLP``), independent of llmcore.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from llmcore import checkpoints  # noqa: E402
from llmcore.models import build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.rope import qwen_ntk_alpha  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_, relative_error  # noqa: E402

QWEN2_ORACLE = "transformers Qwen2ForCausalLM (eager)"
LLAMA_ORACLE = "LlamaForCausalLM + QKV bias (≡ Qwen-1, L ≤ L₀)"
NAIVE_ORACLE = "naive per-position loop (Qwen-1 code)"

# A hand-written Qwen-1 config.json (the fields of QWenConfig that the model reads).
QWEN1_CONFIG = {
    "architectures": ["QWenLMHeadModel"],
    "model_type": "qwen",
    "vocab_size": 96,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "kv_channels": 16,
    "intermediate_size": 160,
    "max_position_embeddings": 128,
    "seq_length": 16,
    "layer_norm_epsilon": 1e-6,
    "rotary_emb_base": 10000,
    "rotary_pct": 1.0,
    "no_bias": True,
    "use_dynamic_ntk": True,
    "use_logn_attn": True,
    "tie_word_embeddings": False,
    "scale_attn_weights": True,
    "bf16": False,
    "fp16": False,
    "fp32": False,
}


# ----------------------------------------------------------------------------- Qwen2


def tiny_hf_qwen2(**overrides):
    fields = dict(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=True,
    )
    fields.update(overrides)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**fields)).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def compare_qwen2(name, hf_model, *, lengths=(11, 7, 9), left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    ours = from_hf_model(hf_model)
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, attention_mask=mask)
    return assert_parity(name, QWEN2_ORACLE, actual, expected, mask)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("qwen2 (tied, GQA 4:2)", {}),
        ("qwen2 (untied, θ=1e6, MQA)", dict(tie_word_embeddings=False, num_key_value_heads=1, rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    ],
)
def test_qwen2_logits_match_transformers(name, overrides):
    compare_qwen2(name, tiny_hf_qwen2(**overrides))


def test_qwen2_left_padding_matches_transformers():
    compare_qwen2("qwen2 (left padding)", tiny_hf_qwen2(), left=True)


def sliding_qwen2():
    # Layers 1 and 2 slide (i ≥ max_window_layers = 1) with a 4-token window; inputs are 13 tokens long.
    return tiny_hf_qwen2(num_hidden_layers=3, use_sliding_window=True, sliding_window=4, max_window_layers=1)


def test_qwen2_sliding_window_layers_match_transformers():
    hf = sliding_qwen2()
    assert from_hf_model(hf).config.resolved_layer_kinds == ("full", "sliding", "sliding")
    compare_qwen2("qwen2 (sliding layers ≥ 1, W=4)", hf, lengths=(13, 9))


def test_qwen2_window_off_by_one_is_caught():
    hf = sliding_qwen2()
    ours = from_hf_model(hf)
    wrong = type(ours)(ours.config.replace(sliding_window=5)).eval()
    wrong.load_state_dict(ours.state_dict())
    ids, mask = padded_batch(hf.config.vocab_size, [13, 13])
    with torch.no_grad():
        error = relative_error(wrong(ids, mask), hf(input_ids=ids, attention_mask=mask).logits, mask)
    assert error > 1e-2


def test_qwen2_folder_round_trip_loads_in_transformers(tmp_path):
    ours = from_hf_model(sliding_qwen2())
    save_pretrained(ours, tmp_path)
    reloaded = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    reloaded.config._attn_implementation = "eager"
    ids, mask = padded_batch(ours.config.vocab_size, [13, 10])
    with torch.no_grad():
        assert_parity("qwen2 (saved, reloaded by HF)", QWEN2_ORACLE, ours(ids, mask), reloaded(input_ids=ids, attention_mask=mask).logits, mask)


# ----------------------------------------------------------------------------- Qwen-1


def random_qwen1_tensors(config: dict, *, std: float = 0.2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Qwen-1 state dict in the checkpoint's own names, weights ~ N(0, std), norm scales ~ 1 + N(0, std)."""
    generator = torch.Generator().manual_seed(seed)
    d, ffn, vocab = config["hidden_size"], config["intermediate_size"] // 2, config["vocab_size"]
    shapes = {"transformer.wte.weight": (vocab, d), "transformer.ln_f.weight": (d,), "lm_head.weight": (vocab, d)}
    for i in range(config["num_hidden_layers"]):
        prefix = f"transformer.h.{i}"
        shapes |= {
            f"{prefix}.ln_1.weight": (d,),
            f"{prefix}.attn.c_attn.weight": (3 * d, d),
            f"{prefix}.attn.c_attn.bias": (3 * d,),
            f"{prefix}.attn.c_proj.weight": (d, d),
            f"{prefix}.ln_2.weight": (d,),
            f"{prefix}.mlp.w1.weight": (ffn, d),
            f"{prefix}.mlp.w2.weight": (ffn, d),
            f"{prefix}.mlp.c_proj.weight": (d, ffn),
        }
    tensors = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=generator) * std
        tensors[name] = 1.0 + noise if "ln_" in name else noise
    return tensors


@pytest.fixture
def qwen1_folder(tmp_path):
    checkpoints.save_state_dict(tmp_path, random_qwen1_tensors(QWEN1_CONFIG))
    (tmp_path / "config.json").write_text(json.dumps(QWEN1_CONFIG))
    return tmp_path


def llama_equivalent(tensors: dict, config: dict):
    """The LLaMA that computes Qwen-1 within its trained length: c_attn split, w2 → gate, w1 → up."""
    d = config["hidden_size"]
    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=config["vocab_size"], hidden_size=d, intermediate_size=config["intermediate_size"] // 2,
            num_hidden_layers=config["num_hidden_layers"], num_attention_heads=config["num_attention_heads"],
            num_key_value_heads=config["num_attention_heads"], rms_norm_eps=config["layer_norm_epsilon"],
            attention_bias=True, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": float(config["rotary_emb_base"])},
        )
    ).eval()
    llama.config._attn_implementation = "eager"
    state = {
        "model.embed_tokens.weight": tensors["transformer.wte.weight"],
        "model.norm.weight": tensors["transformer.ln_f.weight"],
        "lm_head.weight": tensors["lm_head.weight"],
    }
    for i in range(config["num_hidden_layers"]):
        q, k, v = tensors[f"transformer.h.{i}.attn.c_attn.weight"].split(d)
        qb, kb, vb = tensors[f"transformer.h.{i}.attn.c_attn.bias"].split(d)
        ours, theirs = f"model.layers.{i}", f"transformer.h.{i}"
        state |= {
            f"{ours}.input_layernorm.weight": tensors[f"{theirs}.ln_1.weight"],
            f"{ours}.post_attention_layernorm.weight": tensors[f"{theirs}.ln_2.weight"],
            f"{ours}.self_attn.q_proj.weight": q, f"{ours}.self_attn.q_proj.bias": qb,
            f"{ours}.self_attn.k_proj.weight": k, f"{ours}.self_attn.k_proj.bias": kb,
            f"{ours}.self_attn.v_proj.weight": v, f"{ours}.self_attn.v_proj.bias": vb,
            f"{ours}.self_attn.o_proj.weight": tensors[f"{theirs}.attn.c_proj.weight"],
            f"{ours}.self_attn.o_proj.bias": torch.zeros(d),
            f"{ours}.mlp.gate_proj.weight": tensors[f"{theirs}.mlp.w2.weight"],
            f"{ours}.mlp.up_proj.weight": tensors[f"{theirs}.mlp.w1.weight"],
            f"{ours}.mlp.down_proj.weight": tensors[f"{theirs}.mlp.c_proj.weight"],
        }
    llama.load_state_dict(state, strict=True)
    return llama


@pytest.mark.parametrize("left", [False, True], ids=["right padding", "left padding"])
def test_qwen1_within_trained_length_equals_llama_with_qkv_bias(qwen1_folder, left):
    ours = from_pretrained(qwen1_folder)
    config = ours.config
    assert (config.qkv_bias, config.o_bias, config.intermediate_size) == (True, False, 80)
    assert config.rope_scaling.type == "qwen_dynamic" and config.logn_trained_length == 16
    llama = llama_equivalent(checkpoints.load_state_dict(qwen1_folder), QWEN1_CONFIG)
    ids, mask = padded_batch(QWEN1_CONFIG["vocab_size"], [16, 9, 12], left=left)
    with torch.no_grad():
        expected = llama(input_ids=ids, attention_mask=mask).logits
        assert_parity("qwen-1 (L ≤ L₀)", LLAMA_ORACLE, ours(ids, mask), expected, mask)


def naive_qwen1_logits(tensors: dict, config: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Qwen-1 in float64, one right-padded row, position and head at a time ([B, L, vocab]; zeros at padding)."""
    t = {name: tensor.double() for name, tensor in tensors.items()}
    d, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim, trained, eps = d // heads, config["seq_length"], config["layer_norm_epsilon"]

    def rms(x, weight):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    logits = torch.zeros(*ids.shape, config["vocab_size"], dtype=torch.float64)
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        # get_ntk_alpha: from the row's true length, then base' = base · α^(D/(D−2)).
        alpha = max(2 ** math.ceil(math.log(n / trained, 2) + 1) - 1, 1)
        base = config["rotary_emb_base"] * alpha ** (head_dim / (head_dim - 2))
        inv_freq = [1.0 / base ** (2 * j / head_dim) for j in range(head_dim // 2)]

        def rotate(vector, position):
            out = vector.clone()
            for j, frequency in enumerate(inv_freq):
                c, s = math.cos(position * frequency), math.sin(position * frequency)
                a, b = vector[j], vector[j + head_dim // 2]
                out[j], out[j + head_dim // 2] = a * c - b * s, b * c + a * s
            return out

        x = t["transformer.wte.weight"][ids[row, :n]]
        for i in range(config["num_hidden_layers"]):
            p = f"transformer.h.{i}"
            h = rms(x, t[f"{p}.ln_1.weight"])
            qkv = h @ t[f"{p}.attn.c_attn.weight"].T + t[f"{p}.attn.c_attn.bias"]
            context = torch.zeros(n, d, dtype=torch.float64)
            for head in range(heads):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                q, k, v = qkv[:, :d][:, cols], qkv[:, d : 2 * d][:, cols], qkv[:, 2 * d :][:, cols]
                keys = [rotate(k[s], s) for s in range(n)]
                for pos in range(n):
                    logn = math.log(pos + 1, trained) if pos + 1 > trained else 1.0
                    query = rotate(q[pos], pos) * logn
                    scores = torch.stack([query @ keys[s] for s in range(pos + 1)]) / math.sqrt(head_dim)
                    context[pos, cols] = torch.softmax(scores, 0) @ v[: pos + 1]
            x = x + context @ t[f"{p}.attn.c_proj.weight"].T
            h = rms(x, t[f"{p}.ln_2.weight"])
            a1, a2 = h @ t[f"{p}.mlp.w1.weight"].T, h @ t[f"{p}.mlp.w2.weight"].T
            x = x + (a1 * F.silu(a2)) @ t[f"{p}.mlp.c_proj.weight"].T
        logits[row, :n] = rms(x, t["transformer.ln_f.weight"]) @ t["lm_head.weight"].T
    return logits


def long_batch():
    # 40 tokens → α = 7 and 23 tokens → α = 3 (L₀ = 16); LogN is active past position 16 in both.
    ids, mask = padded_batch(QWEN1_CONFIG["vocab_size"], [40, 23])
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def test_qwen_ntk_alpha_follows_qwen():
    assert [qwen_ntk_alpha(n, 16) for n in (1, 16, 17, 32, 33, 64, 65)] == [1, 1, 3, 3, 7, 7, 15]


def test_qwen1_beyond_trained_length_matches_naive_loop(qwen1_folder):
    ours = from_pretrained(qwen1_folder)
    ids, mask, positions = long_batch()
    expected = naive_qwen1_logits(checkpoints.load_state_dict(qwen1_folder), QWEN1_CONFIG, ids, mask)
    with torch.no_grad():
        assert_parity("qwen-1 (L > L₀: LogN + NTK)", NAIVE_ORACLE, ours(ids, mask, positions), expected, mask)


@pytest.mark.parametrize(
    "wrong",
    [dict(logn_trained_length=None), dict(rope_scaling=None), dict(rope_theta=20000.0)],
    ids=["no LogN", "no dynamic NTK", "wrong base"],
)
def test_qwen1_without_its_long_context_tricks_is_caught(qwen1_folder, wrong):
    ours = from_pretrained(qwen1_folder)
    broken = type(ours)(ours.config.replace(**wrong)).eval()
    broken.load_state_dict(ours.state_dict())
    ids, mask, positions = long_batch()
    expected = naive_qwen1_logits(checkpoints.load_state_dict(qwen1_folder), QWEN1_CONFIG, ids, mask)
    with torch.no_grad():
        assert relative_error(broken(ids, mask, positions), expected, mask) > 1e-2


def test_qwen1_with_w1_and_w2_swapped_is_caught(qwen1_folder):
    tensors = checkpoints.load_state_dict(qwen1_folder)
    swapped = dict(tensors)
    for i in range(QWEN1_CONFIG["num_hidden_layers"]):
        swapped[f"transformer.h.{i}.mlp.w1.weight"] = tensors[f"transformer.h.{i}.mlp.w2.weight"]
        swapped[f"transformer.h.{i}.mlp.w2.weight"] = tensors[f"transformer.h.{i}.mlp.w1.weight"]
    checkpoints.save_state_dict(qwen1_folder, swapped)
    llama = llama_equivalent(tensors, QWEN1_CONFIG)
    ids, mask = padded_batch(QWEN1_CONFIG["vocab_size"], [12, 12])
    with torch.no_grad():
        assert relative_error(from_pretrained(qwen1_folder)(ids, mask), llama(input_ids=ids, attention_mask=mask).logits, mask) > 1e-2


def test_qwen1_save_pretrained_writes_the_original_layout(qwen1_folder, tmp_path):
    ours = from_pretrained(qwen1_folder)
    out = save_pretrained(ours, tmp_path / "saved")
    original, saved = checkpoints.load_state_dict(qwen1_folder), checkpoints.load_state_dict(out)
    assert sorted(saved) == sorted(original)
    assert all(torch.equal(saved[name], original[name]) for name in original)
    written = checkpoints.read_config(out)
    for key in ("intermediate_size", "kv_channels", "seq_length", "use_dynamic_ntk", "use_logn_attn", "no_bias"):
        assert written[key] == QWEN1_CONFIG[key], key


def test_qwen1_config_with_inconsistent_heads_names_the_field(qwen1_folder):
    (qwen1_folder / "config.json").write_text(json.dumps({**QWEN1_CONFIG, "kv_channels": 8}))
    with pytest.raises(ValueError, match="kv_channels"):
        from_pretrained(qwen1_folder)


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "name, published, unit",
    [
        ("qwen-7b", 7.7e9, 0.1e9),      # Qwen-7B: "7.7B" (7 721 324 544 computed)
        ("qwen-14b", 14.2e9, 0.1e9),    # Qwen-14B: "14.2B"
        ("qwen2-0.5b", 0.49e9, 0.01e9),  # Qwen2-0.5B: 0.49B (tied embeddings)
        ("qwen2-7b", 7.62e9, 0.01e9),    # Qwen2-7B: 7.62B
    ],
)
def test_preset_parameter_counts_match_published(name, published, unit):
    model = build(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - published) <= unit / 2, f"{name}: {count:,} parameters vs published {published:,.0f}"


def test_tiny_presets_run():
    for name in ("tiny-qwen", "tiny-qwen2"):
        model = build(name).eval()
        ids, mask = padded_batch(model.config.vocab_size, [5, 3])
        assert model(ids, mask).shape == (2, 5, model.config.vocab_size)
