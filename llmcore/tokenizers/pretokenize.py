"""Pre-tokenization (预分词): cut text into chunks that byte-pair encoding never merges across.

BPE merges only inside a chunk, so the chunking decides which tokens can exist at all: with the
GPT-2 pattern a token never spans a letter/punctuation boundary, and with digit splitting every digit
is its own token (LLaMA-1/2 and Baichuan split digits; so does Qwen2's ``\\p{N}`` pattern).

Order of operations, the same as Hugging Face ``tokenizers`` (a ``Split`` pre-tokenizer with the
``Isolated`` behaviour followed by ``Digits(individual_digits=True)``):

1. :func:`split_special` cuts out special tokens (特殊词元) before anything else, so a special token
   is never split and never merged with its neighbours;
2. :func:`pre_split` cuts every remaining segment with a regular expression - a match is a chunk, and
   so is any text between two matches, so no character is ever dropped - then, optionally, isolates
   each Unicode number character (``\\p{N}``).

Patterns (the ``regex`` module's ``\\p{L}`` letters, ``\\p{N}`` numbers):

* :data:`GPT2_PATTERN` - GPT-2 (Radford et al., 2019): English contractions, an optional leading
  space glued to a run of letters, numbers or punctuation, and whitespace runs that leave their last
  space to the next word.
* :data:`LLAMA3_PATTERN` - LLaMA-3 / GPT-4 ``cl100k``: case-insensitive contractions, numbers in
  groups of at most three digits, newlines kept apart from other whitespace.
* :data:`QWEN2_PATTERN` - Qwen2: the LLaMA-3 pattern with every number character on its own.
* :data:`METASPACE_PATTERN` - sentencepiece style (LLaMA-1/2, Baichuan): text where spaces are
  already ``"▁"``, cut before every ``"▁"`` (each word keeps its leading ``"▁"``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping

import regex

__all__ = [
    "GPT2_PATTERN", "LLAMA3_PATTERN", "QWEN2_PATTERN", "METASPACE_PATTERN", "SPIECE_UNDERLINE",
    "compile_pattern", "split_special", "SpecialTokenMatch", "pre_split", "PreTokenizer", "PREPEND_SCHEMES",
    "NORMALIZATIONS",
]

PREPEND_SCHEMES = ("first", "always", "never")
NORMALIZATIONS = ("NFC", "NFD", "NFKC", "NFKD")

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPIECE_UNDERLINE = "\u2581"
METASPACE_PATTERN = rf"{SPIECE_UNDERLINE}[^{SPIECE_UNDERLINE}]*|[^{SPIECE_UNDERLINE}]+"

_NUMBER = regex.compile(r"(\p{N})")
# Word characters and whitespace as Hugging Face tokenizers (Rust's regex \w and \s) define them.
_WORD_CHAR = regex.compile(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")
_TRAILING_SPACE = regex.compile(r"\p{White_Space}*\Z")
_LEADING_SPACE = regex.compile(r"\p{White_Space}*")


@dataclass(frozen=True)
class SpecialTokenMatch:
    """How a special token is matched (Hugging Face ``AddedToken``'s flags; all off by default).

    ``lstrip``/``rstrip``: the whitespace right before/after the token belongs to it, so it is not
    encoded as text (RoBERTa's ``<mask>`` takes the space before it). ``single_word``: the token
    matches only where no word character touches it on either side.
    """

    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


@lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    """``pattern`` compiled once; a pattern that does not compile raises ``ValueError`` naming it."""
    if not isinstance(pattern, str):
        raise TypeError(f"a pre-tokenization pattern must be a str, got {type(pattern).__name__}")
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"invalid pre-tokenization pattern {pattern!r}: {err}") from err


@lru_cache(maxsize=32)
def _special_matcher(special_tokens: tuple[str, ...]) -> regex.Pattern:
    # Longest first, so that at any position the longest special token wins (leftmost-longest).
    ordered = sorted(special_tokens, key=lambda token: (-len(token), token))
    return regex.compile("|".join(regex.escape(token) for token in ordered))


def split_special(
    text: str, special_tokens: Iterable[str], matching: Mapping[str, SpecialTokenMatch] | None = None
) -> list[tuple[str, bool]]:
    """``text`` as ``(segment, is_special)`` pairs in order; segments concatenate back to ``text``
    unless a token's ``matching`` rule strips the whitespace around it.

    Special tokens are matched literally, leftmost first and longest first at the same position; a
    ``single_word`` token inside a word is not a match. Empty segments are left out.
    """
    specials = tuple(sorted(set(special_tokens)))
    if "" in specials:
        raise ValueError("a special token cannot be the empty string")
    if not specials:
        return [(text, False)] if text else []
    segments: list[tuple[str, bool]] = []
    start = 0
    for match in _special_matcher(specials).finditer(text):
        begin, end = match.span()
        rule = matching.get(match.group()) if matching else None
        if rule is not None:
            if rule.single_word and (
                (begin and _WORD_CHAR.match(text, begin - 1)) or (end < len(text) and _WORD_CHAR.match(text, end))
            ):
                continue
            if rule.lstrip:
                begin = max(start, _TRAILING_SPACE.search(text, start, begin).start())
            if rule.rstrip:
                end = _LEADING_SPACE.match(text, end).end()
        if begin > start:
            segments.append((text[start:begin], False))
        segments.append((match.group(), True))
        start = end
    if start < len(text):
        segments.append((text[start:], False))
    return segments


def pre_split(text: str, pattern: str | None, split_digits: bool = False) -> list[str]:
    """Chunks of ``text``: the matches of ``pattern`` and the text between them, in order.

    ``pattern=None`` keeps ``text`` whole. With ``split_digits`` every ``\\p{N}`` character then
    becomes a chunk of its own (``"ab12"`` → ``["ab", "1", "2"]``). The chunks always concatenate
    back to ``text``; empty chunks are left out.
    """
    if pattern is None:
        chunks = [text] if text else []
    else:
        chunks = []
        start = 0
        for match in compile_pattern(pattern).finditer(text):
            if match.start() == match.end():
                continue
            if match.start() > start:
                chunks.append(text[start:match.start()])
            chunks.append(match.group())
            start = match.end()
        if start < len(text):
            chunks.append(text[start:])
    if not split_digits:
        return chunks
    return [piece for chunk in chunks for piece in _NUMBER.split(chunk) if piece]


@dataclass(frozen=True)
class PreTokenizer:
    """Everything between a text segment (special tokens already cut out) and its BPE chunks.

    In order: Unicode ``normalization`` (None keeps the text as it is, which keeps decoding exact);
    with ``metaspace`` (sentencepiece style) spaces become ``"▁"`` and a ``"▁"`` is prepended - to
    every segment (``prepend_scheme="always"``, LLaMA's legacy ``Prepend`` normalizer), only to the
    segment at the start of the text (``"first"``) or never - and skipped when the segment already
    starts with ``"▁"`` if ``prepend_unless_present`` (Hugging Face's ``Metaspace``); then
    :func:`pre_split` with ``pattern`` and ``split_digits``.
    """

    pattern: str | None = GPT2_PATTERN
    split_digits: bool = False
    normalization: str | None = None
    metaspace: bool = False
    prepend_scheme: str = "first"
    prepend_unless_present: bool = False

    def __post_init__(self) -> None:
        if self.pattern is not None:
            compile_pattern(self.pattern)
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be None or one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.prepend_scheme not in PREPEND_SCHEMES:
            raise ValueError(f"prepend_scheme must be one of {PREPEND_SCHEMES}, got {self.prepend_scheme!r}")

    def chunks(self, segment: str, at_start: bool = True) -> list[str]:
        """The chunks of ``segment``; ``at_start`` says whether it begins the whole text."""
        if self.normalization is not None:
            segment = unicodedata.normalize(self.normalization, segment)
        if self.metaspace:
            segment = segment.replace(" ", SPIECE_UNDERLINE)
            wants_prefix = self.prepend_scheme == "always" or (self.prepend_scheme == "first" and at_start)
            if self.prepend_unless_present and segment.startswith(SPIECE_UNDERLINE):
                wants_prefix = False
            if wants_prefix and segment:
                segment = SPIECE_UNDERLINE + segment
        return pre_split(segment, self.pattern, self.split_digits)
