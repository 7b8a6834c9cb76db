"""The shipped corpora (llmcore.data.corpus): contents, reproducibility, byte tokens and windows."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest
import torch

from llmcore.data import corpus
from llmcore.data.corpus import CORPORA, STDLIB_MODULES, byte_tokens, load_corpus, sample_windows
from llmcore.data.corpus.generate import chinese_text, english_text

CORPUS_DIR = Path(corpus.__file__).parent


def test_the_three_corpora_are_listed():
    assert CORPORA == ("english", "chinese", "python")


def test_unknown_corpus_names_the_known_ones():
    with pytest.raises(ValueError, match=r"'klingon'.*english, chinese, python"):
        load_corpus("klingon")


@pytest.mark.parametrize("name", ["english", "chinese"])
def test_committed_files_are_100_to_300_kb_of_utf8(name):
    raw = (CORPUS_DIR / f"{name}.txt").read_bytes()
    assert 100_000 <= len(raw) <= 300_000
    assert load_corpus(name) == raw.decode("utf-8")
    assert b"\r" not in raw


def test_committed_files_are_what_the_generator_writes():
    assert (CORPUS_DIR / "english.txt").read_text(encoding="utf-8") == english_text()
    assert (CORPUS_DIR / "chinese.txt").read_text(encoding="utf-8") == chinese_text()


def test_english_is_plain_ascii_prose_in_paragraphs():
    text = load_corpus("english")
    assert text.isascii()
    paragraphs = text.strip().split("\n\n")
    assert len(paragraphs) > 500
    assert all(p.endswith((".", "!")) for p in paragraphs)
    words = {w.strip('.,!?";:').lower() for w in text.split()}
    assert len(words) > 300, "too few distinct words for a language-modelling demo"


def test_chinese_is_mostly_han_characters():
    text = load_corpus("chinese")
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert han / len(text) > 0.8
    assert len(set(text)) > 300, "too few distinct characters for a language-modelling demo"


def test_python_corpus_is_each_listed_stdlib_module_in_sorted_order():
    assert list(STDLIB_MODULES) == sorted(set(STDLIB_MODULES))
    text = load_corpus("python")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    position = 0
    for module in STDLIB_MODULES:
        source = (stdlib / f"{module}.py").read_text(encoding="utf-8")
        section = f"# file: {module}.py\n" + source
        found = text.find(section, position)
        assert found >= position, f"{module}.py is missing or out of order"
        assert text[position:found].strip() == "", f"something other than blank lines precedes {module}.py"
        ast.parse(source)
        position = found + len(section)
    assert position == len(text)


def test_max_bytes_cuts_at_a_character_boundary():
    chinese = load_corpus("chinese")
    assert [len(ch.encode("utf-8")) for ch in chinese[:4]] == [3, 3, 3, 3]  # the corpus opens with Han characters
    # Ten bytes hold three whole three-byte characters (nine bytes); the tenth byte would split the fourth.
    assert load_corpus("chinese", max_bytes=10) == chinese[:3]
    assert load_corpus("chinese", max_bytes=9) == chinese[:3]
    assert load_corpus("chinese", max_bytes=12) == chinese[:4]
    english = load_corpus("english")
    assert load_corpus("english", max_bytes=4) == english[:4]
    assert load_corpus("english", max_bytes=0) == ""
    assert load_corpus("english", max_bytes=10**9) == english


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_max_bytes_rejects_non_counts(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        load_corpus("english", max_bytes=bad)


def test_byte_tokens_are_utf8_bytes():
    # "A" = 0x41; "é" = C3 A9; "中" = E4 B8 AD.
    assert byte_tokens("Aé中").tolist() == [0x41, 0xC3, 0xA9, 0xE4, 0xB8, 0xAD]
    assert byte_tokens("").tolist() == []
    assert byte_tokens("x").dtype == torch.long
    with pytest.raises(TypeError, match="bytes"):
        byte_tokens(b"abc")


def test_windows_are_contiguous_slices_with_targets_shifted_by_one():
    tokens = torch.arange(100, 150)
    x, y = sample_windows(tokens, 32, 7, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (32, 7)
    starts = x[:, 0] - 100
    expected = 100 + starts.unsqueeze(1) + torch.arange(7)
    assert torch.equal(x, expected)
    assert torch.equal(y, expected + 1)


def test_every_start_is_reachable_and_no_window_runs_past_the_end():
    # 12 tokens, windows of 4 plus their next token: starts 0 … 7.
    tokens = torch.arange(12)
    x, y = sample_windows(tokens, 2000, 4, generator=torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == set(range(8))
    assert int(y.max()) == 11


def test_windows_follow_the_generator():
    tokens = byte_tokens(load_corpus("english", max_bytes=5000))
    first = sample_windows(tokens, 4, 16, generator=torch.Generator().manual_seed(3))
    again = sample_windows(tokens, 4, 16, generator=torch.Generator().manual_seed(3))
    other = sample_windows(tokens, 4, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_windows_reject_bad_shapes_and_short_texts():
    with pytest.raises(ValueError, match="too few"):
        sample_windows(torch.arange(8), 1, 8)
    with pytest.raises(ValueError, match="1-D"):
        sample_windows(torch.zeros(2, 10, dtype=torch.long), 1, 4)
    with pytest.raises(ValueError, match="positive"):
        sample_windows(torch.arange(10), 0, 4)
