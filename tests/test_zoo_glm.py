"""The GLM line: GLM-4 (HF ``glm``/``glm4``), ChatGLM-6B, GLM-130B's embedding gradient shrink, preset sizes.

Oracles:

* GLM-4 and GLM-4-0414: transformers ``GlmForCausalLM`` / ``Glm4ForCausalLM`` (eager) at random init.
* ChatGLM-6B has no transformers class (THUDM's remote code). Its oracle is :func:`naive_chatglm`
  below, written independently from the description of ``modeling_chatglm.py``: it reads the
  checkpoint tensors in their stored layout (per-head fused ``query_key_value``), runs one unpadded
  sequence at a time, loops over heads, rotates every (i, i + D/4) pair of each half-head with an
  explicit 2×2 rotation, builds the [gMASK] prefix mask with a loop, and spells out DeepNorm and the
  tanh GELU. llmcore is loaded from a hand-written ``config.json`` folder through ``from_pretrained``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore import checkpoints  # noqa: E402
from llmcore.embeddings import shrink_embedding_gradient  # noqa: E402
from llmcore.models import PRESETS, build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.models.families.glm import chatglm_position_ids, glm_from_hf, glm_to_hf  # noqa: E402
from llmcore.models.hub import architecture_for  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_, relative_error  # noqa: E402

GLM_ORACLE = "transformers GlmForCausalLM (eager)"
GLM4_ORACLE = "transformers Glm4ForCausalLM (eager)"
CHATGLM_ORACLE = "naive ChatGLM-6B (per-head loops)"


# ---------------------------------------------------------------------------------------------------
# GLM-4 / GLM-4-0414 against transformers
# ---------------------------------------------------------------------------------------------------


def tiny_hf_glm(sandwich: bool = False, **overrides):
    fields = dict(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-5, pad_token_id=0,
    )
    fields.update(overrides)
    config_class, model_class = (
        (transformers.Glm4Config, transformers.Glm4ForCausalLM) if sandwich else (transformers.GlmConfig, transformers.GlmForCausalLM)
    )
    torch.manual_seed(0)
    model = model_class(config_class(**fields)).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def compare(name, hf_model, ours=None, *, lengths=(11, 7, 9), left=False):
    oracle = GLM4_ORACLE if hf_model.config.model_type == "glm4" else GLM_ORACLE
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    ours = from_hf_model(hf_model) if ours is None else ours
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, attention_mask=mask)
    return assert_parity(name, oracle, actual, expected, mask)


GLM_CASES = [
    ("(GQA 4:2, half rotary)", {}),
    ("(MHA)", dict(num_key_value_heads=4)),
    ("(no Q/K/V bias)", dict(attention_bias=False)),
    ("(full rotary)", dict(partial_rotary_factor=1.0)),
    ("(quarter rotary, θ=500)", dict(rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.25})),
    ("(tied)", dict(tie_word_embeddings=True)),
]


@pytest.mark.parametrize("name, overrides", GLM_CASES, ids=[case[0] for case in GLM_CASES])
@pytest.mark.parametrize("sandwich", [False, True], ids=["glm", "glm4"])
def test_glm_logits_match_transformers(sandwich, name, overrides):
    compare(f"{'glm4' if sandwich else 'glm'} {name}", tiny_hf_glm(sandwich, **overrides))


@pytest.mark.parametrize("sandwich", [False, True], ids=["glm", "glm4"])
def test_glm_left_padding_matches_transformers(sandwich):
    compare(f"{'glm4' if sandwich else 'glm'} (left padding)", tiny_hf_glm(sandwich), left=True)


def test_glm4_sandwich_norms_are_loaded_in_the_right_places():
    hf = tiny_hf_glm(sandwich=True)
    ours = from_hf_model(hf)
    layer = hf.model.layers[1]
    assert torch.equal(ours.layers[1].self_attn_out_norm.weight, layer.post_self_attn_layernorm.weight)
    assert torch.equal(ours.layers[1].ffn_out_norm.weight, layer.post_mlp_layernorm.weight)
    assert torch.equal(ours.layers[1].ffn_norm.weight, layer.post_attention_layernorm.weight)
    assert ours.layers[1].ffn.gate_proj.weight.shape == (hf.config.intermediate_size, hf.config.hidden_size)


def _use_half_split_rope(model) -> None:
    """The deliberate bug: pair dims (i, i + r/2) instead of GLM's (2i, 2i + 1)."""
    model.positions.rotary.interleaved = False
    for layer in model.layers:
        layer.self_attn.rotary_interleaved = False


@pytest.mark.parametrize("sandwich", [False, True], ids=["glm", "glm4"])
def test_a_half_split_rope_layout_is_caught(sandwich):
    hf = tiny_hf_glm(sandwich)
    ids, mask = padded_batch(hf.config.vocab_size, [12, 12])
    ours = from_hf_model(hf)
    _use_half_split_rope(ours)
    with torch.no_grad():
        error = relative_error(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).logits, mask)
    assert error > 1e-2


def test_missing_sandwich_norms_are_caught():
    hf = tiny_hf_glm(sandwich=True)
    ids, mask = padded_batch(hf.config.vocab_size, [12, 9])
    ours = from_hf_model(hf)
    for layer in ours.layers:
        layer.self_attn_out_norm = torch.nn.Identity()
    with torch.no_grad():
        error = relative_error(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).logits, mask)
    assert error > 1e-2


def test_gate_up_split_and_fuse_are_inverse():
    config = PRESETS["tiny-glm"].config
    fused = torch.randn(2 * config.intermediate_size, config.hidden_size)
    split = glm_from_hf({"model.layers.0.mlp.gate_up_proj.weight": fused}, config)
    assert torch.equal(split["model.layers.0.mlp.gate_proj.weight"], fused[: config.intermediate_size])
    assert torch.equal(glm_to_hf(split, config)["model.layers.0.mlp.gate_up_proj.weight"], fused)
    with pytest.raises(ValueError, match="gate_up_proj"):
        glm_from_hf({"model.layers.0.mlp.gate_up_proj.weight": fused[1:]}, config)


@pytest.mark.parametrize("sandwich", [False, True], ids=["glm", "glm4"])
def test_glm_save_pretrained_is_read_back_by_transformers(tmp_path, sandwich):
    hf = tiny_hf_glm(sandwich, partial_rotary_factor=0.25)
    ours = from_hf_model(hf)
    save_pretrained(ours, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["rope_parameters"]["partial_rotary_factor"] == 0.25
    model_class = transformers.Glm4ForCausalLM if sandwich else transformers.GlmForCausalLM
    reloaded = model_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    compare(f"{'glm4' if sandwich else 'glm'} (save_pretrained → transformers)", reloaded, ours)


def test_glm_config_to_hf_refuses_what_glm_cannot_express():
    architecture = architecture_for("glm")
    with pytest.raises(ValueError, match="ModelConfig.mlp_bias"):
        architecture.config_to_hf(PRESETS["tiny-glm"].config.replace(mlp_bias=True))
    with pytest.raises(ValueError, match="ModelConfig.sandwich_norm"):
        architecture.config_to_hf(PRESETS["tiny-glm4"].config)


# ---------------------------------------------------------------------------------------------------
# ChatGLM-6B against a naive oracle
# ---------------------------------------------------------------------------------------------------

TOKENS = dict(mask_token_id=90, gmask_token_id=91, bos_token_id=92, eos_token_id=93)


def chatglm_config_json(**overrides) -> dict:
    """A ChatGLM-6B config.json as THUDM wrote it, shrunk."""
    config = {
        "architectures": ["ChatGLMModel"],
        "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig"},
        "model_type": "chatglm",
        "vocab_size": 96,
        "hidden_size": 64,
        "num_layers": 2,
        "num_attention_heads": 4,
        "inner_hidden_size": 128,
        "layernorm_epsilon": 1e-5,
        "max_sequence_length": 64,
        "position_encoding_2d": True,
        "pad_token_id": 3,
        "quantization_bit": 0,
        "pre_seq_len": None,
        "prefix_projection": False,
        "use_cache": True,
        "torch_dtype": "float32",
        **TOKENS,
    }
    config.update(overrides)
    return config


def random_chatglm_state_dict(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Checkpoint tensors in ChatGLM-6B's names and layout, weights ~ N(0, 0.2), LayerNorm scales ~ 1 + N(0, 0.2)."""
    generator = torch.Generator().manual_seed(seed)
    d, ffn, vocab = config["hidden_size"], config["inner_hidden_size"], config["vocab_size"]

    def weight(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    def scale(n):
        return 1.0 + torch.randn(n, generator=generator) * 0.2

    state = {"transformer.word_embeddings.weight": weight(vocab, d), "lm_head.weight": weight(vocab, d)}
    for i in range(config["num_layers"]):
        p = f"transformer.layers.{i}."
        state |= {
            p + "input_layernorm.weight": scale(d), p + "input_layernorm.bias": weight(d),
            p + "attention.query_key_value.weight": weight(3 * d, d), p + "attention.query_key_value.bias": weight(3 * d),
            p + "attention.dense.weight": weight(d, d), p + "attention.dense.bias": weight(d),
            p + "post_attention_layernorm.weight": scale(d), p + "post_attention_layernorm.bias": weight(d),
            p + "mlp.dense_h_to_4h.weight": weight(ffn, d), p + "mlp.dense_h_to_4h.bias": weight(ffn),
            p + "mlp.dense_4h_to_h.weight": weight(d, ffn), p + "mlp.dense_4h_to_h.bias": weight(d),
            # ChatGLM-6B saves its RoPE frequencies as a persistent buffer of each layer.
            p + "attention.rotary_emb.inv_freq": torch.ones(d // config["num_attention_heads"] // 4),
        }
    state |= {"transformer.final_layernorm.weight": scale(d), "transformer.final_layernorm.bias": weight(d)}
    return state


def write_chatglm_folder(path, config: dict, state: dict) -> None:
    checkpoints.save_state_dict(path, state)
    (path / "config.json").write_text(json.dumps(config))


def naive_chatglm(state: dict, config: dict, tokens: list[int], positions: list[int], blocks: list[int], context: int):
    """ChatGLM-6B on one unpadded sequence, float64, written from modeling_chatglm.py's description."""
    s = {name: tensor.double() for name, tensor in state.items()}
    d, heads, layers = config["hidden_size"], config["num_attention_heads"], config["num_layers"]
    head_dim, eps = d // heads, config["layernorm_epsilon"]
    alpha = math.sqrt(2 * layers)
    length = len(tokens)

    def layer_norm(x, name):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * s[name + ".weight"] + s[name + ".bias"]

    def rotate(vector, position):
        # One half-head of n dims: pair (i, i + n/2) turns by position · 10000^(−2i/n).
        n = vector.shape[0]
        out = vector.clone()
        for i in range(n // 2):
            angle = position * 10000.0 ** (-2 * i / n)
            c, s_ = math.cos(angle), math.sin(angle)
            x, y = vector[i], vector[i + n // 2]
            out[i], out[i + n // 2] = c * x - s_ * y, s_ * x + c * y
        return out

    def gelu_tanh(x):
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)))

    allowed = torch.zeros(length, length, dtype=torch.bool)
    for q in range(length):
        for k in range(length):
            allowed[q, k] = k < context or k <= q

    h = s["transformer.word_embeddings.weight"][tokens]
    for i in range(layers):
        p = f"transformer.layers.{i}."
        n = layer_norm(h, p + "input_layernorm")
        qkv = n @ s[p + "attention.query_key_value.weight"].T + s[p + "attention.query_key_value.bias"]
        qkv = qkv.view(length, heads, 3 * head_dim)
        outputs = []
        for head in range(heads):
            q, k, v = qkv[:, head, :head_dim], qkv[:, head, head_dim : 2 * head_dim], qkv[:, head, 2 * head_dim :]
            half = head_dim // 2
            q = torch.stack([torch.cat((rotate(q[t, :half], positions[t]), rotate(q[t, half:], blocks[t]))) for t in range(length)])
            k = torch.stack([torch.cat((rotate(k[t, :half], positions[t]), rotate(k[t, half:], blocks[t]))) for t in range(length)])
            scores = (q @ k.T) / math.sqrt(head_dim)
            scores = scores.masked_fill(~allowed, float("-inf"))
            outputs.append(torch.softmax(scores, dim=-1) @ v)
        attention = torch.cat(outputs, dim=-1) @ s[p + "attention.dense.weight"].T + s[p + "attention.dense.bias"]
        h = alpha * n + attention
        m = layer_norm(h, p + "post_attention_layernorm")
        hidden = gelu_tanh(m @ s[p + "mlp.dense_h_to_4h.weight"].T + s[p + "mlp.dense_h_to_4h.bias"])
        h = alpha * m + hidden @ s[p + "mlp.dense_4h_to_h.weight"].T + s[p + "mlp.dense_4h_to_h.bias"]
    return layer_norm(h, "transformer.final_layernorm") @ s["lm_head.weight"].T


def chatglm_batch(config: dict, contexts=(5, 3, 7), answers=(4, 5, 2), seed: int = 1):
    """Left-padded prompts ``… [gMASK] <sop> answer…`` as ChatGLM-6B's tokenizer lays them out."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for context, answer in zip(contexts, answers):
        text = torch.randint(4, 80, (context - 1,), generator=generator).tolist()
        rows.append(text + [TOKENS["gmask_token_id"], TOKENS["bos_token_id"]] + torch.randint(4, 80, (answer,), generator=generator).tolist())
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), config["pad_token_id"])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    return ids, mask


def run_chatglm_oracle(state, config, ids, mask):
    """Oracle logits on every real token of a left-padded batch (zeros on padding)."""
    expected = torch.zeros(*ids.shape, config["vocab_size"], dtype=torch.float64)
    for r in range(ids.shape[0]):
        real = mask[r].bool()
        tokens = ids[r, real].tolist()
        context = tokens.index(TOKENS["bos_token_id"])
        mask_position = tokens.index(TOKENS["gmask_token_id"])
        positions = [t if t < context else mask_position for t in range(len(tokens))]
        blocks = [0 if t < context else t - context + 1 for t in range(len(tokens))]
        expected[r, real] = naive_chatglm(state, config, tokens, positions, blocks, context)
    return expected


def chatglm_forward(model, ids, mask):
    positions, blocks, prefix = chatglm_position_ids(ids, mask, **{k: v for k, v in TOKENS.items() if k != "eos_token_id"})
    return model(ids, mask, positions, block_position_ids=blocks, prefix_lengths=prefix)


@pytest.fixture(scope="module")
def chatglm_folder(tmp_path_factory):
    config = chatglm_config_json()
    state = random_chatglm_state_dict(config)
    path = tmp_path_factory.mktemp("chatglm")
    write_chatglm_folder(path, config, state)
    return path, config, state


def test_chatglm_matches_the_naive_oracle(chatglm_folder):
    path, config, state = chatglm_folder
    model = from_pretrained(path)
    assert model.config.position_2d and model.config.block == "deepnorm"
    assert model.config.residual_alpha == pytest.approx(2.0)
    ids, mask = chatglm_batch(config)
    with torch.no_grad():
        actual = chatglm_forward(model, ids, mask)
    assert_parity("chatglm-6b (2-D RoPE, [gMASK])", CHATGLM_ORACLE, actual, run_chatglm_oracle(state, config, ids, mask), mask)


def test_chatglm_deliberate_bugs_are_caught(chatglm_folder):
    path, config, state = chatglm_folder
    model = from_pretrained(path)
    ids, mask = chatglm_batch(config)
    expected = run_chatglm_oracle(state, config, ids, mask)
    positions, blocks, prefix = chatglm_position_ids(ids, mask, **{k: v for k, v in TOKENS.items() if k != "eos_token_id"})
    with torch.no_grad():
        causal_only = model(ids, mask, positions, block_position_ids=blocks)
        one_stream = model(ids, mask, positions, prefix_lengths=prefix)
    assert relative_error(causal_only, expected.float(), mask) > 1e-2
    assert relative_error(one_stream, expected.float(), mask) > 1e-2

    # Q, K, V split in GPT-2's [q | k | v] order instead of per head: right shapes, wrong model.
    gpt2_order = dict(model.state_dict())
    for i in range(config["num_layers"]):
        q, k, v = state[f"transformer.layers.{i}.attention.query_key_value.weight"].chunk(3)
        gpt2_order |= {f"layers.{i}.self_attn.q_proj.weight": q, f"layers.{i}.self_attn.k_proj.weight": k, f"layers.{i}.self_attn.v_proj.weight": v}
    model.load_state_dict(gpt2_order)
    with torch.no_grad():
        assert relative_error(chatglm_forward(model, ids, mask), expected.float(), mask) > 1e-2


def test_chatglm_position_ids_follow_the_gmask_layout():
    g, sop, pad = TOKENS["gmask_token_id"], TOKENS["bos_token_id"], 3
    ids = torch.tensor([[pad, pad, 10, 11, g, sop, 12, 13], [10, 11, 12, 13, g, sop, 14, 15]])
    mask = (ids != pad).long()
    positions, blocks, prefix = chatglm_position_ids(ids, mask, gmask_token_id=g, bos_token_id=sop)
    assert positions.tolist() == [[0, 0, 0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 4, 4, 4, 4]]
    assert blocks.tolist() == [[0, 0, 0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 1, 2, 3]]
    assert prefix.tolist() == [5, 5]
    with pytest.raises(ValueError, match="row 0 has no <sop>"):
        chatglm_position_ids(torch.tensor([[10, g, 11]]), gmask_token_id=g, bos_token_id=sop)


def test_chatglm_save_pretrained_round_trip(chatglm_folder, tmp_path):
    path, config, state = chatglm_folder
    model = from_pretrained(path)
    save_pretrained(model, tmp_path)
    written = checkpoints.load_state_dict(tmp_path)
    fused = "transformer.layers.1.attention.query_key_value.weight"
    assert torch.equal(written[fused], state[fused])
    assert json.loads((tmp_path / "config.json").read_text())["gmask_token_id"] == TOKENS["gmask_token_id"]
    ids, mask = chatglm_batch(config)
    with torch.no_grad():
        assert torch.equal(chatglm_forward(from_pretrained(tmp_path), ids, mask), chatglm_forward(model, ids, mask))


def test_chatglm2_and_quantised_configs_are_refused(tmp_path):
    chatglm2 = chatglm_config_json(padded_vocab_size=96, multi_query_attention=True, ffn_hidden_size=128)
    with pytest.raises(ValueError, match="padded_vocab_size"):
        architecture_for("chatglm").config_from_hf(chatglm2)
    with pytest.raises(ValueError, match="quantization_bit=4"):
        architecture_for("chatglm").config_from_hf(chatglm_config_json(quantization_bit=4))


def test_chatglm_missing_tensor_is_named(tmp_path):
    config = chatglm_config_json()
    state = random_chatglm_state_dict(config)
    del state["transformer.layers.1.mlp.dense_4h_to_h.bias"]
    write_chatglm_folder(tmp_path, config, state)
    with pytest.raises(ValueError, match=r"layers\.1\.ffn\.down_proj\.bias"):
        from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------
# 2-D RoPE and the embedding gradient shrink in the shared core
# ---------------------------------------------------------------------------------------------------


def test_2d_rope_logits_depend_only_on_relative_positions():
    model = randomize_(build("tiny-chatglm")).eval()
    ids = torch.randint(0, 256, (1, 9))
    positions = torch.tensor([[0, 1, 2, 3, 4, 4, 4, 4, 4]])
    blocks = torch.tensor([[0, 0, 0, 0, 0, 1, 2, 3, 4]])
    with torch.no_grad():
        base = model(ids, position_ids=positions, block_position_ids=blocks, prefix_lengths=5)
        shifted = model(ids, position_ids=positions + 7, block_position_ids=blocks + 3, prefix_lengths=5)
        moved_span = model(ids, position_ids=positions, block_position_ids=blocks + torch.tensor([[0] * 5 + [1] * 4]), prefix_lengths=5)
    assert relative_error(shifted, base) < 1e-5
    assert relative_error(moved_span, base) > 1e-3


def test_block_position_ids_are_refused_by_one_stream_models():
    model = build("tiny-glm")
    ids = torch.randint(0, 256, (1, 4))
    with pytest.raises(ValueError, match="position_2d"):
        model(ids, block_position_ids=torch.zeros_like(ids))


def test_shrink_embedding_gradient_keeps_the_forward_and_scales_the_gradient():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 5, dtype=torch.float64)
    y = shrink_embedding_gradient(x, 0.1)
    assert torch.allclose(y, x, rtol=1e-15, atol=0.0)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, 0.1 * weights)
    with pytest.raises(ValueError, match="alpha"):
        shrink_embedding_gradient(x, 0.0)


def test_embedding_grad_shrink_scales_only_the_embedding_table_gradient():
    ids = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(0))

    def gradients(shrink):
        model = build("tiny-chatglm", embedding_grad_shrink=shrink)
        randomize_(model)
        logits = model(ids)
        logits.square().mean().backward()
        return logits.detach(), model.embeddings.embed_tokens.weight.grad, model.layers[0].self_attn.q_proj.weight.grad

    plain_logits, plain_table, plain_q = gradients(None)
    shrunk_logits, shrunk_table, shrunk_q = gradients(0.1)
    assert relative_error(shrunk_logits, plain_logits) < 1e-5
    # The forward differs by rounding only (h·α + h·(1−α)), which the backward carries along.
    assert relative_error(shrunk_table, 0.1 * plain_table) < 1e-4
    assert relative_error(shrunk_q, plain_q) < 1e-4
    assert build("glm-130b", device="meta").config.embedding_grad_shrink == 0.1


# ---------------------------------------------------------------------------------------------------
# Published sizes
# ---------------------------------------------------------------------------------------------------


def count(name: str) -> int:
    return sum(p.numel() for p in build(name, device="meta").parameters())


@pytest.mark.parametrize(
    "name, tolerance",
    [
        # THUDM/glm-4-9b-chat-hf: 9.40B (model card "9B", safetensors 9.4B).
        ("glm-4-9b", 0.005),
        # GLM-4-9B-0414: the same sizes plus two sandwich norms per layer.
        ("glm-4-9b-0414", 0.005),
        # GLM-4-32B-0414 model card: "32 billion parameters"; the config gives 32.57B.
        ("glm-4-32b-0414", 0.02),
        # GLM paper: "GLM-10B"; 48 layers × 4096, vocab 50,304, 1,025 positions × 2 tables = 9.88B.
        ("glm-10b", 0.02),
        # GLM-130B paper: "130 billion parameters"; 70 × 1.812B + 1.85B tied embedding = 128.7B.
        ("glm-130b", 0.02),
    ],
)
def test_preset_parameter_counts(name, tolerance):
    published = PRESETS[name].published_parameters
    assert count(name) == pytest.approx(published, rel=tolerance)


def test_chatglm_6b_is_6_2b_counting_the_embedding_once():
    """THUDM's README: "62 亿参数" (6.2B). The checkpoint holds 6.71B because the output matrix
    (130,528 × 4096 = 0.53B) is stored apart from the input embedding; 6.71B − 0.53B = 6.17B."""
    model = build("chatglm-6b", device="meta")
    total = sum(p.numel() for p in model.parameters())
    assert total == pytest.approx(6.708e9, rel=1e-3)
    assert total - model.lm_head.weight.numel() == pytest.approx(6.2e9, rel=0.01)
