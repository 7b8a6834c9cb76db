"""llmcore.tokenizers against Hugging Face ``tokenizers`` built in memory from the same merges and pre-tokenizer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="the Hugging Face tokenizers library is the oracle here")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402

from llmcore.tokenizers import (  # noqa: E402
    GPT2_PATTERN,
    LLAMA3_PATTERN,
    METASPACE_PATTERN,
    QWEN2_PATTERN,
    BPETokenizer,
    load_hf_tokenizer,
    tokenizer_from_hf_dict,
    train_bpe,
)

CORPUS = (
    "The quick brown fox jumps over the lazy dog. It's 2024; we'll see 3.14159 and 1000000 again!\n"
    "    def f(x):\n        return x  # comment\n\n"
    "敏捷的棕色狐狸跳过了懒狗。狐狸很快，狗很懒。你好，世界！\n"
    "emoji 😀😀 🎉🎉 👋🏽 ok\r\n"
) * 4

SAMPLES = [
    "Hello world",
    " leading space and trailing spaces   ",
    "whitespace\t\truns\n\n\n   and\r\nCRLF",
    "The fox's tail. THE FOX'S TAIL. They'RE here",
    "numbers 12345678 and 3.14 and ²³ and ١٢٣",
    "你好，世界！狐狸跳过了懒狗。",
    "emoji 😀👋🏽🎉 mixed中文English123",
    "<|endoftext|>special<|endoftext|> in <|endoftext|>the middle",
    "unseen: Ωμέγα ñandú Ǆ ﬁ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "",
    CORPUS,
]


def _hf_byte_level(ours: BPETokenizer, pre_tokenizer) -> Tokenizer:
    specials = set(ours.special_tokens.values())
    vocab = {token: i for i, token in enumerate(ours.tokens) if i not in specials}
    merges = [(ours.tokens[left], ours.tokens[right]) for left, right, _ in ours.merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(ours.special_tokens))
    return tokenizer


def _split(pattern: str, digits: bool = False):
    steps = [pre_tokenizers.Split(Regex(pattern), behavior="isolated")]
    if digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    return pre_tokenizers.Sequence(steps + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


CASES = {
    "gpt2_split": (dict(), lambda: _split(GPT2_PATTERN)),
    "gpt2_builtin_regex": (dict(), lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)),
    "llama3": (dict(pattern=LLAMA3_PATTERN), lambda: _split(LLAMA3_PATTERN)),
    "qwen2": (dict(pattern=QWEN2_PATTERN), lambda: _split(QWEN2_PATTERN)),
    "gpt2_digits": (dict(split_digits=True), lambda: _split(GPT2_PATTERN, digits=True)),
}
_trained: dict[str, tuple[BPETokenizer, Tokenizer]] = {}


def _pair(case: str) -> tuple[BPETokenizer, Tokenizer]:
    if case not in _trained:
        options, pre_tokenizer = CASES[case]
        ours = train_bpe(CORPUS, 700, special_tokens=["<|endoftext|>"], min_frequency=2, **options)
        _trained[case] = ours, _hf_byte_level(ours, pre_tokenizer())
    return _trained[case]


@pytest.mark.parametrize("case", list(CASES))
def test_byte_level_ids_equal_tokenizers(case):
    ours, theirs = _pair(case)
    assert len(ours.merges) > 100
    for text in SAMPLES:
        expected = theirs.encode(text, add_special_tokens=False).ids
        assert ours.encode(text) == expected, text
        assert ours.decode(expected) == theirs.decode(expected, skip_special_tokens=False)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_byte_level_ids_equal_tokenizers_on_random_text(text):
    ours, theirs = _pair("gpt2_split")
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("case", ["gpt2_builtin_regex", "qwen2"])
def test_tokenizer_json_written_by_tokenizers_loads_identically(case, tmp_path):
    ours, theirs = _pair(case)
    if case == "qwen2":
        theirs.normalizer = normalizers.NFC()
    path = tmp_path / "tokenizer.json"
    theirs.save(str(path))
    loaded = load_hf_tokenizer(path)
    assert loaded.kind == "byte_level"
    assert loaded.pretokenizer.normalization == ("NFC" if case == "qwen2" else None)
    for text in SAMPLES + ["e\u0301 composed by NFC"]:
        assert loaded.encode(text) == theirs.encode(text, add_special_tokens=False).ids, text


def _hf_sentencepiece(ours: BPETokenizer, metaspace: bool) -> Tokenizer:
    specials = set(ours.special_tokens.values())
    vocab = {token: i for i, token in enumerate(ours.tokens) if i not in specials}
    merges = [(ours.tokens[left], ours.tokens[right]) for left, right, _ in ours.merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True))
    if metaspace:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    else:
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(list(ours.special_tokens))
    return tokenizer


@pytest.mark.parametrize("metaspace", [False, True], ids=["legacy_prepend", "metaspace_first"])
def test_sentencepiece_style_json_loads_and_matches(metaspace, tmp_path):
    trained = train_bpe(
        CORPUS, 800, kind="sentencepiece", pattern=METASPACE_PATTERN, special_tokens=["<s>", "</s>"],
        character_coverage=0.98,
    )
    theirs = _hf_sentencepiece(trained, metaspace)
    path = tmp_path / "tokenizer.json"
    theirs.save(str(path))
    ours = load_hf_tokenizer(path)
    assert ours.kind == "sentencepiece" and ours.byte_fallback
    assert ours.pretokenizer.pattern == (METASPACE_PATTERN if metaspace else None)
    for text in SAMPLES + ["<s>hello</s> <s> world", "🦜 rare chars fall back to bytes"]:
        expected = theirs.encode(text, add_special_tokens=False).ids
        assert ours.encode(text) == expected, text
        if not metaspace and not text.startswith(" "):
            assert ours.decode(expected) == theirs.decode(expected, skip_special_tokens=False), text


def test_old_style_string_merges_are_read():
    _, theirs = _pair("gpt2_split")
    data = json.loads(theirs.to_str())
    data["model"]["merges"] = [" ".join(pair) for pair in data["model"]["merges"]]
    assert tokenizer_from_hf_dict(data).encode(CORPUS) == theirs.encode(CORPUS, add_special_tokens=False).ids


def test_unsupported_files_are_refused():
    _, theirs = _pair("gpt2_split")
    data = json.loads(theirs.to_str())
    with pytest.raises(ValueError, match="only BPE"):
        tokenizer_from_hf_dict({**data, "model": {"type": "WordPiece", "vocab": {}}})
    with pytest.raises(ValueError, match="unsupported pre-tokenizer"):
        tokenizer_from_hf_dict({**data, "pre_tokenizer": {"type": "Whitespace"}})
    with pytest.raises(ValueError, match="cannot tell the family"):
        tokenizer_from_hf_dict({**data, "pre_tokenizer": None})
    with pytest.raises(ValueError, match="unsupported post-processor"):
        tokenizer_from_hf_dict({**data, "post_processor": {"type": "Whatever"}})
    template = {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}] * 2,
                "pair": [], "special_tokens": {}}
    with pytest.raises(ValueError, match="contain the text once"):
        tokenizer_from_hf_dict({**data, "post_processor": template})


def _with_post_processor(kind: str) -> Tokenizer:
    ours, _ = _pair("gpt2_split")
    theirs = _hf_byte_level(ours, _split(GPT2_PATTERN))
    theirs.add_special_tokens(["<s>", "</s>"])
    bos, eos = theirs.token_to_id("<s>"), theirs.token_to_id("</s>")
    template = processors.TemplateProcessing(
        single="<s> $A </s> </s>" if kind == "template_both_sides" else "<s> $A",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    if kind == "roberta":
        theirs.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos), add_prefix_space=False)
    elif kind == "bytelevel_then_template":
        theirs.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), template])
    elif kind == "bytelevel_only":
        theirs.post_processor = processors.ByteLevel(trim_offsets=True)
    else:
        theirs.post_processor = template
    return theirs


@pytest.mark.parametrize("kind", ["llama_bos", "template_both_sides", "roberta", "bytelevel_then_template", "bytelevel_only"])
def test_post_processor_special_tokens_match_tokenizers(kind, tmp_path):
    theirs = _with_post_processor(kind)
    path = tmp_path / "tokenizer.json"
    theirs.save(str(path))
    ours = load_hf_tokenizer(path)
    assert (ours.prefix_ids + ours.suffix_ids != []) == (kind != "bytelevel_only")
    for text in SAMPLES:
        assert ours.encode(text, add_special_tokens=True) == theirs.encode(text, add_special_tokens=True).ids, text
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False).ids, text
    reloaded = BPETokenizer.from_dict(json.loads(json.dumps(ours.to_dict())))
    assert reloaded.encode("Hello world", add_special_tokens=True) == ours.encode("Hello world", add_special_tokens=True)


FLAGGED_TOKENS = {
    "<mask>": dict(lstrip=True),
    "<sep>": dict(rstrip=True),
    "<both>": dict(lstrip=True, rstrip=True),
    "[w]": dict(single_word=True),
    "<plain>": dict(),
}
FLAGGED_SAMPLES = [
    "a <mask> b", "a<mask>b", "a   \t<mask>  b", "<mask> at start", "end <mask>", "two <mask> <mask> masks",
    "x <sep>   y", "x<sep>\n\ny", "p  <both>  q", " <both> ", "a [w] b", "a[w]b", "[w]b", "a[w]", "[w] [w]", "é[w] ü",
    "中[w]文 [w]", "under_[w] and -[w]-", "mixed <plain> <mask><sep><both>[w] end", "   ", "",
]


def test_special_token_flags_match_tokenizers(tmp_path):
    ours, _ = _pair("gpt2_split")
    theirs = _hf_byte_level(ours, _split(GPT2_PATTERN))
    theirs.add_special_tokens([AddedToken(token, normalized=False, **flags) for token, flags in FLAGGED_TOKENS.items()])
    path = tmp_path / "tokenizer.json"
    theirs.save(str(path))
    loaded = load_hf_tokenizer(path)
    assert set(loaded.special_token_matching) == {"<mask>", "<sep>", "<both>", "[w]"}
    for text in FLAGGED_SAMPLES + SAMPLES:
        assert loaded.encode(text) == theirs.encode(text, add_special_tokens=False).ids, text
    reloaded = BPETokenizer.from_dict(json.loads(json.dumps(loaded.to_dict())))
    assert all(reloaded.encode(text) == loaded.encode(text) for text in FLAGGED_SAMPLES)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["<mask>", "<sep>", "<both>", "[w]", " ", "  ", "\n", "a", "b_", "中", "-", "é"]), max_size=12))
def test_special_token_flags_match_tokenizers_on_random_mixtures(pieces):
    text = "".join(pieces)
    ours, theirs = _flagged_pair()
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False).ids


_flagged: list = []


def _flagged_pair() -> tuple[BPETokenizer, Tokenizer]:
    if not _flagged:
        ours, _ = _pair("gpt2_split")
        theirs = _hf_byte_level(ours, _split(GPT2_PATTERN))
        theirs.add_special_tokens([AddedToken(token, normalized=False, **flags) for token, flags in FLAGGED_TOKENS.items()])
        _flagged.append((tokenizer_from_hf_dict(json.loads(theirs.to_str())), theirs))
    return _flagged[0]
