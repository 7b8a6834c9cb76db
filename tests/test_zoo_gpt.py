"""GPT-1, GPT-2 and GPT-3 (sparse) against independent oracles.

* GPT-1 and GPT-2: transformers' ``OpenAIGPTLMHeadModel`` / ``GPT2LMHeadModel`` (eager) at random init.
* GPT-3 has no released weights and no transformers class. Its oracle is :func:`naive_gpt2_logits`, a
  per-head, per-query loop over the transformers GPT-2 tensors in their Conv1D layout, in float64,
  whose sparse patterns are written out as index rules from the Sparse Transformer paper (Child et al.,
  2019, §4.2) — it shares no code with ``llmcore.masks`` or the llmcore stack. The oracle is itself
  checked against transformers GPT-2 with the dense pattern, and the sparse model is checked to *be*
  transformers GPT-2 when its band is wider than the sequence.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.models import CausalLM, build, from_hf_model, from_pretrained, preset_config, save_pretrained  # noqa: E402
from llmcore.models.families.gpt import (  # noqa: E402
    GPT2_PAPER_PARAMETERS,
    alternating_layer_kinds,
    conv1d_from_hf,
    gpt2_config_to_hf,
)
from llmcore.models.hub import architecture_for, from_hf_state_dict, load_converted  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_, relative_error  # noqa: E402

GPT1_ORACLE = "transformers OpenAIGPTLMHeadModel"
GPT2_ORACLE = "transformers GPT2LMHeadModel (eager)"
NAIVE_ORACLE = "naive per-head loop (Child et al. rules)"


def _finish(model):
    model.config._attn_implementation = "eager"
    return randomize_(model.eval())


def tiny_hf_gpt1(**overrides):
    fields = dict(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32)
    torch.manual_seed(0)
    return _finish(transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**{**fields, **overrides})))


def tiny_hf_gpt2(**overrides):
    fields = dict(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return _finish(transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**fields, **overrides})))


def compare(name, oracle, hf_model, ours=None, *, lengths=(11, 7, 9), left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    ours = from_hf_model(hf_model) if ours is None else ours
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, attention_mask=mask)
    return assert_parity(name, oracle, actual, expected, mask)


# --- GPT-1 and GPT-2 against transformers -------------------------------------------------------


@pytest.mark.parametrize(
    "name, overrides",
    [("gpt-1", {}), ("gpt-1 (relu, untied)", dict(afn="relu", tie_word_embeddings=False))],
)
def test_gpt1_logits_match_transformers(name, overrides):
    compare(name, GPT1_ORACLE, tiny_hf_gpt1(**overrides))


def test_gpt1_left_padding_matches_transformers():
    compare("gpt-1 (left padding)", GPT1_ORACLE, tiny_hf_gpt1(), left=True)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("gpt-2", {}),
        ("gpt-2 (n_inner, gelu, untied)", dict(n_inner=80, activation_function="gelu", tie_word_embeddings=False)),
        ("gpt-2 (unscaled scores)", dict(scale_attn_weights=False)),
    ],
)
def test_gpt2_logits_match_transformers(name, overrides):
    compare(name, GPT2_ORACLE, tiny_hf_gpt2(**overrides))


def test_gpt2_left_padding_matches_transformers():
    compare("gpt-2 (left padding)", GPT2_ORACLE, tiny_hf_gpt2(), left=True)


def test_gpt_layouts_are_what_the_docstrings_say():
    gpt1, gpt2 = from_hf_model(tiny_hf_gpt1()).config, from_hf_model(tiny_hf_gpt2()).config
    assert (gpt1.block, gpt1.final_norm, gpt1.activation) == ("post", False, "gelu_new")
    assert (gpt2.block, gpt2.final_norm, gpt2.position) == ("pre", True, "learned")
    assert gpt1.tie_word_embeddings and gpt2.tie_word_embeddings


def _forgot_conv1d_transpose(state_dict, config):
    """A buggy converter: splits c_attn correctly but keeps every matrix in Conv1D's [in, out] layout."""
    return {name: tensor.t() if tensor.dim() == 2 and ".h." in name else tensor
            for name, tensor in conv1d_from_hf(state_dict, config).items()}


@pytest.mark.parametrize("make", [tiny_hf_gpt1, tiny_hf_gpt2], ids=["gpt-1", "gpt-2"])
def test_a_forgotten_conv1d_transpose_is_caught(make):
    hf = make(n_inner=64) if make is tiny_hf_gpt2 else make()
    architecture = architecture_for(hf.config.model_type)
    buggy = dataclasses.replace(architecture, from_hf_tensors=_forgot_conv1d_transpose)
    ours = from_hf_model(hf)
    state = {name: tensor.detach() for name, tensor in hf.state_dict().items()}
    if make is tiny_hf_gpt2:
        # n_inner = d makes every matrix square, so shapes cannot give the bug away: only logits can.
        wrong = CausalLM(ours.config)
        load_converted(wrong, from_hf_state_dict(buggy, state, ours.config), "buggy")
        ids, mask = padded_batch(hf.config.vocab_size, [10, 10])
        with torch.no_grad():
            assert relative_error(wrong.eval()(ids, mask), hf(input_ids=ids, attention_mask=mask).logits) > 0.1
    else:
        # With a 4·d MLP the untransposed c_fc is [d, 4d] instead of [4d, d]: the loader names it.
        with pytest.raises(ValueError, match=r"layers\.0\.ffn\.up_proj\.weight: checkpoint \(64, 256\)"):
            load_converted(CausalLM(ours.config), from_hf_state_dict(buggy, state, ours.config), "buggy")


def test_a_c_attn_in_linear_layout_is_refused_naming_the_tensor():
    hf = tiny_hf_gpt2()
    state = {name: tensor.detach() for name, tensor in hf.state_dict().items()}
    state["transformer.h.1.attn.c_attn.weight"] = state["transformer.h.1.attn.c_attn.weight"].t()
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.attn\.c_attn\.weight"):
        conv1d_from_hf(state, from_hf_model(hf).config)


def test_original_gpt2_checkpoint_layout_loads():
    """OpenAI's released files: no ``transformer.`` prefix, causal-mask buffers saved, no lm_head."""
    hf = tiny_hf_gpt2()
    ours = from_hf_model(hf)
    state = {name.removeprefix("transformer."): tensor.detach() for name, tensor in hf.state_dict().items()}
    del state["lm_head.weight"]
    for i in range(hf.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    loaded = CausalLM(ours.config)
    load_converted(loaded, from_hf_state_dict(architecture_for("gpt2"), state, ours.config), "original layout")
    compare("gpt-2 (original file layout)", GPT2_ORACLE, hf, loaded.eval())


@pytest.mark.parametrize("make", [tiny_hf_gpt1, tiny_hf_gpt2], ids=["gpt-1", "gpt-2"])
def test_save_pretrained_is_read_back_by_transformers_and_llmcore(make, tmp_path):
    hf = make()
    ours = from_hf_model(hf)
    save_pretrained(ours, tmp_path)
    reread = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    reread.config._attn_implementation = "eager"
    ids, mask = padded_batch(hf.config.vocab_size, [9, 6])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        assert relative_error(reread(input_ids=ids, attention_mask=mask).logits, expected, mask) < 1e-6
        assert relative_error(from_pretrained(tmp_path)(ids, mask), expected, mask) < 1e-5


def test_unsupported_gpt2_options_are_refused():
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf_model(tiny_hf_gpt2(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(ValueError, match="layer_kinds"):
        gpt2_config_to_hf(preset_config("tiny-gpt3-sparse"))


# --- parameter counts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, tolerance",
    [
        ("gpt1", 0.5e6),  # 116.53M; "117M" in the GPT-2 paper, Table 2
        ("gpt2-small", 0.5e6),  # 124.44M; released weights (openai/gpt-2 README, HF model card)
        ("gpt2-medium", 0.5e6),  # 354.82M
        ("gpt2-large", 0.5e6),  # 774.03M
        ("gpt2-xl", 0.5e6),  # 1557.61M
        # GPT-3 paper Table 2.1: the names are rounded (Medium computes to 355.9M, 2.7B to 2.65B).
        ("gpt3-small", 0.02), ("gpt3-medium", 0.02), ("gpt3-large", 0.02), ("gpt3-xl", 0.02),
        ("gpt3-2.7b", 0.02), ("gpt3-6.7b", 0.02), ("gpt3-13b", 0.02), ("gpt3-175b", 0.02),
    ],
)
def test_parameter_counts_match_the_published_figures(name, tolerance):
    from llmcore.models import PRESETS

    published = PRESETS[name].published_parameters
    count = sum(p.numel() for p in build(name, device="meta").parameters())
    allowed = tolerance if tolerance >= 1 else tolerance * published
    assert abs(count - published) <= allowed, f"{name}: {count:,} vs published {published:,.0f}"


@pytest.mark.parametrize("name", sorted(GPT2_PAPER_PARAMETERS))
def test_gpt2_paper_counts_are_the_same_networks_with_gpt1_vocabulary(name):
    """GPT-2 paper Table 2 (117M/345M/762M/1542M) = the released networks with 40,478 tokens instead of 50,257."""
    count = sum(p.numel() for p in build(name, device="meta", vocab_size=40478).parameters())
    assert abs(count - GPT2_PAPER_PARAMETERS[name]) <= 0.5e6, f"{name}: {count:,}"


# --- GPT-3: alternating dense and banded sparse layers ------------------------------------------


def may_attend(kind: str, block: int, q: int, kv: int) -> bool:
    """Whether query ``q`` sees key ``kv`` in one layer (Sparse Transformer §4.2, one merged head).

    strided: the previous ``block`` positions, plus every ``block``-th one before them.
    fixed: the query's own block of ``block`` positions, plus the last position of every block.
    """
    if kv > q:
        return False
    if kind == "full":
        return True
    if kind == "strided":
        return q - kv < block or (q - kv) % block == 0
    if kind == "fixed":
        return kv // block == q // block or kv % block == block - 1
    raise ValueError(kind)


def naive_gpt2_logits(hf_state, *, n_heads, eps, kinds, block, ids, keep):
    """GPT-2's forward pass one sequence, one head and one query at a time, in float64.

    ``hf_state``: transformers GPT-2 tensors (Conv1D: ``y = x @ W + b``). Returns ``[B, L, vocab]``.
    """
    w = {name: tensor.detach().double() for name, tensor in hf_state.items()}

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]

    def conv1d(x, prefix):
        return x @ w[prefix + ".weight"] + w[prefix + ".bias"]

    def gelu_new(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    batch, length = ids.shape
    d = w["transformer.wte.weight"].shape[1]
    head_dim = d // n_heads
    logits = []
    for b in range(batch):
        x = w["transformer.wte.weight"][ids[b]] + w["transformer.wpe.weight"][:length]
        for layer, kind in enumerate(kinds):
            p = f"transformer.h.{layer}"
            q, k, v = conv1d(layer_norm(x, f"{p}.ln_1"), f"{p}.attn.c_attn").split(d, dim=-1)
            heads = torch.zeros(length, d, dtype=torch.float64)
            for h in range(n_heads):
                cols = slice(h * head_dim, (h + 1) * head_dim)
                for i in range(length):
                    keys = [j for j in range(length) if keep[b, j] and may_attend(kind, block, i, j)]
                    if not keys:
                        continue
                    scores = torch.stack([q[i, cols] @ k[j, cols] for j in keys]) / math.sqrt(head_dim)
                    weights = torch.softmax(scores, dim=0)
                    heads[i, cols] = sum(weight * v[j, cols] for weight, j in zip(weights, keys))
            x = x + conv1d(heads, f"{p}.attn.c_proj")
            x = x + conv1d(gelu_new(conv1d(layer_norm(x, f"{p}.ln_2"), f"{p}.mlp.c_fc")), f"{p}.mlp.c_proj")
        logits.append(layer_norm(x, "transformer.ln_f") @ w["transformer.wte.weight"].T)
    return torch.stack(logits)


def sparse_pair(kind="strided", **overrides):
    """The tiny-gpt3-sparse preset and a transformers GPT-2 of the same sizes, sharing random weights."""
    config = preset_config("tiny-gpt3-sparse", **overrides)
    if kind != "strided":
        config = config.replace(layer_kinds=alternating_layer_kinds(config.n_layers, kind))
    dense = config.replace(layer_kinds=None, sparse_block=None)
    hf = tiny_hf_gpt2(**{**gpt2_config_to_hf(dense), "bos_token_id": 0, "eos_token_id": 0})
    ours = CausalLM(config)
    state = {name: tensor.detach() for name, tensor in hf.state_dict().items()}
    load_converted(ours, from_hf_state_dict(architecture_for("gpt2"), state, config), "tiny-gpt3-sparse")
    return ours.eval(), hf, state


def run_oracle(ours, state, ids, mask):
    config = ours.config
    return naive_gpt2_logits(
        state, n_heads=config.n_heads, eps=config.norm_eps, kinds=config.resolved_layer_kinds,
        block=config.sparse_block or 1, ids=ids, keep=mask.bool(),
    )


def test_naive_oracle_matches_transformers_gpt2_when_dense():
    ours, hf, state = sparse_pair()
    ids, mask = padded_batch(hf.config.vocab_size, [13, 8])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
    config = ours.config
    naive = naive_gpt2_logits(
        state, n_heads=config.n_heads, eps=config.norm_eps, kinds=("full",) * config.n_layers, block=1,
        ids=ids, keep=mask.bool(),
    )
    assert_parity("naive GPT-2 oracle (dense)", GPT2_ORACLE, naive, expected.double(), mask)


@pytest.mark.parametrize("kind", ["strided", "fixed"])
def test_gpt3_sparse_matches_the_naive_oracle_beyond_the_block(kind):
    ours, _, state = sparse_pair(kind)
    assert ours.config.sparse_block == 4
    ids, mask = padded_batch(ours.config.vocab_size, [14, 9, 6])
    with torch.no_grad():
        actual = ours(ids, mask)
    expected = run_oracle(ours, state, ids, mask)
    assert_parity(f"gpt-3 sparse ({kind})", NAIVE_ORACLE, actual, expected, mask)


@pytest.mark.parametrize("kind", ["strided", "fixed"])
def test_gpt3_sparse_left_padded_rows_match_the_oracle_on_each_row_alone(kind):
    """Left padding with positions counted from the first real token (as generation does) must not
    move the fixed pattern's blocks: each row equals the naive oracle run on that row alone."""
    ours, _, state = sparse_pair(kind)
    ids, mask = padded_batch(ours.config.vocab_size, [14, 9, 6], left=True)
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    with torch.no_grad():
        actual = ours(ids, mask, positions)
    for row, length in enumerate(mask.sum(dim=1).tolist()):
        alone = ids[row : row + 1, ids.shape[1] - length :]
        expected = run_oracle(ours, state, alone, torch.ones_like(alone))
        assert_parity(
            f"gpt-3 sparse ({kind}, left-padded row {row})", NAIVE_ORACLE, actual[row : row + 1, -length:], expected,
            torch.ones_like(alone),
        )


def test_gpt3_sparse_is_gpt2_when_the_band_covers_the_sequence():
    ours, hf, _ = sparse_pair(sparse_block=16)
    compare("gpt-3 sparse (band ≥ length)", GPT2_ORACLE, hf, ours, lengths=(16, 11, 5))


def test_the_sparse_layers_change_only_queries_past_the_first_block():
    ours, hf, _ = sparse_pair()
    ids = padded_batch(ours.config.vocab_size, [14])[0]
    with torch.no_grad():
        sparse, dense = ours(ids), hf(input_ids=ids).logits
    block = ours.config.sparse_block
    assert relative_error(sparse[:, :block], dense[:, :block]) < 1e-5
    assert relative_error(sparse[:, block:], dense[:, block:]) > 1e-2


def test_gpt3_presets_alternate_dense_and_sparse_layers():
    config = preset_config("gpt3-175b")
    assert config.resolved_layer_kinds[:4] == ("full", "strided", "full", "strided")
    assert (config.n_layers, config.hidden_size, config.n_heads, config.max_positions) == (96, 12288, 96, 2048)
    tiny = build("tiny-gpt3-sparse")
    ids = torch.randint(0, tiny.config.vocab_size, (2, 20))
    assert tiny(ids).shape == (2, 20, tiny.config.vocab_size)
