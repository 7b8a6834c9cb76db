"""Corpus deduplication (数据去重): exact dedup after normalisation, then MinHash + LSH fuzzy dedup.

Qwen (Bai et al., 2023, §2.1) and Baichuan 2 (Yang et al., 2023, §2.1) both describe this pipeline:
normalise the text and drop exact copies, then find near-duplicates (近似重复) with MinHash
signatures (Broder, 1997) grouped by locality-sensitive hashing (局部敏感哈希, LSH; Indyk and
Motwani, 1998; Leskovec, Rajaraman and Ullman, *Mining of Massive Datasets*, ch. 3).

Conventions of this module:

* **Normalisation** (:func:`normalize_text`): Unicode NFKC (full-width ``ＡＢＣ１２３`` becomes
  ``ABC123``, the ideographic space U+3000 a plain space), then ``str.casefold`` when
  ``casefold=True`` (``"Straße"`` → ``"strasse"``), then every run of whitespace (what ``str.split()``
  splits on) becomes one space and the ends are stripped. In that order.
* **Exact dedup** keeps the *first* occurrence of each normalised text; the kept indices come back in
  increasing order.
* **Shingles** are the character n-grams of the normalised text (characters, not words, so that
  Chinese, which has no spaces, works too); a text shorter than ``n`` is one shingle, an empty text none.
* **Hashes**: a shingle's hash is datasketch's ``sha1_hash32``, the first 4 bytes of its SHA-1 read
  little-endian, an int in ``[0, 2³²)``.
* **MinHash**: permutation ``i`` is ``h ↦ (a_i·h + b_i) mod p`` with the Mersenne prime
  ``p = 2³¹ − 1``, ``a_i ∈ [1, p)`` and ``b_i ∈ [0, p)``; since ``a_i·h < 2³¹·2³² = 2⁶³`` the product
  fits in int64 exactly, so every implementation gets the same bits. (datasketch's "legacy" scheme, its
  only one before 2.0.0, uses ``2⁶¹ − 1`` and its ``a·h`` overflows uint64, datasketch issues #99 and
  #239; 2.0.0's default "affine32" pre-mixes the hash and works modulo ``2³²``: compare *estimates*
  with datasketch, never signatures.) The signature of the empty set is ``p`` everywhere, larger than
  any permuted value, so that ``signature(A ∪ B) = min(signature(A), signature(B))`` holds for it too.
* **LSH**: the first ``bands · rows ≤ k`` entries of a signature are cut into ``bands`` contiguous
  blocks of ``rows`` values (the rest is unused, as in datasketch, whose best ``(b, r)`` for 128
  permutations and threshold 0.8 is (9, 13): 117 entries); two documents are candidates when any band
  is equal *in the same position*. Pairs are ``(i, j)`` with ``i < j``, each once, sorted.
* **Verification**: a candidate is kept when its estimated Jaccard similarity (the fraction of equal
  signature entries, all ``k`` of them) is ``≥ threshold``.
"""

from __future__ import annotations

import hashlib
import random
import struct
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

__all__ = [
    "MERSENNE_PRIME_31",
    "normalize_text",
    "document_hash",
    "exact_dedup",
    "char_shingles",
    "sha1_hash32",
    "shingle_hashes",
    "jaccard",
    "minhash_permutations",
    "minhash_signature",
    "minhash_signatures",
    "estimated_jaccard",
    "lsh_candidate_pairs",
    "near_duplicate_pairs",
    "candidate_probability",
    "weighted_lsh_error",
    "optimal_bands_rows",
    "PlantedCorpus",
    "planted_near_duplicates",
]

MERSENNE_PRIME_31 = 2**31 - 1
"""The prime ``p`` of the MinHash permutations: ``a·h`` with ``a < p`` and ``h < 2³²`` fits in int64."""


def normalize_text(text: str, casefold: bool = True) -> str:
    """``text`` in NFKC, case-folded if ``casefold``, whitespace runs collapsed to one space and stripped."""
    text = unicodedata.normalize("NFKC", text)
    if casefold:
        text = text.casefold()
    return " ".join(text.split())


def document_hash(text: str, casefold: bool = True) -> str:
    """The SHA-1 (hex) of the normalised text: equal for documents that are exact duplicates after normalisation."""
    return hashlib.sha1(normalize_text(text, casefold).encode("utf-8")).hexdigest()


def exact_dedup(documents: Sequence[str], casefold: bool = True) -> list[int]:
    """Indices of the documents kept: the first of each group with the same normalised text, increasing."""
    seen: set[str] = set()
    kept = []
    for index, document in enumerate(documents):
        digest = document_hash(document, casefold)
        if digest not in seen:
            seen.add(digest)
            kept.append(index)
    return kept


def char_shingles(text: str, n: int = 5, casefold: bool = True) -> set[str]:
    """The set of character ``n``-grams (字符 n-gram) of the normalised text.

    A normalised text shorter than ``n`` is a single shingle (itself); an empty one has none.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    text = normalize_text(text, casefold)
    if len(text) <= n:
        return {text} if text else set()
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def sha1_hash32(data: bytes) -> int:
    """datasketch's 32-bit hash: the first 4 bytes of SHA-1, little-endian."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def shingle_hashes(shingles: Iterable[str]) -> Tensor:
    """``[n]`` int64 hashes in ``[0, 2³²)`` of the shingles (UTF-8), sorted so that the result is reproducible."""
    values = sorted(sha1_hash32(s.encode("utf-8")) for s in shingles)
    return torch.tensor(values, dtype=torch.int64).reshape(-1)


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity |A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def minhash_permutations(num_perm: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(a, b)``, each ``[num_perm]`` int64: ``a`` uniform in ``[1, p)``, ``b`` uniform in ``[0, p)``
    (drawn in that order from ``generator``)."""
    a = torch.randint(1, MERSENNE_PRIME_31, (num_perm,), generator=generator, dtype=torch.int64)
    b = torch.randint(0, MERSENNE_PRIME_31, (num_perm,), generator=generator, dtype=torch.int64)
    return a, b


def minhash_signature(hashes: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The MinHash signature (最小哈希签名) of one set.

    Args:
        hashes: ``[n]`` int64 shingle hashes in ``[0, 2³²)`` (``n`` may be 0).
        a, b: ``[k]`` int64 permutation parameters, ``1 ≤ a < p`` and ``0 ≤ b < p``, ``p = 2³¹ − 1``.

    Returns:
        ``[k]`` int64: ``sig[i] = min_j (a[i]·hashes[j] + b[i]) mod p``; all ``p`` for the empty set.
    """
    permuted = (a[:, None] * hashes[None, :] + b[:, None]) % MERSENNE_PRIME_31          # [k, n]
    empty = torch.full((a.shape[0], 1), MERSENNE_PRIME_31, dtype=torch.int64)
    return torch.cat([permuted, empty], dim=1).amin(dim=1)


def minhash_signatures(sets_of_hashes: Sequence[Tensor], a: Tensor, b: Tensor) -> Tensor:
    """``[N, k]``: the signature of each of N sets (a convenience loop over :func:`minhash_signature`)."""
    return torch.stack([minhash_signature(h, a, b) for h in sets_of_hashes]) if sets_of_hashes \
        else torch.empty(0, a.shape[0], dtype=torch.int64)


def estimated_jaccard(first: Tensor, second: Tensor) -> Tensor:
    """The MinHash estimate of the Jaccard similarity: the fraction of equal entries (last dimension), float64."""
    return (first == second).double().mean(dim=-1)


def _check_banding(signatures: Tensor, bands: int, rows: int) -> None:
    if signatures.dim() != 2:
        raise ValueError(f"signatures must be [N, k], got shape {tuple(signatures.shape)}")
    if bands < 1 or rows < 1:
        raise ValueError(f"bands and rows must be at least 1, got {bands} and {rows}")
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands × rows exceeds the signature length: {bands} × {rows} > {signatures.shape[1]}")


def lsh_candidate_pairs(signatures: Tensor, bands: int, rows: int) -> list[tuple[int, int]]:
    """Candidate pairs of LSH banding (分桶): documents equal on at least one band.

    Args:
        signatures: ``[N, k]`` int64 MinHash signatures, ``k ≥ bands · rows``.
        bands, rows: band ``t`` is ``signatures[:, t·rows : (t+1)·rows]``.

    Returns:
        The pairs ``(i, j)``, ``i < j``, each once, sorted. A ``ValueError`` when ``bands · rows > k``.
    """
    _check_banding(signatures, bands, rows)
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[tuple[int, ...], list[int]] = {}
        for document, key in enumerate(signatures[:, band * rows : (band + 1) * rows].tolist()):
            buckets.setdefault(tuple(key), []).append(document)
        for members in buckets.values():
            pairs.update((i, j) for n, i in enumerate(members) for j in members[n + 1 :])
    return sorted(pairs)


def near_duplicate_pairs(signatures: Tensor, bands: int, rows: int, threshold: float) -> list[tuple[int, int]]:
    """The LSH candidates whose estimated Jaccard similarity is ``≥ threshold``, sorted."""
    return [(i, j) for i, j in lsh_candidate_pairs(signatures, bands, rows)
            if estimated_jaccard(signatures[i], signatures[j]).item() >= threshold]


def candidate_probability(similarity: Tensor | float, bands: int, rows: int) -> Tensor:
    """The S-curve (S 形曲线): the probability ``1 − (1 − s^rows)^bands`` that a pair of Jaccard
    similarity ``s`` shares at least one band."""
    s = torch.as_tensor(similarity, dtype=torch.float64)
    return 1 - (1 - s**rows) ** bands


def _integral(function, low: float, high: float, points: int = 2001) -> float:
    if high <= low:
        return 0.0
    grid = torch.linspace(low, high, points, dtype=torch.float64)
    return torch.trapezoid(function(grid), grid).item()


def weighted_lsh_error(threshold: float, bands: int, rows: int, false_positive_weight: float = 0.5,
                       false_negative_weight: float = 0.5) -> float:
    """The weighted areas of the S-curve ``P`` of ``(bands, rows)`` on the wrong side of ``threshold``:
    ``false_positive_weight · ∫₀ᵗ P(s) ds + false_negative_weight · ∫ₜ¹ (1 − P(s)) ds`` (trapezoid rule)."""
    false_positive = _integral(lambda s: candidate_probability(s, bands, rows), 0.0, threshold)
    false_negative = _integral(lambda s: 1 - candidate_probability(s, bands, rows), threshold, 1.0)
    return false_positive_weight * false_positive + false_negative_weight * false_negative


def optimal_bands_rows(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                       false_negative_weight: float = 0.5) -> tuple[int, int]:
    """The ``(bands, rows)`` with ``bands · rows ≤ num_perm`` minimising :func:`weighted_lsh_error`:
    datasketch's ``_optimal_param`` criterion (it integrates with scipy; here the trapezoid rule on
    2001 points). The first minimum in the order bands = 1, 2, …, then rows = 1, 2, … wins."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            error = weighted_lsh_error(threshold, bands, rows, false_positive_weight, false_negative_weight)
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


@dataclass(frozen=True)
class PlantedCorpus:
    """Documents with planted copies: ``planted[i]`` is the index of the original that document ``i``
    copies (``None`` for originals), ``kind[i]`` how ("original", "exact", "variant", "edited")."""

    documents: list[str]
    planted: list[int | None]
    kind: list[str]


_FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def _variant(text: str, rng: random.Random) -> str:
    """Equal after normalisation: full-width letters and digits, upper case, or extra whitespace around the
    text and inside its existing spaces (never where it had none)."""
    choice = rng.randrange(3)
    if choice == 0:
        return "".join(_FULL_WIDTH.get(c, c) if c.isalnum() else c for c in text)
    if choice == 1:
        return text.upper()
    return "\u3000 " + text.replace(" ", "  \t") + " \n"


def _edited(text: str, rng: random.Random, edits: int) -> str:
    """A few words (or, without spaces, characters) replaced or dropped: a near-duplicate."""
    words = text.split(" ") if " " in text else list(text)
    glue = " " if " " in text else ""
    for _ in range(edits):
        position = rng.randrange(len(words))
        if rng.random() < 0.5 and len(words) > 1:
            del words[position]
        else:
            words[position] = rng.choice(words)
    return glue.join(words)


def planted_near_duplicates(paragraphs: Sequence[str], copies: int, *, seed: int = 0,
                            edits: int = 2) -> PlantedCorpus:
    """The ``paragraphs`` followed by ``copies`` planted documents, each copying a random paragraph
    exactly, as a normalisation variant (full width, case, whitespace) or with ``edits`` word edits."""
    rng = random.Random(seed)
    documents, planted, kind = list(paragraphs), [None] * len(paragraphs), ["original"] * len(paragraphs)
    for _ in range(copies):
        source = rng.randrange(len(paragraphs))
        how = rng.choice(("exact", "variant", "edited"))
        text = paragraphs[source]
        copy = text if how == "exact" else _variant(text, rng) if how == "variant" else _edited(text, rng, edits)
        documents.append(copy)
        planted.append(source)
        kind.append(how)
    return PlantedCorpus(documents, planted, kind)
