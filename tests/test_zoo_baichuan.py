"""Baichuan 2 (7B: RoPE, 13B: ALiBi; both NormHead and W_pack) and its max-z loss.

transformers has no Baichuan class, so the oracles are:

* 7B: an equivalence to a tested model. Baichuan-7B without NormHead *is* LLaMA with Q, K, V packed
  into one ``W_pack``: the checkpoint is built from a transformers ``LlamaForCausalLM`` by stacking
  its ``q_proj``/``k_proj``/``v_proj`` rows, written as a folder with a hand-written ``config.json`` and
  read by ``llmcore.models.from_pretrained``; the logits must equal LLaMA's. With NormHead, the oracle
  is the same LLaMA whose output rows were normalised one by one in a Python loop.
* 13B: a naive re-implementation written from the report and the ALiBi paper — float64, one loop per
  sequence, head and query, ``softmax_j(q_i·k_j/√d − m_h·(i − j))`` over the real keys ``j ≤ i``, with
  the slopes ``m_h`` of Baichuan's ``_get_interleave``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmcore import checkpoints
from llmcore.losses import max_z_loss
from llmcore.models import PRESETS, build, from_pretrained, save_pretrained
from llmcore.models.families.baichuan import config_from_hf
from zoo_helpers import assert_parity, padded_batch, randomize_

EQUIVALENCE = "transformers LlamaForCausalLM, W_pack split (equivalence)"
NORMHEAD_EQUIVALENCE = "LlamaForCausalLM with rows normalised by a loop"
NAIVE = "naive per-head, per-query ALiBi loop (float64)"


def baichuan_json(*, vocab: int, hidden: int, heads: int, layers: int, ffn: int, **extra) -> dict:
    """A config.json as Baichuan's repositories ship it (plus whatever a test adds)."""
    return {
        "architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "hidden_act": "silu",
        "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": ffn, "model_max_length": 64,
        "num_attention_heads": heads, "num_hidden_layers": layers, "pad_token_id": 0, "bos_token_id": 1,
        "eos_token_id": 2, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": vocab, **extra,
    }


def write_folder(path, config: dict, tensors: dict) -> None:
    checkpoints.save_state_dict(path, {name: t.contiguous() for name, t in tensors.items()})
    checkpoints.write_config(path, config)


# --------------------------------------------------------------------------------------------------
# 7B: equivalence to LLaMA
# --------------------------------------------------------------------------------------------------


def tiny_llama():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def packed_checkpoint(llama, order=("q", "k", "v")) -> dict:
    """LLaMA's tensors with each layer's Q, K, V rows stacked into Baichuan's ``W_pack`` (in ``order``)."""
    tensors = {}
    for name, tensor in llama.state_dict().items():
        if ".self_attn.q_proj." in name:
            prefix = name.removesuffix("q_proj.weight")
            tensors[f"{prefix}W_pack.weight"] = torch.cat([llama.state_dict()[f"{prefix}{p}_proj.weight"] for p in order])
        elif ".self_attn.k_proj." not in name and ".self_attn.v_proj." not in name:
            tensors[name] = tensor
    return tensors


def llama_json(llama, **extra) -> dict:
    c = llama.config
    return baichuan_json(
        vocab=c.vocab_size, hidden=c.hidden_size, heads=c.num_attention_heads, layers=c.num_hidden_layers,
        ffn=c.intermediate_size, max_position_embeddings=c.max_position_embeddings, **extra,
    )


def llama_logits(llama, *, left=False):
    ids, mask = padded_batch(llama.config.vocab_size, [11, 7, 9], left=left)
    with torch.no_grad():
        return ids, mask, llama(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("left", [False, True], ids=["right padding", "left padding"])
def test_baichuan_7b_without_normhead_equals_llama(tmp_path, left):
    llama = tiny_llama()
    # A tiny model is not 4096 wide, so the config names its position scheme (llmcore's explicit key).
    write_folder(tmp_path, llama_json(llama, position_embedding="rope"), packed_checkpoint(llama))
    ours = from_pretrained(tmp_path)
    assert ours.config.position == "rope" and not ours.config.norm_head
    ids, mask, expected = llama_logits(llama, left=left)
    with torch.no_grad():
        actual = ours(ids, attention_mask=mask)
    assert_parity(f"baichuan-7b, no NormHead ({'left' if left else 'right'} padding)", EQUIVALENCE, actual, expected, mask)


def normalise_rows_by_loop(weight: torch.Tensor) -> torch.Tensor:
    rows = []
    for row in weight.double():
        rows.append(row / math.sqrt(sum(float(x) ** 2 for x in row)))
    return torch.stack(rows).to(weight.dtype)


def test_baichuan2_7b_normhead_equals_llama_with_unit_rows(tmp_path):
    llama = tiny_llama()
    # Baichuan 2's configs carry z_loss_weight; that is how a released config turns NormHead on.
    write_folder(tmp_path, llama_json(llama, position_embedding="rope", z_loss_weight=0), packed_checkpoint(llama))
    ours = from_pretrained(tmp_path)
    assert ours.config.norm_head
    assert torch.equal(ours.lm_head.weight, llama.lm_head.weight), "the checkpoint's raw rows are kept; NormHead normalises on the fly"
    with torch.no_grad():
        llama.lm_head.weight.copy_(normalise_rows_by_loop(llama.lm_head.weight))
    ids, mask, expected = llama_logits(llama)
    with torch.no_grad():
        actual = ours(ids, attention_mask=mask)
    assert_parity("baichuan2-7b (NormHead)", NORMHEAD_EQUIVALENCE, actual, expected, mask)


def test_w_pack_split_in_the_wrong_order_is_caught(tmp_path):
    """The deliberate bug: a checkpoint whose W_pack rows are ``[k | q | v]`` read as ``[q | k | v]``."""
    llama = tiny_llama()
    write_folder(tmp_path, llama_json(llama, position_embedding="rope"), packed_checkpoint(llama, order=("k", "q", "v")))
    ids, mask, expected = llama_logits(llama)
    with torch.no_grad():
        actual = from_pretrained(tmp_path)(ids, attention_mask=mask)
    assert (actual - expected)[mask.bool()].abs().max() > 0.1 * expected.abs().max()


# --------------------------------------------------------------------------------------------------
# 13B: ALiBi against a naive loop
# --------------------------------------------------------------------------------------------------


def baichuan_slopes(n_heads: int) -> list[float]:
    """``_get_interleave`` of Baichuan-13B's modeling code (the ALiBi paper's reference slopes)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + baichuan_slopes(2 * closest)[0::2][: n_heads - closest]


def random_checkpoint(*, vocab: int, hidden: int, layers: int, ffn: int, seed: int = 0) -> dict:
    """Baichuan-named tensors drawn like zoo_helpers.randomize_: weights N(0, 0.2²), norm scales 1 + N(0, 0.2²)."""
    generator = torch.Generator().manual_seed(seed)

    def weight(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    tensors = {
        "model.embed_tokens.weight": weight(vocab, hidden),
        "model.norm.weight": 1 + weight(hidden),
        "lm_head.weight": weight(vocab, hidden),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": 1 + weight(hidden),
            p + "self_attn.W_pack.weight": weight(3 * hidden, hidden),
            p + "self_attn.o_proj.weight": weight(hidden, hidden),
            p + "post_attention_layernorm.weight": 1 + weight(hidden),
            p + "mlp.gate_proj.weight": weight(ffn, hidden),
            p + "mlp.up_proj.weight": weight(ffn, hidden),
            p + "mlp.down_proj.weight": weight(hidden, ffn),
        }
    return tensors


def naive_baichuan_13b(tensors: dict, ids: torch.Tensor, keep: torch.Tensor, *, n_heads: int, layers: int, eps: float) -> torch.Tensor:
    """Baichuan 2-13B's forward pass written out with loops, in float64: ``[B, L] → [B, L, V]``."""
    t = {name: tensor.double() for name, tensor in tensors.items()}
    batch, length = ids.shape
    hidden = t["model.embed_tokens.weight"].shape[1]
    head_dim = hidden // n_heads
    slopes = baichuan_slopes(n_heads)

    def rms_norm(x, weight):
        return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    x = t["model.embed_tokens.weight"][ids]
    for i in range(layers):
        p = f"model.layers.{i}."
        q, k, v = (rms_norm(x, t[p + "input_layernorm.weight"]) @ t[p + "self_attn.W_pack.weight"].T).split(hidden, -1)
        attended = torch.zeros_like(x)
        for b in range(batch):
            for h in range(n_heads):
                cols = slice(h * head_dim, (h + 1) * head_dim)
                for qi in range(length):
                    keys = [j for j in range(qi + 1) if keep[b, j]]
                    if not keep[b, qi]:
                        continue
                    scores = torch.stack(
                        [q[b, qi, cols] @ k[b, j, cols] / math.sqrt(head_dim) - slopes[h] * (qi - j) for j in keys]
                    )
                    weights = torch.softmax(scores, dim=0)
                    attended[b, qi, cols] = sum(w * v[b, j, cols] for w, j in zip(weights, keys))
        x = x + attended @ t[p + "self_attn.o_proj.weight"].T
        n = rms_norm(x, t[p + "post_attention_layernorm.weight"])
        gated = F.silu(n @ t[p + "mlp.gate_proj.weight"].T) * (n @ t[p + "mlp.up_proj.weight"].T)
        x = x + gated @ t[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, t["model.norm.weight"])
    return x @ normalise_rows_by_loop(t["lm_head.weight"]).T


TINY_13B = dict(vocab=80, layers=2, ffn=72)


def alibi_folder(path, n_heads: int, **extra):
    hidden = 8 * n_heads
    tensors = random_checkpoint(vocab=TINY_13B["vocab"], hidden=hidden, layers=TINY_13B["layers"], ffn=TINY_13B["ffn"])
    config = baichuan_json(hidden=hidden, heads=n_heads, **TINY_13B, z_loss_weight=0, **extra)
    write_folder(path, config, tensors)
    return tensors


@pytest.mark.parametrize("n_heads, left", [(4, False), (6, False), (6, True)], ids=["4 heads", "6 heads", "6 heads, left padding"])
def test_baichuan2_13b_alibi_matches_naive_loop(tmp_path, n_heads, left):
    # 8·n_heads wide, not 4096: the vLLM rule the converter falls back on picks ALiBi by itself.
    tensors = alibi_folder(tmp_path, n_heads)
    ours = from_pretrained(tmp_path)
    assert ours.config.position == "alibi" and ours.config.norm_head
    ids, mask = padded_batch(TINY_13B["vocab"], [11, 6, 9], left=left)
    expected = naive_baichuan_13b(tensors, ids, mask.bool(), n_heads=n_heads, layers=TINY_13B["layers"], eps=1e-6)
    with torch.no_grad():
        actual = ours(ids, attention_mask=mask)
    name = f"baichuan2-13b (ALiBi, {n_heads} heads{', left padding' if left else ''})"
    assert_parity(name, NAIVE, actual, expected, mask)


def test_alibi_checkpoint_read_with_rope_is_caught(tmp_path):
    """The deliberate bug: a 13B (ALiBi) checkpoint run with 7B's RoPE, as a wrong width rule would."""
    tensors = alibi_folder(tmp_path, 6, position_embedding="rope")
    ids, mask = padded_batch(TINY_13B["vocab"], [11, 9])
    expected = naive_baichuan_13b(tensors, ids, mask.bool(), n_heads=6, layers=TINY_13B["layers"], eps=1e-6)
    with torch.no_grad():
        actual = from_pretrained(tmp_path)(ids, attention_mask=mask).double()
    assert (actual - expected)[mask.bool()].abs().max() > 0.1 * expected.abs().max()


# --------------------------------------------------------------------------------------------------
# Converter: released configs, round trip, errors
# --------------------------------------------------------------------------------------------------

BAICHUAN2_7B_JSON = baichuan_json(
    vocab=125696, hidden=4096, heads=32, layers=32, ffn=11008, max_position_embeddings=4096, z_loss_weight=0
) | {"model_max_length": 4096, "torch_dtype": "bfloat16"}
BAICHUAN2_13B_JSON = baichuan_json(vocab=125696, hidden=5120, heads=40, layers=40, ffn=13696, z_loss_weight=0) | {
    "model_max_length": 4096, "torch_dtype": "bfloat16"
}


@pytest.mark.parametrize("name, hf", [("baichuan2-7b", BAICHUAN2_7B_JSON), ("baichuan2-13b", BAICHUAN2_13B_JSON)])
def test_released_configs_give_the_presets(name, hf):
    """The released config.json files name neither position scheme nor head; the fallback rules must recover both."""
    config = config_from_hf(checkpoints.normalise_config(hf))
    assert config.replace(n_kv_heads=None, head_dim=None) == PRESETS[name].config


def test_baichuan1_config_has_no_normhead():
    hf = baichuan_json(vocab=64000, hidden=4096, heads=32, layers=32, ffn=11008, max_position_embeddings=4096)
    config = config_from_hf(checkpoints.normalise_config(hf))
    assert config.position == "rope" and not config.norm_head


def test_save_pretrained_round_trip(tmp_path):
    tensors = alibi_folder(tmp_path / "in", 6)
    ours = from_pretrained(tmp_path / "in")
    save_pretrained(ours, tmp_path / "out")
    written = checkpoints.read_config(tmp_path / "out")
    assert written["model_type"] == "baichuan" and written["position_embedding"] == "alibi" and written["norm_head"]
    saved = checkpoints.load_state_dict(tmp_path / "out")
    assert set(saved) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(saved[name], tensor), name
    ids, mask = padded_batch(TINY_13B["vocab"], [7, 5])
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path / "out")(ids, mask), ours(ids, mask))


def test_a_misshapen_w_pack_is_named(tmp_path):
    tensors = random_checkpoint(vocab=80, hidden=48, layers=2, ffn=72)
    tensors["model.layers.1.self_attn.W_pack.weight"] = tensors["model.layers.1.self_attn.W_pack.weight"][:100]
    write_folder(tmp_path, baichuan_json(vocab=80, hidden=48, heads=6, layers=2, ffn=72), tensors)
    with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.W_pack\.weight"):
        from_pretrained(tmp_path)


def test_grouped_query_config_cannot_be_saved_as_baichuan(tmp_path):
    model = build("tiny-baichuan2-7b", n_kv_heads=2)
    with pytest.raises(ValueError, match="n_kv_heads"):
        save_pretrained(model, tmp_path, model_type="baichuan")


# --------------------------------------------------------------------------------------------------
# Presets and the max-z loss
# --------------------------------------------------------------------------------------------------

# Baichuan 2 report (Table 2 sizes, 125,696-token vocabulary); the models are named 7B and 13B there,
# and the released weights hold 7,505,973,248 and 13,896,668,160 parameters (7.51B, 13.9B).
PUBLISHED = {"baichuan2-7b": (7.51e9, 0.005e9), "baichuan2-13b": (13.9e9, 0.05e9)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts(name):
    published, rounding = PUBLISHED[name]
    count = sum(p.numel() for p in build(name, device="meta").parameters())
    assert PRESETS[name].published_parameters == published
    assert abs(count - published) <= rounding, f"{name}: {count:,} vs {published:,.0f}"


@pytest.mark.parametrize("name", ["tiny-baichuan2-7b", "tiny-baichuan2-13b"])
def test_tiny_presets_run(name):
    model = build(name).eval()
    ids, mask = padded_batch(model.config.vocab_size, [12, 5])
    with torch.no_grad():
        logits = model(ids, attention_mask=mask)
    assert logits.shape == (2, 12, model.config.vocab_size) and torch.isfinite(logits).all()


def test_max_z_loss_by_hand():
    logits = torch.tensor([[[1.0, 3.0, -2.0], [0.5, -4.0, 0.0]], [[-1.0, -2.0, -3.0], [2.0, 2.0, 1.0]]])
    # Row maxima 3, 0.5, -1, 2 → squares 9, 0.25, 1, 4 → mean 14.25 / 4 = 3.5625.
    assert max_z_loss(logits).item() == pytest.approx(2e-4 * 3.5625)
    assert max_z_loss(logits, weight=1.0).item() == pytest.approx(3.5625)
    # Only the first and last positions are real: (9 + 4) / 2 = 6.5.
    keep = torch.tensor([[1, 0], [0, 1]])
    assert max_z_loss(logits, weight=1.0, mask=keep).item() == pytest.approx(6.5)
    assert max_z_loss(logits, mask=torch.zeros(2, 2)).item() == 0.0


def test_max_z_loss_gradient_only_reaches_the_largest_logit():
    logits = torch.tensor([[1.0, 3.0, -2.0]], requires_grad=True)
    max_z_loss(logits, weight=1.0).backward()
    assert logits.grad.tolist() == [[0.0, 6.0, 0.0]]


def test_max_z_loss_half_precision_and_bad_mask():
    logits = torch.tensor([[300.0, 1.0]], dtype=torch.bfloat16)
    loss = max_z_loss(logits, weight=1.0)
    assert loss.dtype == torch.float32 and loss.item() == 90000.0
    with pytest.raises(ValueError, match="mask"):
        max_z_loss(logits, mask=torch.ones(2))
