"""Learning BPE merges from a corpus (训练字节对编码), with incremental pair counts.

Byte-pair encoding (字节对编码; Gage, 1994, for compression; Sennrich et al., 2016, for subwords)
starts from base symbols - the 256 bytes, or characters - and repeatedly joins the most frequent
adjacent pair into a new symbol. The corpus is first cut into chunks
(:mod:`llmcore.tokenizers.pretokenize`); identical chunks are counted once, with their frequency, and
a pair is counted inside chunks only.

Recounting every pair after every merge costs a pass over the corpus per merge. Here the counts are
kept up to date instead (增量统计):

* ``pair_counts[pair]`` - occurrences of the pair, weighted by chunk frequency (overlapping windows
  count: ``a a a`` holds the pair ``(a, a)`` twice);
* ``pair_words[pair]`` - the chunks that may contain it, so a merge revisits only those chunks;
* a max-heap of ``(count, pair)`` that is invalidated lazily: every change of a count pushes a fresh
  entry, and a popped entry whose count is no longer current is dropped.

**Tie-break rule** (deterministic): the highest count wins; among equal counts, the smallest pair of
ids ``(left, right)`` in lexicographic order. Base ids are byte values (byte-level) or 256 + the
character's rank in code-point order (sentencepiece), and a merge's new token takes the next free id.
The merges are therefore exactly those of the naive recount-every-merge loop with the same rule.

Within a chunk a merge joins occurrences left to right without overlap (``a a a`` → ``aa a``).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from typing import Iterable, Sequence

from .bpe import BPETokenizer, byte_token
from .byte_alphabet import BYTE_TO_CHAR
from .pretokenize import GPT2_PATTERN, PreTokenizer, split_special

__all__ = ["learn_merges", "merge_pair", "train_bpe"]


def merge_pair(word: Sequence[int], left: int, right: int, new_id: int) -> list[int] | None:
    """``word`` with every ``(left, right)`` replaced by ``new_id``, left to right; None if absent."""
    merged: list[int] = []
    i, n = 0, len(word)
    found = False
    while i < n:
        if word[i] == left and i + 1 < n and word[i + 1] == right:
            merged.append(new_id)
            i += 2
            found = True
        else:
            merged.append(word[i])
            i += 1
    return merged if found else None


def learn_merges(
    words: Sequence[Sequence[int]],
    counts: Sequence[int],
    tokens: Sequence[str],
    target_size: int,
    min_frequency: int = 2,
    reserved: int = 0,
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Merge until there are ``target_size`` tokens; returns the grown token list and the merges.

    ``words[i]`` is a chunk as ids into ``tokens`` (the base symbols' strings) and ``counts[i]`` how
    often it occurs. A merge's result is the token spelled ``tokens[left] + tokens[right]``: an
    existing id when that string is already a token (two pairs can spell the same string; ids below
    ``reserved``, the byte-fallback tokens, are never reused), else the next new id. Should a pair
    merged before turn up again, it is merged again without being recorded twice. Merges are ``(left, right, result)`` ids in the order
    learned (a merge that reuses a spelling adds no token, so there can be more merges than new
    tokens). Learning stops
    early when the most frequent pair occurs fewer than ``min_frequency`` times (or none is left).
    """
    if len(words) != len(counts):
        raise ValueError(f"words and counts differ in length: {len(words)} vs {len(counts)}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")
    tokens = list(tokens)
    token_ids = {token: i for i, token in enumerate(tokens) if i >= reserved}
    words = [list(word) for word in words]
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            pair_words[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int, int]] = []
    results: dict[tuple[int, int], int] = {}
    while len(tokens) < target_size and heap:
        negative_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -negative_count:
            continue
        if count < min_frequency:
            break
        left, right = pair
        result = results.get(pair)
        if result is None:
            spelling = tokens[left] + tokens[right]
            result = token_ids.get(spelling)
            if result is None:
                result = token_ids[spelling] = len(tokens)
                tokens.append(spelling)
            results[pair] = result
            merges.append((left, right, result))
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for index in pair_words.pop(pair):
            word = words[index]
            merged = merge_pair(word, left, right, result)
            if merged is None:
                continue
            weight = counts[index]
            for old in zip(word, word[1:]):
                delta[old] -= weight
            for new in zip(merged, merged[1:]):
                delta[new] += weight
                if result in new:
                    pair_words[new].add(index)
            words[index] = merged
        for changed, change in delta.items():
            if change:
                updated = pair_counts[changed] + change
                if updated:
                    pair_counts[changed] = updated
                    heapq.heappush(heap, (-updated, changed))
                else:
                    del pair_counts[changed]
    return tokens, merges


def _chunk_counts(documents: Iterable[str], pretokenizer: PreTokenizer, special_tokens: Sequence[str]) -> Counter:
    counts: Counter = Counter()
    for document in documents:
        if not isinstance(document, str):
            raise TypeError(f"training text must be str or an iterable of str, got an item of type {type(document).__name__}")
        offset = 0
        for segment, is_special in split_special(document, special_tokens):
            if not is_special:
                counts.update(pretokenizer.chunks(segment, at_start=offset == 0))
            offset += len(segment)
    return counts


def _alphabet(chunk_counts: Counter, character_coverage: float) -> list[str]:
    char_counts: Counter = Counter()
    for chunk, count in chunk_counts.items():
        for char in chunk:
            char_counts[char] += count
    total = sum(char_counts.values())
    kept, covered = [], 0
    for char, count in sorted(char_counts.items(), key=lambda item: (-item[1], item[0])):
        if kept and covered >= character_coverage * total:
            break
        kept.append(char)
        covered += count
    return sorted(kept)


def train_bpe(
    text: str | Iterable[str],
    vocab_size: int,
    *,
    kind: str = "byte_level",
    pattern: str | None = GPT2_PATTERN,
    split_digits: bool = False,
    special_tokens: Sequence[str] = (),
    min_frequency: int = 2,
    character_coverage: float = 1.0,
    normalization: str | None = None,
) -> BPETokenizer:
    """A tokenizer trained on ``text`` (one string or an iterable of documents) to ``vocab_size`` ids.

    Ids: ``"byte_level"`` - bytes ``0..255``, then the merges; ``"sentencepiece"`` - the byte
    fallback tokens ``<0x00>..<0xFF>`` at ``0..255``, the alphabet in code-point order, then the
    merges (use :data:`~llmcore.tokenizers.pretokenize.METASPACE_PATTERN` as ``pattern`` for
    LLaMA-style words). Special tokens come last. The alphabet keeps the most frequent characters
    covering ``character_coverage`` of all characters (sentencepiece's option; LLaMA used 0.99995);
    the rest are encoded by byte fallback and never merged. Training stops early, with a smaller
    vocabulary, when no pair occurs ``min_frequency`` times.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"character_coverage must be in (0, 1], got {character_coverage!r}")
    specials = list(dict.fromkeys(special_tokens))
    pretokenizer = PreTokenizer(
        pattern=pattern, split_digits=split_digits, normalization=normalization, metaspace=kind == "sentencepiece"
    )
    chunk_counts = _chunk_counts([text] if isinstance(text, str) else text, pretokenizer, specials)
    if kind == "byte_level":
        tokens = list(BYTE_TO_CHAR)
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        counts = list(chunk_counts.values())
    elif kind == "sentencepiece":
        alphabet = _alphabet(chunk_counts, character_coverage)
        tokens = [byte_token(byte) for byte in range(256)] + alphabet
        char_ids = {char: 256 + i for i, char in enumerate(alphabet)}
        word_counts: Counter = Counter()
        for chunk, count in chunk_counts.items():
            # A character outside the alphabet falls back to bytes, which are never merged: it
            # only separates the runs of alphabet characters around it.
            run: list[int] = []
            for char in chunk:
                char_id = char_ids.get(char)
                if char_id is not None:
                    run.append(char_id)
                elif run:
                    word_counts[tuple(run)] += count
                    run = []
            if run:
                word_counts[tuple(run)] += count
        words, counts = list(word_counts), list(word_counts.values())
    else:
        raise ValueError(f"kind must be 'byte_level' or 'sentencepiece', got {kind!r}")
    if vocab_size < len(tokens) + len(specials):
        raise ValueError(
            f"vocab_size {vocab_size} is below the {len(tokens)} base tokens plus {len(specials)} special tokens"
        )
    reserved = 256 if kind == "sentencepiece" else 0
    tokens, merges = learn_merges(words, counts, tokens, vocab_size - len(specials), min_frequency, reserved)
    special_ids = {}
    for special in specials:
        special_ids[special] = len(tokens)
        tokens.append(special)
    return BPETokenizer(
        tokens, merges, kind=kind, special_tokens=special_ids, pattern=pattern, split_digits=split_digits,
        normalization=normalization,
    )
