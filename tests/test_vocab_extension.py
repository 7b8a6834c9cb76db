"""llmcore.tokenizers.extend: merging a Chinese BPE into an English one and growing the embedding.

Oracles: the base tokenizer itself for the old ids (an English text encodes the same), the Chinese
tokenizer for the new tokens (a Chinese text is cut into the same token strings), a naive loop for
the sub-piece mean, and transformers' ``resize_token_embeddings`` on a tiny random LLaMA for the
mean (``mean_resizing=True``) and the random (``mean_resizing=False``) initialisations.
"""

from __future__ import annotations

import pytest
import torch

from llmcore.data.corpus import load_corpus
from llmcore.tokenizers import train_bpe
from llmcore.tokenizers.extend import base_pieces, extend_embedding_rows, merge_tokenizers, unreachable_tokens


@pytest.fixture(scope="module")
def tokenizers():
    english = train_bpe(load_corpus("english", 40000), 500, special_tokens=["<|endoftext|>"])
    chinese = train_bpe(load_corpus("chinese", 40000), 700)
    return english, chinese, merge_tokenizers(english, chinese)


def test_old_ids_keep_their_meaning(tokenizers) -> None:
    english, _, merged = tokenizers
    assert merged.tokens[: english.vocab_size] == english.tokens
    assert merged.special_tokens == english.special_tokens
    text = load_corpus("english")[-5000:] + "<|endoftext|>"
    assert merged.encode(text) == english.encode(text)


def test_new_tokens_cut_chinese_like_the_chinese_tokenizer(tokenizers) -> None:
    english, chinese, merged = tokenizers
    assert unreachable_tokens(merged, english.vocab_size) == []
    text = load_corpus("chinese")[-3000:]
    assert [merged.tokens[i] for i in merged.encode(text)] == [chinese.tokens[i] for i in chinese.encode(text)]
    assert merged.decode(merged.encode(text)) == text


def test_chinese_needs_far_fewer_tokens(tokenizers) -> None:
    english, _, merged = tokenizers
    text = load_corpus("chinese")[-3000:]
    assert len(merged.encode(text)) * 2 < len(english.encode(text))


def test_base_pieces_spell_the_new_tokens(tokenizers) -> None:
    english, _, merged = tokenizers
    pieces = base_pieces(english, merged)
    assert len(pieces) == merged.vocab_size - english.vocab_size
    for new_id, ids in zip(range(english.vocab_size, merged.vocab_size), pieces):
        assert b"".join(english.token_bytes(i) for i in ids) == merged.token_bytes(new_id)
        text = merged.token_bytes(new_id).decode("utf-8", errors="strict") if _complete(merged, new_id) else None
        if text is not None:
            assert english.encode(text) == ids


def _complete(tokenizer, token_id: int) -> bool:
    try:
        tokenizer.token_bytes(token_id).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_subword_mean_equals_a_loop() -> None:
    weight = torch.randn(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pieces = [[1, 2], [3], [4, 4, 9]]
    extended = extend_embedding_rows(weight, 3, "subword_mean", pieces=pieces)
    assert extended.shape == (13, 6) and torch.equal(extended[:10], weight)
    for row, ids in enumerate(pieces):
        expected = sum(weight[i] for i in ids) / len(ids)
        assert torch.allclose(extended[10 + row], expected, atol=1e-12)
    with pytest.raises(ValueError):
        extend_embedding_rows(weight, 2, "subword_mean", pieces=pieces)


def _tiny_llama(vocab_size: int):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def test_mean_rows_equal_transformers_mean_resizing() -> None:
    model = _tiny_llama(40)
    old_embedding = model.get_input_embeddings().weight.detach().clone()
    old_head = model.get_output_embeddings().weight.detach().clone()
    model.resize_token_embeddings(47, mean_resizing=True)
    for old, new in ((old_embedding, model.get_input_embeddings().weight), (old_head, model.get_output_embeddings().weight)):
        ours = extend_embedding_rows(old, 7, "mean")
        assert torch.equal(new[:40], old)
        # transformers samples around the mean with 1e-9 times the covariance: a jitter of ~1e-6.
        assert torch.allclose(new[40:].detach(), ours[40:], atol=1e-5)


def test_random_rows_have_the_spread_of_transformers_init() -> None:
    model = _tiny_llama(40)
    model.resize_token_embeddings(440, mean_resizing=False)
    theirs = model.get_input_embeddings().weight[40:].detach()
    ours = extend_embedding_rows(torch.zeros(40, 16), 400, "random", std=model.config.initializer_range,
                                 generator=torch.Generator().manual_seed(0))[40:]
    assert abs(ours.std().item() - theirs.std().item()) < 0.002
    assert abs(ours.mean().item()) < 0.002 and abs(theirs.mean().item()) < 0.002
