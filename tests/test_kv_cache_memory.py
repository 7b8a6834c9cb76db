"""KV-cache memory (llmcore.models.sizing.kv_cache_bytes) against the caches transformers really allocates."""

from __future__ import annotations

import pytest
import torch

import llmcore.models  # noqa: F401  (registers the presets)
from llmcore.cache import RollingKVCache
from llmcore.models.registry import preset_config
from llmcore.models.sizing import kv_cache_bytes, kv_cache_bytes_for

transformers = pytest.importorskip("transformers")

from llmcore.models import from_hf_model  # noqa: E402


def _hf_cache_bytes(model, batch_size: int, length: int) -> int:
    ids = torch.randint(0, model.config.vocab_size, (batch_size, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


@pytest.mark.parametrize(
    "kv_heads, head_dim", [(4, None), (2, None), (1, None), (2, 24)], ids=["MHA", "GQA 4:2", "MQA", "GQA, head_dim 24"]
)
def test_full_attention_cache_equals_what_transformers_allocates(kv_heads, head_dim) -> None:
    hf_config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=kv_heads, head_dim=head_dim, max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(hf_config).eval()
    config = from_hf_model(model).config
    assert kv_cache_bytes_for(config, 13, batch_size=3, bytes_per_value=4) == _hf_cache_bytes(model, 3, 13)


def test_sliding_layers_hold_the_window_and_transformers_one_fewer_between_steps() -> None:
    """Mistral's rolling buffer keeps W positions; transformers keeps W − 1 between steps and appends
    the current token's key and value before attending, so both attend over W keys."""
    window, length = 5, 11
    hf_config = transformers.MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=window, max_position_embeddings=64,
    )
    model = transformers.MistralForCausalLM(hf_config).eval()
    config = from_hf_model(model).config
    assert config.sliding_window == window
    hf_bytes = _hf_cache_bytes(model, 2, length)
    assert hf_bytes == kv_cache_bytes_for(config.replace(sliding_window=window - 1), length, batch_size=2, bytes_per_value=4)

    buffer = RollingKVCache(window)
    for position in range(length):
        buffer.update(torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8))
    per_layer = buffer.keys.nbytes + buffer.values.nbytes
    assert kv_cache_bytes_for(config, length, batch_size=2, bytes_per_value=4) == config.n_layers * per_layer


def test_published_sizes() -> None:
    gib = 2**30
    # LLaMA 2 7B: 32 layers × 32 KV heads × 128 dims, float16, 4096 tokens → 2 GiB per sequence.
    assert kv_cache_bytes_for(preset_config("llama2-7b"), 4096) == 2 * gib
    # LLaMA 2 70B's GQA (8 KV heads of 128, 80 layers) stores 8× less per layer than its 64 query heads would.
    seventy = preset_config("llama2-70b")
    assert kv_cache_bytes_for(seventy, 4096) * 8 == kv_cache_bytes_for(seventy.replace(n_kv_heads=64), 4096)
    # Mistral 7B: 32 layers × 8 KV heads × 128 dims, window 4096: flat beyond the window.
    mistral = preset_config("mistral-7b")
    assert kv_cache_bytes_for(mistral, 4096) == kv_cache_bytes_for(mistral, 32768) == gib // 2


def test_mixed_layers_cap_only_the_sliding_ones() -> None:
    config = preset_config("tiny-mistral").replace(layer_kinds=("sliding", "full"), sliding_window=4)
    per_position = 2 * config.resolved_kv_heads * config.resolved_head_dim * 2
    assert kv_cache_bytes_for(config, 10) == per_position * (4 + 10)


@pytest.mark.parametrize(
    "changes, named",
    [
        (dict(n_layers=0), "n_layers"),
        (dict(n_kv_heads=2.0), "n_kv_heads"),
        (dict(seq_len=-1), "seq_len"),
        (dict(bytes_per_value=True), "bytes_per_value"),
        (dict(window=0), "window"),
    ],
)
def test_bad_sizes_are_named(changes, named) -> None:
    sizes = dict(n_layers=2, n_kv_heads=2, head_dim=8, seq_len=16)
    with pytest.raises(ValueError, match=named):
        kv_cache_bytes(**{**sizes, **changes})
