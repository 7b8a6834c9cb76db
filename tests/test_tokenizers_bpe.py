"""Byte-pair encoding in llmcore.tokenizers: hand-worked merges, the naive trainer as oracle, exact round trips."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_bpe import naive_learn_merges
from llmcore.tokenizers import (
    BYTE_TO_CHAR,
    GPT2_PATTERN,
    METASPACE_PATTERN,
    BPETokenizer,
    byte_token,
    pre_split,
    SpecialTokenMatch,
    split_special,
    train_bpe,
)

MIXED = (
    "The quick brown fox jumps over the lazy dog. The dog didn't mind; the fox's tail was 12345 cm long!\n"
    "  Indented    spaces\tand tabs\n\n"
    "敏捷的棕色狐狸跳过了懒狗。狐狸很快，狗很懒。你好，世界！你好！\n"
    "emoji 😀😀🎉 👋🏽 and numbers 2024-11-24, 3.14159, 1000000.\n"
) * 3


def test_hand_worked_merges_aaabdaaabac():
    # Pairs of a a a b d a a a b a c: (a,a) occurs 4 times (overlapping windows) -> "aa" = 256.
    # Then Z a b d Z a b a c: (Z,a)=(256,97) and (a,b)=(97,98) both occur twice; the smaller pair
    # (97,98) wins the tie -> "ab" = 257. Then Z Y d Z Y a c: (256,257) twice -> "aaab" = 258.
    tokenizer = train_bpe("aaabdaaabac", 259, pattern=None, min_frequency=1)
    assert tokenizer.merges == [(97, 97, 256), (97, 98, 257), (256, 257, 258)]
    assert tokenizer.tokens[256:] == ["aa", "ab", "aaab"]
    assert tokenizer.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    assert tokenizer.encode("aaa") == [256, ord("a")]


def test_min_frequency_stops_training_early():
    # a b ␣ c a b: (a, b) occurs twice; after it every pair occurs once.
    tokenizer = train_bpe("ab cab", 1000, pattern=None, min_frequency=2)
    assert [tokenizer.tokens[r] for _, _, r in tokenizer.merges] == ["ab"]
    assert tokenizer.vocab_size == 257


def _gpt2_words(text: str) -> tuple[list[list[int]], list[int]]:
    chunks = Counter(regex.findall(GPT2_PATTERN, text))
    return [list(chunk.encode("utf-8")) for chunk in chunks], list(chunks.values())


@pytest.mark.parametrize("text", [MIXED, "abababab ba ab aab abb " * 7, "aaaa aaa aa a " * 5])
def test_incremental_training_equals_naive_recount(text):
    words, counts = _gpt2_words(text)
    expected_tokens, expected_merges = naive_learn_merges(words, counts, BYTE_TO_CHAR, 256 + 120, min_frequency=2)
    tokenizer = train_bpe(text, 256 + 120, min_frequency=2)
    assert tokenizer.merges == expected_merges
    assert tokenizer.tokens == expected_tokens


def test_sentencepiece_training_equals_naive_recount():
    chunks = Counter(chunk for chunk in regex.findall(METASPACE_PATTERN, "▁" + MIXED.replace(" ", "▁")))
    alphabet = sorted({char for chunk in chunks for char in chunk})
    base = [byte_token(byte) for byte in range(256)] + alphabet
    words = [[256 + alphabet.index(char) for char in chunk] for chunk in chunks]
    expected_tokens, expected_merges = naive_learn_merges(
        words, list(chunks.values()), base, len(base) + 80, min_frequency=2, reserved=256
    )
    tokenizer = train_bpe(MIXED, len(base) + 80, kind="sentencepiece", pattern=METASPACE_PATTERN)
    assert tokenizer.merges == expected_merges
    assert tokenizer.tokens == expected_tokens


def test_special_tokens_are_never_split_nor_merged():
    text = "hello<|endoftext|>hello world<|endoftext|><|endoftext|>"
    tokenizer = train_bpe(text * 20, 300, special_tokens=["<|endoftext|>", "<|end|>"])
    eot, end = tokenizer.special_tokens["<|endoftext|>"], tokenizer.special_tokens["<|end|>"]
    # Training runs out of pairs before 300; the special tokens take the last two ids.
    assert (eot, end) == (tokenizer.vocab_size - 2, tokenizer.vocab_size - 1)
    assert tokenizer.vocab_size < 300
    assert all(eot not in merge and end not in merge for merge in tokenizer.merges)
    assert all("<|" not in tokenizer.tokens[r] for _, _, r in tokenizer.merges)
    ids = tokenizer.encode("a<|endoftext|>b<|end|><|endoftext|>")
    assert ids == [ord("a"), eot, ord("b"), end, eot]
    assert tokenizer.decode(ids) == "a<|endoftext|>b<|end|><|endoftext|>"


def test_split_special_prefers_the_longest_match():
    assert split_special("x<|end|>y<|endoftext|>", ["<|end", "<|end|>", "<|endoftext|>"]) == [
        ("x", False), ("<|end|>", True), ("y", False), ("<|endoftext|>", True),
    ]


def test_split_special_strips_whitespace_and_respects_word_boundaries():
    rules = {"<m>": SpecialTokenMatch(lstrip=True), "<r>": SpecialTokenMatch(rstrip=True), "[w]": SpecialTokenMatch(single_word=True)}
    tokens = ["<m>", "<r>", "[w]"]
    assert split_special("a \t <m> b", tokens, rules) == [("a", False), ("<m>", True), (" b", False)]
    assert split_special("a <r> \n b", tokens, rules) == [("a ", False), ("<r>", True), ("b", False)]
    # Stripping never takes whitespace that an earlier special token already owns.
    assert split_special("<r>  <m>", tokens, rules) == [("<r>", True), ("<m>", True)]
    assert split_special("x[w]y [w] z", tokens, rules) == [("x[w]y ", False), ("[w]", True), (" z", False)]
    with pytest.raises(ValueError, match="not a special token"):
        BPETokenizer(["a"], [], special_token_matching={"<m>": {"lstrip": True}})


def test_pre_split_keeps_gaps_and_isolates_digits():
    assert pre_split("ab12 c3", r"[a-z]+", split_digits=True) == ["ab", "1", "2", " ", "c", "3"]
    assert pre_split("x²三", None, split_digits=True) == ["x", "²", "三"]


def test_split_digits_prevents_multi_digit_tokens():
    tokenizer = train_bpe("12 12 12 123 123 1234 " * 10, 300, split_digits=True)
    assert tokenizer.encode("1234") == [ord("1"), ord("2"), ord("3"), ord("4")]


def test_sentencepiece_byte_fallback_for_unseen_characters():
    tokenizer = train_bpe("hello hello world " * 5, 300, kind="sentencepiece", pattern=METASPACE_PATTERN)
    ids = tokenizer.encode("hello 狐")
    assert ids[-3:] == [0xE7, 0x8B, 0x90]
    assert tokenizer.tokens[0xE7] == "<0xE7>"
    assert tokenizer.decode(ids) == "hello 狐"


def test_character_coverage_drops_rare_characters_to_bytes():
    tokenizer = train_bpe("aaaa bbbb 狐", 300, kind="sentencepiece", pattern=METASPACE_PATTERN, character_coverage=0.8)
    assert "狐" not in tokenizer.tokens and "a" in tokenizer.tokens


_trained: dict[str, BPETokenizer] = {}


def _tokenizers() -> dict[str, BPETokenizer]:
    if not _trained:
        _trained["byte"] = train_bpe(MIXED, 600, special_tokens=["<|endoftext|>"])
        _trained["digits"] = train_bpe(MIXED, 600, pattern=None, split_digits=True)
        _trained["spm"] = train_bpe(
            MIXED, 700, kind="sentencepiece", pattern=METASPACE_PATTERN, split_digits=True,
            special_tokens=["<s>"], character_coverage=0.99,
        )
    return _trained


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["byte", "digits", "spm"]))
def test_round_trip_of_random_unicode(text, name):
    tokenizer = _tokenizers()[name]
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("name", ["byte", "spm"])
def test_round_trip_with_special_tokens_and_long_text(name):
    tokenizer = _tokenizers()[name]
    special = next(iter(tokenizer.special_tokens))
    text = f" {special}  start {MIXED}{special}end 😀\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_save_and_load_give_the_same_tokenizer(tmp_path):
    for name, tokenizer in _tokenizers().items():
        path = tmp_path / f"{name}.json"
        tokenizer.save(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["format"] == "llmcore-bpe" and data["version"] == 1 and data["kind"] == tokenizer.kind
        assert data["merges"][0] == list(tokenizer.merges[0])
        loaded = BPETokenizer.load(path)
        assert loaded.encode(MIXED) == tokenizer.encode(MIXED)
        assert loaded.tokens == tokenizer.tokens and loaded.special_tokens == tokenizer.special_tokens


def test_bad_input_is_refused_with_a_clear_error():
    tokenizer = _tokenizers()["byte"]
    with pytest.raises(ValueError, match="vocab_size 100"):
        train_bpe("abc", 100)
    with pytest.raises(ValueError, match="kind"):
        train_bpe("abc", 300, kind="wordpiece")
    with pytest.raises(ValueError, match="token id 99999"):
        tokenizer.decode([99999])
    with pytest.raises(TypeError, match="bytes"):
        tokenizer.encode(b"abc")
    with pytest.raises(ValueError, match="version 7"):
        BPETokenizer.from_dict({**tokenizer.to_dict(), "version": 7})
    with pytest.raises(ValueError, match="merge 0"):
        BPETokenizer(list(BYTE_TO_CHAR) + ["xy"], [(0, 1, 256)])
    with pytest.raises(ValueError, match="invalid pre-tokenization pattern"):
        train_bpe("abc", 300, pattern="(")
