"""Mistral's sliding window and rolling buffer against independent oracles.

- The mask: transformers 5.x ``masking_utils`` (causal AND ``kv > q − W``) and a naive double loop.
- The rolling buffer: which position each slot holds, against a dictionary filled token by token.
- Generation: greedy tokens with the rolling cache equal a full recompute with the window mask at every
  step (llmcore without a cache, and a naive loop over full forwards), and transformers'
  ``MistralForCausalLM.generate`` with ``sliding_window`` set; the cache's memory is what
  ``kv_cache_bytes_for`` predicts.
"""

from __future__ import annotations

import pytest
import torch

import llmcore
from llmcore.cache import RollingKVCache
from llmcore.generation import generate
from llmcore.models import build, preset_config
from llmcore.models.sizing import kv_cache_bytes_for

transformers = pytest.importorskip("transformers")
masking_utils = pytest.importorskip("transformers.masking_utils")


@pytest.mark.parametrize("window,q_len,kv_len", [(1, 5, 5), (3, 9, 9), (4, 3, 12), (8, 6, 6), (5, 1, 20)])
def test_sliding_window_mask_matches_transformers_and_a_loop(window, q_len, kv_len):
    offset = kv_len - q_len
    ours = llmcore.dense_mask(llmcore.sliding_window_mask(window), 1, 1, q_len, kv_len, q_offset=offset)[0, 0]
    hf_rule = masking_utils.and_masks(masking_utils.causal_mask_function, masking_utils.sliding_window_overlay(window))
    zero = torch.tensor(0)
    theirs = torch.tensor([[bool(hf_rule(zero, zero, torch.tensor(offset + i), torch.tensor(j))) for j in range(kv_len)]
                           for i in range(q_len)])
    loop = torch.zeros(q_len, kv_len, dtype=torch.bool)
    for i in range(q_len):
        q = offset + i
        for k in range(kv_len):
            loop[i, k] = q - window < k <= q
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, loop)
    assert int(ours[-1].sum()) == min(window, kv_len), "a full window holds W keys, the query included"


@pytest.mark.parametrize("window,chunks", [(4, [1] * 11), (5, [5, 5, 2, 1, 1]), (3, [2, 7, 1]), (1, [1, 3, 1])])
def test_rolling_buffer_slots_match_a_token_by_token_dictionary(window, chunks):
    cache = RollingKVCache(window)
    held: dict[int, int] = {}
    start = 0
    for size in chunks:
        keys = torch.arange(start, start + size, dtype=torch.float64).view(1, 1, size, 1)
        cache.update(keys, keys)
        for position in range(start, start + size):
            held[position % window] = position
        start += size
        expected = torch.tensor([held[slot] for slot in sorted(held)])
        assert torch.equal(cache.slot_positions(), expected)
        # the buffer's content agrees: the key written for position p is p itself
        assert torch.equal(cache.keys[0, 0, : len(held), 0].long(), expected)


def _tiny_mistral(window: int, seed: int = 0):
    torch.manual_seed(seed)
    return build("tiny-mistral", sliding_window=window, vocab_size=96, max_positions=128).eval()


def _naive_greedy(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Each step runs the whole sequence again (the window mask applies inside the model)."""
    ids = prompt
    for _ in range(steps):
        with torch.no_grad():
            next_token = model(ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_token], dim=1)
    return ids[:, prompt.shape[1]:]


@pytest.mark.parametrize("window,prompt_length", [(4, 9), (6, 3), (5, 5)])
def test_generation_with_the_rolling_cache_equals_full_recomputation(window, prompt_length):
    model = _tiny_mistral(window)
    prompt = torch.randint(0, 96, (2, prompt_length), generator=torch.Generator().manual_seed(window))
    steps = 3 * window
    cached = generate(model, prompt, max_new_tokens=steps, use_cache=True)
    recomputed = generate(model, prompt, max_new_tokens=steps, use_cache=False)
    assert torch.equal(cached.new_tokens, recomputed.new_tokens)
    assert torch.equal(cached.new_tokens, _naive_greedy(model, prompt, steps))
    bytes_per_value = 4  # float32
    assert cached.cache_bytes == kv_cache_bytes_for(model.config, prompt_length + steps, batch_size=2,
                                                    bytes_per_value=bytes_per_value)


def test_rolling_cache_logits_match_the_window_mask_at_every_step():
    """Step by step, the last-position logits with the rolling cache equal a full forward's (max error pinned)."""
    window = 4
    model = _tiny_mistral(window, seed=1)
    ids = torch.randint(0, 96, (1, 14), generator=torch.Generator().manual_seed(3))
    cache = llmcore.cache.KVCache.for_model(model)
    worst = 0.0
    with torch.no_grad():
        model(ids[:, :6], cache=cache)  # a prompt longer than the window, in one chunk
        for end in range(7, ids.shape[1] + 1):
            stepped = model(ids[:, end - 1: end], cache=cache)[:, -1]
            full = model(ids[:, :end])[:, -1]
            worst = max(worst, (stepped - full).abs().max().item())
    assert worst < 1e-5, worst


def test_greedy_tokens_match_transformers_mistral_with_a_window():
    config = transformers.MistralConfig(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, sliding_window=4,
    )
    torch.manual_seed(0)
    hf = transformers.MistralForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in hf.parameters():
            parameter.normal_(0.0, 0.2)
    hf.config._attn_implementation = "eager"
    ours = llmcore.models.from_hf_model(hf)
    assert ours.config.sliding_window == 4
    prompt = torch.randint(0, 96, (1, 7), generator=torch.Generator().manual_seed(0))
    steps = 12
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=steps, do_sample=False,
                             pad_token_id=0)[:, prompt.shape[1]:]
    mine = generate(ours, prompt, max_new_tokens=steps, use_cache=True).new_tokens
    assert torch.equal(mine, theirs)
    with torch.no_grad():
        full_ids = torch.cat([prompt, mine], dim=1)
        error = (ours(full_ids) - hf(full_ids).logits).abs().max().item()
    assert error < 1e-4, error


def test_mistral_7b_rolling_buffer_saves_what_the_paper_says():
    """Mistral 7B paper §2: on a 32K-token sequence the rolling buffer cuts the cache memory 8×."""
    config = preset_config("mistral-7b")
    full = kv_cache_bytes_for(config.replace(sliding_window=None), 32768)
    rolling = kv_cache_bytes_for(config, 32768)
    assert full == 8 * rolling
    assert rolling == 2 * 32 * 8 * 128 * 4096 * 2  # K and V, 32 layers, 8 KV heads of 128, 4096 slots, fp16
