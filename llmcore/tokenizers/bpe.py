"""A byte-pair-encoding tokenizer (字节对编码分词器; Sennrich et al., 2016): encode, decode, save, load.

Two kinds of symbol alphabet, the two families of released BPE vocabularies:

* ``"byte_level"`` (GPT-2, RoBERTa, Qwen2, LLaMA-3): a chunk is turned into its UTF-8 bytes and every
  byte is a base symbol, so any text is encodable and decodes back exactly. Token strings are
  spelled in GPT-2's printable byte alphabet (:mod:`llmcore.tokenizers.byte_alphabet`).
* ``"sentencepiece"`` (LLaMA-1/2, Baichuan; Kudo & Richardson, 2018): spaces become ``"▁"`` (U+2581)
  and a ``"▁"`` is prepended to the text (the "dummy prefix"); base symbols are the characters of
  the vocabulary. A character outside it becomes its UTF-8 bytes as ``<0xXX>`` tokens
  (byte fallback, 字节回退), or the unknown token when byte fallback is off.

Encoding (编码) a text: special tokens (特殊词元) are cut out first and map to their ids directly;
each other segment is normalized (optional Unicode normal form), given the ``"▁"`` treatment for
``"sentencepiece"``, pre-split into chunks (:mod:`llmcore.tokenizers.pretokenize`) and each chunk is
merged by rank: repeatedly the adjacent pair whose merge was learned earliest is merged, leftmost
first - the same result as Hugging Face ``tokenizers`` and GPT-2's ``encoder.py``. Chunk results are
cached, since natural text repeats its words.

Decoding (解码) concatenates the bytes of the tokens and reads them as UTF-8 (an incomplete sequence
becomes U+FFFD); for ``"sentencepiece"`` one leading space, the dummy prefix, is removed when the
first id is not a special token.

File format (``save``/``load``), a JSON object::

    {"format": "llmcore-bpe", "version": 1,
     "kind": "byte_level" | "sentencepiece",
     "tokens": ["!", "\\"", ...],              # token string of every id, in id order
     "merges": [[left_id, right_id, result_id], ...],   # in rank order, earliest learned first
     "special_tokens": {"<|endoftext|>": 50256},      # text -> id; tokens[id] is the text
     "special_token_matching": {"<mask>": {"lstrip": true, "rstrip": false, "single_word": false}},
     "pattern": "<regex>" | null,             # pre-splitting regex, null keeps a segment whole
     "split_digits": false,                   # isolate every \\p{N} character after the regex
     "normalization": null | "NFC" | "NFD" | "NFKC" | "NFKD",
     "prepend_scheme": "first" | "always" | "never",   # sentencepiece: which segments get "▁"
     "prepend_unless_present": false,         # sentencepiece: skip "▁" if the segment starts with one
     "byte_fallback": true, "unk_token": null | "<unk>", "fuse_unk": false,   # sentencepiece
     "ignore_merges": false,                  # a chunk that is itself a token is not merged further
     "prefix_ids": [], "suffix_ids": []}      # put around the text by encode(add_special_tokens=True)

``prepend_scheme="always"`` prepends to every segment between special tokens (LLaMA's legacy
``Prepend`` normalizer); ``"first"`` only to the segment at the start of the text (the default here,
which makes decoding exact); ``prepend_unless_present`` is the rule of Hugging Face's ``Metaspace``.
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import asdict
from typing import Iterable, Mapping, Sequence

from .byte_alphabet import BYTE_TO_CHAR, token_to_bytes
from .pretokenize import GPT2_PATTERN, SPIECE_UNDERLINE, PreTokenizer, SpecialTokenMatch, split_special

__all__ = ["BPETokenizer", "apply_merges", "KINDS", "FORMAT_NAME", "FORMAT_VERSION", "byte_token"]

KINDS = ("byte_level", "sentencepiece")
FORMAT_NAME = "llmcore-bpe"
FORMAT_VERSION = 1

# Chunks shorter than this are merged by rescanning (fast for words); longer ones with a heap.
_SHORT_CHUNK = 24
_CACHE_LIMIT = 1 << 16


def byte_token(byte: int) -> str:
    """The sentencepiece byte-fallback token for ``byte``, e.g. ``10`` → ``"<0x0A>"``."""
    return f"<0x{byte:02X}>"


def _merge_short(symbols: list[int], merges: Mapping[tuple[int, int], tuple[int, int]]) -> list[int]:
    while len(symbols) > 1:
        best_rank, best_pair, result = None, None, 0
        for pair in zip(symbols, symbols[1:]):
            entry = merges.get(pair)
            if entry is not None and (best_rank is None or entry[0] < best_rank):
                best_rank, best_pair, result = entry[0], pair, entry[1]
        if best_pair is None:
            break
        left, right = best_pair
        merged = []
        i, n = 0, len(symbols)
        while i < n:
            if i + 1 < n and symbols[i] == left and symbols[i + 1] == right:
                merged.append(result)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _merge_long(symbols: list[int], merges: Mapping[tuple[int, int], tuple[int, int]]) -> list[int]:
    # A doubly linked list over the positions and a heap of (rank, position): O(n log n) for chunks
    # of any length, such as a whole sentencepiece text with no pre-splitting.
    n = len(symbols)
    symbol = list(symbols)
    following = list(range(1, n + 1))
    preceding = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        entry = merges.get((symbol[i], symbol[i + 1]))
        if entry is not None:
            heap.append((entry[0], i))
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        if not alive[i] or following[i] >= n:
            continue
        j = following[i]
        entry = merges.get((symbol[i], symbol[j]))
        if entry is None or entry[0] != rank:
            continue
        symbol[i] = entry[1]
        alive[j] = False
        following[i] = following[j]
        if following[j] < n:
            preceding[following[j]] = i
        before, after = preceding[i], following[i]
        if before >= 0:
            entry = merges.get((symbol[before], symbol[i]))
            if entry is not None:
                heapq.heappush(heap, (entry[0], before))
        if after < n:
            entry = merges.get((symbol[i], symbol[after]))
            if entry is not None:
                heapq.heappush(heap, (entry[0], i))
    return [symbol[i] for i in range(n) if alive[i]]


def apply_merges(symbols: list[int], merges: Mapping[tuple[int, int], tuple[int, int]]) -> list[int]:
    """``symbols`` after BPE: ``merges`` maps a pair of ids to ``(rank, merged id)``, lowest rank first."""
    if len(symbols) < _SHORT_CHUNK:
        return _merge_short(symbols, merges)
    return _merge_long(symbols, merges)


class BPETokenizer:
    """A trained BPE vocabulary and how to cut text for it; see the module docstring for the options.

    ``tokens[i]`` is the string of id ``i``; ``merges`` lists ``(left, right, result)`` ids in rank
    order, and ``tokens[result]`` must be ``tokens[left] + tokens[right]``. Build one with
    :func:`llmcore.tokenizers.train_bpe`, :meth:`load` or
    :func:`llmcore.tokenizers.load_hf_tokenizer`.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Iterable[Sequence[int]],
        *,
        kind: str = "byte_level",
        special_tokens: Mapping[str, int] | None = None,
        pattern: str | None = GPT2_PATTERN,
        split_digits: bool = False,
        normalization: str | None = None,
        prepend_scheme: str = "first",
        prepend_unless_present: bool = False,
        byte_fallback: bool = True,
        unk_token: str | None = None,
        fuse_unk: bool = False,
        ignore_merges: bool = False,
        prefix_ids: Sequence[int] = (),
        suffix_ids: Sequence[int] = (),
        special_token_matching: Mapping[str, SpecialTokenMatch | Mapping[str, bool]] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.pretokenizer = PreTokenizer(
            pattern=pattern, split_digits=bool(split_digits), normalization=normalization,
            metaspace=kind == "sentencepiece", prepend_scheme=prepend_scheme,
            prepend_unless_present=bool(prepend_unless_present),
        )
        self.tokens: list[str] = list(tokens)
        for i, token in enumerate(self.tokens):
            if not isinstance(token, str) or not token:
                raise ValueError(f"token {i} must be a non-empty str, got {token!r}")
        self.kind = kind
        self.byte_fallback = bool(byte_fallback)
        self.unk_token = unk_token
        self.fuse_unk = bool(fuse_unk)
        self.ignore_merges = bool(ignore_merges)
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        for text, token_id in self.special_tokens.items():
            if not (0 <= token_id < len(self.tokens)) or self.tokens[token_id] != text:
                raise ValueError(f"special token {text!r} has id {token_id}, whose token is not that text")
        special_ids = set(self.special_tokens.values())
        self._special_ids = special_ids
        self.special_token_matching: dict[str, SpecialTokenMatch] = {}
        for text, rule in (special_token_matching or {}).items():
            if text not in self.special_tokens:
                raise ValueError(f"special_token_matching names {text!r}, which is not a special token")
            self.special_token_matching[text] = rule if isinstance(rule, SpecialTokenMatch) else SpecialTokenMatch(**rule)
        self.merges: list[tuple[int, int, int]] = []
        self._merge_ranks: dict[tuple[int, int], tuple[int, int]] = {}
        results: set[int] = set()
        for rank, merge in enumerate(merges):
            left, right, result = (int(x) for x in merge)
            ids_ok = all(0 <= x < len(self.tokens) and x not in special_ids for x in (left, right, result))
            if not ids_ok or self.tokens[result] != self.tokens[left] + self.tokens[right]:
                raise ValueError(f"merge {rank} {merge!r} does not join two vocabulary tokens into a third")
            if (left, right) in self._merge_ranks:
                raise ValueError(f"merge {rank} repeats the pair ({left}, {right})")
            self._merge_ranks[(left, right)] = (rank, result)
            self.merges.append((left, right, result))
            results.add(result)
        self._token_ids: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            if i not in special_ids:
                self._token_ids.setdefault(token, i)
        self._unk_id: int | None = None
        if unk_token is not None:
            if unk_token not in self._token_ids and unk_token not in self.special_tokens:
                raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
            self._unk_id = self._token_ids.get(unk_token, self.special_tokens.get(unk_token))
        if kind == "byte_level":
            self._build_byte_level(special_ids)
        else:
            self._build_sentencepiece(special_ids, results)
        self.prefix_ids: list[int] = list(prefix_ids)
        self.suffix_ids: list[int] = list(suffix_ids)
        self._check_ids(self.prefix_ids + self.suffix_ids)
        self._cache: dict[str, list[int]] = {}

    def _build_byte_level(self, special_ids: set[int]) -> None:
        missing = [byte for byte in range(256) if BYTE_TO_CHAR[byte] not in self._token_ids]
        if missing:
            raise ValueError(f"a byte-level vocabulary needs a token for every byte; missing bytes {missing[:8]}")
        self._byte_ids = [self._token_ids[BYTE_TO_CHAR[byte]] for byte in range(256)]
        self._id_bytes = [
            token.encode("utf-8") if i in special_ids else token_to_bytes(token) for i, token in enumerate(self.tokens)
        ]

    def _build_sentencepiece(self, special_ids: set[int], results: set[int]) -> None:
        fallback = {byte_token(byte): byte for byte in range(256)}
        byte_ids: dict[int, int] = {}
        self._char_ids: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            if i in special_ids or i in results:
                continue
            if token in fallback and fallback[token] not in byte_ids:
                byte_ids[fallback[token]] = i
            elif len(token) == 1:
                self._char_ids.setdefault(token, i)
        if self.byte_fallback and len(byte_ids) < 256:
            missing = [byte_token(byte) for byte in range(256) if byte not in byte_ids]
            raise ValueError(f"byte_fallback needs the 256 tokens <0x00>..<0xFF>; missing {missing[:4]}")
        if not self.byte_fallback and self._unk_id is None:
            raise ValueError("a sentencepiece tokenizer needs byte_fallback or an unk_token for unseen characters")
        self._byte_ids = [byte_ids.get(byte, -1) for byte in range(256)]
        byte_of_id = {i: byte for byte, i in byte_ids.items()} if self.byte_fallback else {}
        self._id_bytes = [
            bytes([byte_of_id[i]]) if i in byte_of_id
            else token.encode("utf-8") if i in special_ids
            else token.replace(SPIECE_UNDERLINE, " ").encode("utf-8")
            for i, token in enumerate(self.tokens)
        ]

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.tokens)

    def token_to_id(self, token: str) -> int:
        """Id of a token string (special tokens included); an unknown token is a ``KeyError``."""
        if token in self.special_tokens:
            return self.special_tokens[token]
        if token not in self._token_ids:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return self._token_ids[token]

    def id_to_token(self, token_id: int) -> str:
        """The token string of ``token_id``."""
        self._check_ids([token_id])
        return self.tokens[token_id]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes ``token_id`` contributes when decoding (``"▁"`` read as a space)."""
        self._check_ids([token_id])
        return self._id_bytes[token_id]

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; special tokens in it are always matched.

        ``add_special_tokens`` puts ``prefix_ids`` before and ``suffix_ids`` after the text (LLaMA's
        BOS ``<s>``, RoBERTa's ``<s> … </s>``; a Hugging Face ``post_processor``), as the model saw
        its training documents.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids: list[int] = list(self.prefix_ids) if add_special_tokens else []
        offset = 0
        for segment, is_special in split_special(text, self.special_tokens, self.special_token_matching):
            if is_special:
                ids.append(self.special_tokens[segment])
            else:
                for chunk in self.pretokenizer.chunks(segment, at_start=offset == 0):
                    ids.extend(self._encode_chunk(chunk))
            offset += len(segment)
        if add_special_tokens:
            ids.extend(self.suffix_ids)
        return ids

    def _encode_chunk(self, chunk: str) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        if self.ignore_merges:
            whole = self._whole_token(chunk)
            if whole is not None:
                return [whole]
        ids = apply_merges(self._base_symbols(chunk), self._merge_ranks)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def _whole_token(self, chunk: str) -> int | None:
        if self.kind == "byte_level":
            return self._token_ids.get("".join(BYTE_TO_CHAR[byte] for byte in chunk.encode("utf-8")))
        return self._token_ids.get(chunk)

    def _base_symbols(self, chunk: str) -> list[int]:
        if self.kind == "byte_level":
            byte_ids = self._byte_ids
            return [byte_ids[byte] for byte in chunk.encode("utf-8")]
        symbols: list[int] = []
        previous_unknown = False
        for char in chunk:
            char_id = self._char_ids.get(char)
            if char_id is not None:
                symbols.append(char_id)
                previous_unknown = False
            elif self.byte_fallback:
                symbols.extend(self._byte_ids[byte] for byte in char.encode("utf-8"))
                previous_unknown = False
            else:
                if not (self.fuse_unk and previous_unknown):
                    symbols.append(self._unk_id)
                previous_unknown = True
        return symbols

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; incomplete UTF-8 becomes U+FFFD."""
        ids = list(ids)
        self._check_ids(ids)
        text = b"".join(self._id_bytes[i] for i in ids).decode("utf-8", errors="replace")
        strips_prefix = self.kind == "sentencepiece" and self.pretokenizer.prepend_scheme != "never"
        if strips_prefix and ids and ids[0] not in self._special_ids and text.startswith(" "):
            text = text[1:]
        return text

    def _check_ids(self, ids: Sequence[int]) -> None:
        size = len(self.tokens)
        for token_id in ids:
            if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < size:
                raise ValueError(f"token id {token_id!r} is not an int in [0, {size})")

    def to_dict(self) -> dict:
        """The JSON-ready description of the module docstring's file format."""
        rule = self.pretokenizer
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "tokens": list(self.tokens),
            "merges": [list(merge) for merge in self.merges],
            "special_tokens": dict(self.special_tokens),
            "special_token_matching": {text: asdict(rule) for text, rule in self.special_token_matching.items()},
            "pattern": rule.pattern,
            "split_digits": rule.split_digits,
            "normalization": rule.normalization,
            "prepend_scheme": rule.prepend_scheme,
            "prepend_unless_present": rule.prepend_unless_present,
            "byte_fallback": self.byte_fallback,
            "unk_token": self.unk_token,
            "fuse_unk": self.fuse_unk,
            "ignore_merges": self.ignore_merges,
            "prefix_ids": list(self.prefix_ids),
            "suffix_ids": list(self.suffix_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BPETokenizer:
        """Inverse of :meth:`to_dict`; a file of another format or version is refused."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise ValueError(f"not an {FORMAT_NAME} file: format is {data.get('format') if isinstance(data, Mapping) else data!r}")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported {FORMAT_NAME} version {data.get('version')!r}; this code reads {FORMAT_VERSION}")
        options = {key: data[key] for key in (
            "kind", "special_tokens", "pattern", "split_digits", "normalization", "prepend_scheme",
            "prepend_unless_present", "byte_fallback", "unk_token", "fuse_unk", "ignore_merges", "prefix_ids", "suffix_ids",
            "special_token_matching",
        ) if key in data}
        return cls(data["tokens"], data["merges"], **options)

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file of the module docstring to ``path``."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def __repr__(self) -> str:
        return f"BPETokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, merges={len(self.merges)})"
