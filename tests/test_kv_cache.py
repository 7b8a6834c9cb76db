"""KV cache (KV 缓存): hand-worked buffer contents, exact memory, and cache ≡ no cache for every family.

The oracle for the incremental path is the model's own *full* forward pass, which never touches
:mod:`llmcore.cache`: feeding the prefix once and then one token at a time through a
:class:`~llmcore.cache.KVCache` must give the logits the whole sequence gives at once (float32,
within 1e-5 of the largest logit), and :func:`~llmcore.generation.generate` must pick the same tokens
with and without the cache. Weights are drawn at std 0.2 (``zoo_helpers.randomize_``) so that
attention is far from uniform and a wrong key, position or mask shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from llmcore.cache import CrossAttentionCache, KVCache, LayerKVCache, RollingKVCache
from llmcore.generation import generate
from llmcore.models import CausalLM, Seq2SeqLM, build
from llmcore.models.families.glm import glm130b_config
from zoo_helpers import padded_batch, randomize_, relative_error

FLOAT32_BYTES = 4
NEW_TOKENS = 12


# ----------------------------------------------------------------------------- the families


@dataclass(frozen=True)
class Family:
    name: str
    preset: str
    overrides: dict = field(default_factory=dict)


DECODER_FAMILIES = [
    Family("llama-gqa", "tiny-llama"),
    Family("llama-mqa", "tiny-llama", {"n_kv_heads": 1}),
    Family("llama-mha", "tiny-llama", {"n_kv_heads": 4}),
    # LogN scaling starts after 64 positions; no sequence here is longer than 27 tokens.
    Family("qwen1-logn-inside", "tiny-qwen"),
    # A trained length of 4 puts most positions past it, where the queries are rescaled.
    Family("qwen1-logn-beyond", "tiny-qwen", {"logn_trained_length": 4}),
    Family("qwen2", "tiny-qwen2"),
    # Window 3 against 7 + 12 positions: the rolling buffer wraps six times.
    Family("mistral-w3", "tiny-mistral", {"sliding_window": 3}),
    Family("mistral-w5", "tiny-mistral", {"sliding_window": 5}),
    Family("mixtral", "tiny-mixtral"),
    Family("gemma", "tiny-gemma"),
    Family("phi", "tiny-phi"),
    Family("phi3-sliding", "tiny-phi3", {"sliding_window": 4}),
    Family("bloom-alibi", "tiny-bloom"),
    Family("baichuan2-13b-alibi", "tiny-baichuan2-13b"),
    Family("baichuan2-7b", "tiny-baichuan2-7b"),
    Family("gpt1", "tiny-gpt1"),
    Family("gpt2", "tiny-gpt2"),
    Family("gpt3-strided", "tiny-gpt3-sparse"),
    Family("gpt3-fixed", "tiny-gpt3-sparse", {"layer_kinds": ("full", "fixed")}),
    Family("glm4", "tiny-glm"),
    Family("glm4-0414-sandwich", "tiny-glm4"),
    Family("glm130b-deepnorm", "glm130b"),
    # A model mixing both kinds of layer keeps a growing and a rolling buffer side by side.
    Family("mixed-full-sliding", "tiny-llama", {"layer_kinds": ("sliding", "full"), "sliding_window": 3}),
]
SEQ2SEQ_FAMILIES = [Family("t5", "tiny-t5"), Family("bart", "tiny-bart"), Family("transformer2017", "tiny-transformer")]


def make_model(family: Family, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if family.preset == "glm130b":
        sizes = dict(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=96, max_positions=256)
        model = CausalLM(glm130b_config(**sizes))
    else:
        model = build(family.preset, **family.overrides)
    return randomize_(model, seed=seed).eval()


def ids_of(names):
    return [family.name for family in names]


# ----------------------------------------------------------------------------- LayerKVCache


def numbered(positions, batch: int = 2, heads: int = 2, head_dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys whose every entry is their position (row b adds 100·b), values the negative: slots read back as numbers."""
    base = torch.tensor(positions, dtype=torch.float32).view(1, 1, -1, 1)
    rows = 100 * torch.arange(batch, dtype=torch.float32).view(-1, 1, 1, 1)
    keys = (base + rows).expand(batch, heads, len(positions), head_dim).clone()
    return keys, -keys


def positions_in(tensor: torch.Tensor, row: int = 0) -> list[int]:
    """The positions a numbered key tensor holds, in slot order (batch row ``row``, head 0, first entry)."""
    return [int(v) - 100 * row for v in tensor[row, 0, :, 0].tolist()]


def test_layer_cache_grows_past_its_capacity_and_keeps_every_key():
    cache = LayerKVCache(capacity=2)
    for position in range(3):
        keys, values = cache.update(*numbered([position]))
    assert positions_in(keys) == [0, 1, 2]
    assert positions_in(keys, row=1) == [0, 1, 2]
    assert torch.equal(values, -keys)
    keys, values = cache.update(*numbered([3, 4, 5, 6]))
    assert positions_in(keys) == list(range(7)) and positions_in(values) == [-p for p in range(7)]
    assert cache.length == 7
    # Capacity 2 → 4 (doubled at position 2) → 8 (doubled past 7): keys and values, 2×2×3 floats per position.
    assert cache.memory_bytes() == 2 * (2 * 2 * 8 * 3) * FLOAT32_BYTES
    assert cache.key_positions(2).tolist() == list(range(9))


def test_layer_cache_capacity_is_preallocated_once():
    cache = LayerKVCache(capacity=10)
    cache.update(*numbered([0, 1, 2]))
    before = cache.keys
    cache.update(*numbered([3]))
    assert cache.keys is before, "a write inside the capacity must not reallocate"
    assert cache.memory_bytes() == 2 * (2 * 2 * 10 * 3) * FLOAT32_BYTES


def test_layer_cache_rejects_a_negative_capacity():
    with pytest.raises(ValueError, match="capacity"):
        LayerKVCache(capacity=-1)


# ----------------------------------------------------------------------------- RollingKVCache, window 3


def test_rolling_cache_slots_and_key_positions_by_hand():
    """Window 3, position p in slot p mod 3. Worked on paper:

    =====================  ============================  ==========================  ===============
    call                   keys attention sees           (their positions)           slots after
    =====================  ============================  ==========================  ===============
    chunk 0,1              written first (fits)          0 1                         0 1 ·
    token 2                written first                 0 1 2                       0 1 2
    token 3                written first                 3 1 2                       3 1 2
    token 4                written first                 3 4 2                       3 4 2
    chunk 5,6 (wraps)      old slots, then the chunk     3 4 2 5 6                   6 4 5
    token 7                written first                 6 7 5                       6 7 5
    chunk 8..11 (> W)      old slots, then the chunk     6 7 5 8 9 10 11             9 10 11
    =====================  ============================  ==========================  ===============
    """
    cache = RollingKVCache(3)
    steps = [
        ([0, 1], [0, 1], [0, 1]),
        ([2], [0, 1, 2], [0, 1, 2]),
        ([3], [3, 1, 2], [3, 1, 2]),
        ([4], [3, 4, 2], [3, 4, 2]),
        ([5, 6], [3, 4, 2, 5, 6], [6, 4, 5]),
        ([7], [6, 7, 5], [6, 7, 5]),
        ([8, 9, 10, 11], [6, 7, 5, 8, 9, 10, 11], [9, 10, 11]),
    ]
    for chunk, seen, slots_after in steps:
        assert cache.key_positions(len(chunk)).tolist() == seen, f"key_positions before writing {chunk}"
        keys, values = cache.update(*numbered(chunk))
        assert positions_in(keys) == seen and positions_in(keys, row=1) == seen
        assert positions_in(values) == [-p for p in seen]
        filled = min(cache.length, 3)  # an unwritten slot holds whatever the buffer was allocated with
        assert positions_in(cache.keys[:, :, :filled]) == slots_after, f"slots after writing {chunk}"
        assert cache.length == chunk[-1] + 1
    # However long the text, the buffer is window slots: 2 rows × 2 heads × 3 slots × 3 dims, keys and values.
    assert cache.memory_bytes() == 2 * (2 * 2 * 3 * 3) * FLOAT32_BYTES


def test_rolling_cache_first_chunk_longer_than_the_window():
    cache = RollingKVCache(3)
    assert cache.key_positions(5).tolist() == [0, 1, 2, 3, 4]
    keys, _ = cache.update(*numbered([0, 1, 2, 3, 4]))
    assert positions_in(keys) == [0, 1, 2, 3, 4]
    # Positions 2, 3, 4 live in slots 2, 0, 1.
    assert positions_in(cache.keys) == [3, 4, 2]
    assert cache.key_positions(1).tolist() == [3, 4, 5]


@pytest.mark.parametrize("window", [0, -2, 2.0])
def test_rolling_cache_rejects_a_bad_window(window):
    with pytest.raises(ValueError, match="window"):
        RollingKVCache(window)


# ----------------------------------------------------------------------------- reorder


def test_reorder_keeps_the_chosen_rows_in_every_cache():
    cache = KVCache(["full", "sliding"], sliding_window=2, capacity=4, cross_attention=True)
    for layer in cache.layers:
        layer.update(*numbered([0, 1, 2], batch=3))
    for cross in cache.cross:
        cross.store(*numbered([7, 8], batch=3))
    cache.extend_keep(torch.tensor([[True, True, True], [False, True, True], [False, False, True]]))
    cache.reorder(torch.tensor([2, 2, 0]))
    full, rolling = cache.layers
    # Row r of a numbered tensor holds 100·r + position: after the reorder rows come from 2, 2, 0.
    assert full.keys[:, 0, :3, 0].tolist() == [[200, 201, 202], [200, 201, 202], [0, 1, 2]]
    assert rolling.keys[:, 0, :, 0].tolist() == [[202, 201], [202, 201], [2, 1]]
    assert cache.cross[0].keys[:, 0, :, 0].tolist() == [[207, 208], [207, 208], [7, 8]]
    assert cache.keep.tolist() == [[False, False, True], [False, False, True], [True, True, True]]
    # Writing after a reorder continues every row where it was.
    keys, _ = full.update(*numbered([3], batch=3))
    assert keys[:, 0, :, 0].tolist() == [[200, 201, 202, 3], [200, 201, 202, 103], [0, 1, 2, 203]]


def test_reorder_of_empty_caches_is_a_no_op():
    cache = KVCache(["full"], cross_attention=True)
    cache.reorder(torch.tensor([0, 0]))
    assert cache.memory_bytes() == 0 and cache.length == 0


# ----------------------------------------------------------------------------- KVCache.for_model and memory


def test_memory_of_a_gqa_cache_counts_kv_heads_not_query_heads():
    model = build("tiny-llama", n_kv_heads=2).eval()  # 4 query heads, 2 key/value heads, head_dim 64/4 = 16
    cache = KVCache.for_model(model, capacity=10)
    with torch.no_grad():
        model(torch.randint(0, 256, (3, 6)), cache=cache)
    n_layers, kv_heads, head_dim, batch, capacity = 2, 2, 16, 3, 10
    assert cache.memory_bytes() == n_layers * 2 * batch * kv_heads * capacity * head_dim * FLOAT32_BYTES
    mqa = build("tiny-llama", n_kv_heads=1).eval()
    mqa_cache = KVCache.for_model(mqa, capacity=10)
    with torch.no_grad():
        mqa(torch.randint(0, 256, (3, 6)), cache=mqa_cache)
    assert mqa_cache.memory_bytes() == cache.memory_bytes() // 2


def test_memory_of_a_rolling_cache_is_the_window_however_long_the_text():
    model = build("tiny-mistral", sliding_window=4).eval()  # 2 key/value heads of 16, 2 sliding layers
    cache = KVCache.for_model(model, capacity=100)
    assert all(isinstance(layer, RollingKVCache) for layer in cache.layers)
    expected = 2 * 2 * 3 * 2 * 4 * 16 * FLOAT32_BYTES  # layers × (k, v) × batch × H_kv × window × D
    with torch.no_grad():
        model(torch.randint(0, 256, (3, 10)), cache=cache)
        assert cache.memory_bytes() == expected
        for _ in range(7):
            model(torch.randint(0, 256, (3, 1)), cache=cache)
    assert cache.length == 17
    assert cache.memory_bytes() == expected


def test_memory_of_the_cross_attention_cache():
    model = build("tiny-t5").eval()  # 4 heads of 16, 2 decoder layers
    cache = KVCache.for_model(model, capacity=5)
    assert cache.cross is not None and all(isinstance(c, CrossAttentionCache) for c in cache.cross)
    with torch.no_grad():
        memory = model.encode(torch.randint(1, 256, (2, 7)))
        model.decode(torch.zeros(2, 1, dtype=torch.long), memory, cache=cache)
    self_bytes = 2 * 2 * 2 * 4 * 5 * 16 * FLOAT32_BYTES  # layers × (k, v) × batch × heads × capacity × D
    cross_bytes = 2 * 2 * 2 * 4 * 7 * 16 * FLOAT32_BYTES  # … × source length
    assert cache.memory_bytes() == self_bytes + cross_bytes


def test_alibi_with_a_sliding_window_is_refused_for_the_rolling_cache():
    model = build("tiny-bloom", sliding_window=4)
    with pytest.raises(ValueError, match="ALiBi"):
        KVCache.for_model(model)


def test_a_cache_of_another_batch_size_or_depth_is_refused():
    model = build("tiny-llama").eval()
    cache = KVCache.for_model(model)
    with torch.no_grad():
        model(torch.randint(0, 256, (2, 3)), cache=cache)
        with pytest.raises(ValueError, match="batch size 2"):
            model(torch.randint(0, 256, (3, 1)), cache=cache)
        with pytest.raises(ValueError, match="layers"):
            model(torch.randint(0, 256, (2, 1)), cache=KVCache(["full"] * 3))


def test_a_sliding_layer_without_a_window_is_refused():
    with pytest.raises(ValueError, match="sliding_window"):
        KVCache(["sliding"])


# ----------------------------------------------------------------------------- the mask of a cached sliding layer


def naive_sliding_mask(keep: torch.Tensor, key_positions: list[int], first_query: int, n_queries: int, window: int):
    """May query q see the key in slot j? Causal, inside the window (itself and the W−1 before), not padding."""
    batch = keep.shape[0]
    mask = torch.zeros(batch, 1, n_queries, len(key_positions), dtype=torch.bool)
    for b in range(batch):
        for i in range(n_queries):
            q = first_query + i
            for j, k in enumerate(key_positions):
                mask[b, 0, i, j] = k <= q and q - k < window and bool(keep[b, k])
    return mask


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
@pytest.mark.parametrize("chunks", [[5, 3], [5, 1, 1, 2], [2, 4], [6, 1]], ids=str)
def test_cached_sliding_layer_mask_matches_a_naive_loop(chunks, padded):
    window = 3
    model = build("tiny-mistral", sliding_window=window).eval()
    cache = KVCache.for_model(model)
    prompt_keep = torch.ones(2, chunks[0], dtype=torch.bool)
    if padded:
        prompt_keep[1, :2] = False
    with torch.no_grad():
        model(torch.randint(0, 256, (2, chunks[0])), prompt_keep, cache=cache)
        for chunk in chunks[1:-1]:
            model(torch.randint(0, 256, (2, chunk)), cache=cache)
    query_length = chunks[-1]
    first_query = cache.length
    key_positions = cache.layers[0].key_positions(query_length).tolist()
    keep = cache.extend_keep(torch.ones(2, query_length, dtype=torch.bool))
    expected = naive_sliding_mask(keep, key_positions, first_query, query_length, window)
    for mask, is_causal in model.layer_masks(keep, query_length, cache=cache):
        if mask is None:
            # Only a lone unpadded token may skip the mask: the rolling buffer then holds exactly its window.
            assert query_length == 1 and not padded and not is_causal
            assert bool(expected.all())
        else:
            assert not is_causal
            assert torch.equal(mask.expand_as(expected), expected)


# ----------------------------------------------------------------------------- cache ≡ no cache, every family


def prompts(vocab_size: int, lengths=(7, 4, 6), seed: int = 1):
    return padded_batch(vocab_size, list(lengths), seed=seed, left=True)


def incremental_logits(model, ids, mask, chunks):
    """Logits of ``ids`` fed in ``chunks`` through one KVCache (mask describes the first chunk only)."""
    cache = KVCache.for_model(model)
    outputs, start = [], 0
    for index, size in enumerate(chunks):
        piece_mask = mask[:, start : start + size] if index == 0 else None
        outputs.append(model(ids[:, start : start + size], piece_mask, cache=cache))
        start += size
    assert start == ids.shape[1] and cache.length == start
    return torch.cat(outputs, dim=1)


SCHEDULES = {
    "prefill then one at a time": lambda prompt, total: [prompt] + [1] * (total - prompt),
    "uneven chunks": lambda prompt, total: [prompt, 3, 1, 2, 5, 1] + [1] * (total - prompt - 12),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
@pytest.mark.parametrize("family", DECODER_FAMILIES, ids=ids_of(DECODER_FAMILIES))
def test_decoder_incremental_logits_equal_the_full_forward(family, schedule):
    model = make_model(family)
    ids, mask = prompts(model.config.vocab_size, lengths=(7, 5))
    tail = torch.randint(1, model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(2))
    ids = torch.cat([ids, tail], dim=1)
    mask = torch.cat([mask, torch.ones_like(tail)], dim=1)
    with torch.no_grad():
        full = model(ids, mask)
        stepped = incremental_logits(model, ids, mask, SCHEDULES[schedule](7, ids.shape[1]))
    error = relative_error(stepped, full, mask)
    assert error < 1e-5, f"{family.name}: cached logits differ from the full forward by {error:.1e} of max |logit|"


@pytest.mark.parametrize("family", DECODER_FAMILIES, ids=ids_of(DECODER_FAMILIES))
def test_decoder_greedy_generation_is_the_same_with_and_without_cache(family):
    model = make_model(family)
    ids, mask = prompts(model.config.vocab_size)
    with_cache = generate(model, ids, mask, max_new_tokens=NEW_TOKENS, use_cache=True)
    without = generate(model, ids, mask, max_new_tokens=NEW_TOKENS, use_cache=False)
    assert with_cache.new_tokens.shape == (3, NEW_TOKENS)
    assert torch.equal(with_cache.sequences, without.sequences)
    assert torch.equal(with_cache.sequences[:, : ids.shape[1]], ids)
    assert with_cache.cache_bytes > 0 and without.cache_bytes == 0


def greedy_oracle(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy decoding of one unpadded prompt by re-running the full forward pass at every step."""
    sequence = prompt.tolist()
    with torch.no_grad():
        for _ in range(steps):
            sequence.append(int(model(torch.tensor([sequence]))[0, -1].argmax()))
    return sequence[len(prompt) :]


LEFT_PADDING_FAMILIES = DECODER_FAMILIES


@pytest.mark.parametrize("family", LEFT_PADDING_FAMILIES, ids=ids_of(DECODER_FAMILIES))
def test_decoder_left_padded_rows_generate_what_they_generate_alone(family):
    model = make_model(family)
    ids, mask = prompts(model.config.vocab_size)
    batched = generate(model, ids, mask, max_new_tokens=NEW_TOKENS).new_tokens
    for row in range(ids.shape[0]):
        prompt = ids[row][mask[row].bool()]
        alone = generate(model, prompt.unsqueeze(0), max_new_tokens=NEW_TOKENS).new_tokens[0]
        assert batched[row].tolist() == alone.tolist(), f"{family.name}: row {row} changes when batched with padding"
        assert alone.tolist() == greedy_oracle(model, prompt, NEW_TOKENS)


@pytest.mark.parametrize("preset", ["tiny-chatglm", "tiny-glm-infilling"])
def test_generate_refuses_2d_position_models_with_a_clear_error(preset):
    model = build(preset).eval()
    with pytest.raises(ValueError, match="2-D positions"):
        generate(model, torch.tensor([[5, 6, 7]]), max_new_tokens=2)


# ----------------------------------------------------------------------------- encoder–decoder


def sources(vocab_size: int, lengths=(6, 3, 5)):
    """Right-padded sources: the encoder counts positions from 0 in every row, padding included."""
    return padded_batch(vocab_size, list(lengths), seed=3, left=False)


def start_id(model) -> int:
    return 2 if model.config.final_logits_bias else 0  # BART starts from </s>, T5 and 2017 from pad 0


@pytest.mark.parametrize("family", SEQ2SEQ_FAMILIES, ids=ids_of(SEQ2SEQ_FAMILIES))
def test_seq2seq_incremental_logits_equal_the_full_decode(family):
    model = make_model(family)
    src, src_mask = sources(model.config.vocab_size)
    targets = torch.randint(1, model.config.vocab_size, (3, 14), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        full = model.decode(targets, memory, src_mask)
        for chunks in ([1] * 14, [4, 1, 3, 1, 5]):
            cache = KVCache.for_model(model)
            pieces, start = [], 0
            for size in chunks:
                pieces.append(model.decode(targets[:, start : start + size], memory, src_mask, cache=cache))
                start += size
            error = relative_error(torch.cat(pieces, dim=1), full)
            assert error < 1e-5, f"{family.name} {chunks}: cached logits differ by {error:.1e} of max |logit|"


@pytest.mark.parametrize("family", SEQ2SEQ_FAMILIES, ids=ids_of(SEQ2SEQ_FAMILIES))
def test_seq2seq_greedy_generation_is_the_same_with_and_without_cache(family):
    model = make_model(family)
    src, src_mask = sources(model.config.vocab_size)
    options = dict(max_new_tokens=NEW_TOKENS, decoder_start_token_id=start_id(model))
    with_cache = generate(model, src, src_mask, use_cache=True, **options)
    without = generate(model, src, src_mask, use_cache=False, **options)
    assert with_cache.sequences.shape == (3, NEW_TOKENS)
    assert torch.equal(with_cache.new_tokens, without.new_tokens)
    assert torch.equal(with_cache.sequences, with_cache.new_tokens)
    assert with_cache.cache_bytes > 0 and without.cache_bytes == 0


def seq2seq_greedy_oracle(model, source: torch.Tensor, start: int, steps: int) -> list[int]:
    decoded = [start]
    with torch.no_grad():
        for _ in range(steps):
            decoded.append(int(model(source.unsqueeze(0), None, torch.tensor([decoded]))[0, -1].argmax()))
    return decoded[1:]


@pytest.mark.parametrize("family", SEQ2SEQ_FAMILIES, ids=ids_of(SEQ2SEQ_FAMILIES))
def test_seq2seq_padded_rows_generate_what_they_generate_alone(family):
    model = make_model(family)
    src, src_mask = sources(model.config.vocab_size)
    options = dict(max_new_tokens=NEW_TOKENS, decoder_start_token_id=start_id(model))
    batched = generate(model, src, src_mask, **options).new_tokens
    for row in range(src.shape[0]):
        source = src[row][src_mask[row].bool()]
        alone = generate(model, source.unsqueeze(0), **options).new_tokens[0]
        assert batched[row].tolist() == alone.tolist(), f"{family.name}: row {row} changes when batched with padding"
        assert alone.tolist() == seq2seq_greedy_oracle(model, source, start_id(model), NEW_TOKENS)


def test_t5_left_padded_sources_generate_what_they_generate_alone():
    """T5's positions are relative, so left padding (unlike BART's or the 2017 model's) is harmless."""
    model = make_model(Family("t5", "tiny-t5"))
    src, src_mask = padded_batch(256, [6, 3, 5], seed=3, left=True)
    batched = generate(model, src, src_mask, max_new_tokens=NEW_TOKENS, decoder_start_token_id=0).new_tokens
    for row in range(3):
        source = src[row][src_mask[row].bool()].unsqueeze(0)
        alone = generate(model, source, max_new_tokens=NEW_TOKENS, decoder_start_token_id=0).new_tokens[0]
        assert batched[row].tolist() == alone.tolist()


BEAM_FAMILIES = [f for f in DECODER_FAMILIES if f.name in ("mistral-w3", "phi3-sliding", "bloom-alibi", "gpt3-strided")]


@pytest.mark.parametrize("family", BEAM_FAMILIES + SEQ2SEQ_FAMILIES, ids=ids_of(BEAM_FAMILIES + SEQ2SEQ_FAMILIES))
def test_beam_search_is_the_same_with_and_without_cache(family):
    """Beam search reorders the cache rows at every step, the rolling buffers and cross-attention included."""
    model = make_model(family)
    if isinstance(model, Seq2SeqLM):
        ids, mask = sources(model.config.vocab_size)
        options = dict(decoder_start_token_id=start_id(model))
    else:
        ids, mask = prompts(model.config.vocab_size)
        options = {}
    options.update(max_new_tokens=8, num_beams=3, stop_tokens=[7, 11])
    cached = generate(model, ids, mask, use_cache=True, **options)
    uncached = generate(model, ids, mask, use_cache=False, **options)
    assert torch.equal(cached.new_tokens, uncached.new_tokens)
    assert torch.allclose(cached.scores, uncached.scores, atol=1e-5)
