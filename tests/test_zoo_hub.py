"""from_pretrained / save_pretrained on local folders: both config layouts, shards, tied weights, errors."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore import checkpoints  # noqa: E402
from llmcore.models import build, from_pretrained, save_pretrained  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_  # noqa: E402


def hf_llama(tie: bool = False):
    config = transformers.LlamaConfig(
        vocab_size=80, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie, rope_theta=20000.0,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("shard", [None, "20KB"], ids=["single", "sharded"])
def test_folder_written_by_transformers_loads_with_equal_logits(tmp_path, tie, shard):
    hf = hf_llama(tie)
    hf.save_pretrained(tmp_path, max_shard_size=shard) if shard else hf.save_pretrained(tmp_path)
    if shard:
        assert (tmp_path / "model.safetensors.index.json").exists()
    ours = from_pretrained(tmp_path)
    ids, mask = padded_batch(80, [9, 6])
    assert_parity(f"llama folder ({'tied' if tie else 'untied'}, {'sharded' if shard else 'single'})",
                  "transformers save_pretrained → from_pretrained", logits(ours, ids, mask), logits(hf, ids, mask), mask)
    assert ours.config.tie_word_embeddings is tie
    assert (ours.lm_head.weight is ours.embeddings.embed_tokens.weight) is tie


def test_transformers_4x_config_layout_loads_the_same(tmp_path):
    hf = hf_llama()
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    parameters = config.pop("rope_parameters")
    config["rope_theta"] = parameters["rope_theta"]
    config["torch_dtype"] = config.pop("dtype", "float32")
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = from_pretrained(tmp_path)
    assert ours.config.rope_theta == 20000.0
    ids, mask = padded_batch(80, [7])
    torch.testing.assert_close(logits(ours, ids, mask), logits(hf, ids, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shard", [None, "10KB"], ids=["single", "sharded"])
def test_save_pretrained_is_read_back_by_transformers(tmp_path, shard):
    ours = build("tiny-llama", tie_word_embeddings=True).eval()
    randomize_(ours)
    save_pretrained(ours, tmp_path, model_type="llama", max_shard_size=shard)
    names = set(checkpoints.load_state_dict(tmp_path))
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids, mask = padded_batch(ours.config.vocab_size, [12, 5])
    assert_parity("llama save_pretrained", "transformers from_pretrained", logits(ours, ids, mask), logits(hf, ids, mask), mask)
    again = from_pretrained(tmp_path)
    assert torch.equal(logits(again, ids, mask), logits(ours, ids, mask))


def test_save_pretrained_round_trip_keeps_the_model_type(tmp_path):
    hf = hf_llama()
    hf.save_pretrained(tmp_path / "a")
    loaded = from_pretrained(tmp_path / "a")
    save_pretrained(loaded, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model_type"] == "llama"
    ids, mask = padded_batch(80, [6])
    assert torch.equal(logits(from_pretrained(tmp_path / "b"), ids, mask), logits(loaded, ids, mask))


def test_save_pretrained_without_a_model_type_says_so(tmp_path):
    with pytest.raises(ValueError, match="model_type="):
        save_pretrained(build("tiny-llama"), tmp_path)


def test_dtype_comes_from_the_config_or_the_argument(tmp_path):
    hf = hf_llama().to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    assert next(from_pretrained(tmp_path).parameters()).dtype == torch.bfloat16
    assert next(from_pretrained(tmp_path, dtype=torch.float32).parameters()).dtype == torch.float32


def test_unknown_model_type_is_named(tmp_path):
    checkpoints.write_config(tmp_path, {"model_type": "mamba-ish"})
    with pytest.raises(ValueError, match="unknown model_type 'mamba-ish'.*llama"):
        from_pretrained(tmp_path)


def test_missing_tensor_is_named(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    state = checkpoints.load_state_dict(tmp_path)
    del state["model.layers.1.mlp.up_proj.weight"]
    checkpoints.save_state_dict(tmp_path, state)
    with pytest.raises(ValueError, match=r"missing tensors \['layers.1.ffn.up_proj.weight'\]"):
        from_pretrained(tmp_path)


def test_unexpected_tensor_is_named(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    state = checkpoints.load_state_dict(tmp_path)
    state["model.layers.0.self_attn.rotary_gate.weight"] = torch.zeros(2)
    checkpoints.save_state_dict(tmp_path, state)
    with pytest.raises(KeyError, match="model.layers.0.self_attn.rotary_gate.weight"):
        from_pretrained(tmp_path)


def test_shape_mismatch_is_named(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 40
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"layers.0.ffn.gate_proj.weight: checkpoint \(48, 32\) vs model \(40, 32\)"):
        from_pretrained(tmp_path)
