"""Exercises of notebook 08_data_dedup_and_vocabulary (SYLLABUS L17): exact deduplication after
normalisation, the MinHash signature, LSH banding into candidate pairs, verified near-duplicates, and the
choice of (bands, rows) for a threshold.

The learner's functions return Python lists (indices, pairs); each is turned into an int64 tensor
(``adapt``) so that a difference is reported as "first difference at index …". Tensors, numpy arrays and
their scalars (a list of 0-d tensors from ``torch.arange``, ``np.argwhere``'s rows) are accepted alike. Every mistake is the
reference with one knob turned (a ``*_variant`` below), except the ones recognised by their symptom.
"""

from __future__ import annotations

import numbers
import unicodedata
from functools import lru_cache
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from llmcore.data import dedup as reference_dedup
from llmcore.data.dedup import MERSENNE_PRIME_31

from ..cases import CaseRandom
from ..framework import Case, CheckFailure, Mistake, is_numpy
from ..spec import Exercise, register

__all__ = [
    "EXACT_DEDUP",
    "MINHASH_SIGNATURE",
    "LSH_CANDIDATE_PAIRS",
    "NEAR_DUPLICATE_PAIRS",
    "OPTIMAL_BANDS_ROWS",
    "check_exact_dedup",
    "check_minhash_signature",
    "check_lsh_candidate_pairs",
    "check_near_duplicate_pairs",
    "check_optimal_bands_rows",
]

P = MERSENNE_PRIME_31


def _plain(value: Any) -> Any:
    """Tensors and numpy arrays or scalars (also as the items of a list, tuple or set) as Python lists and
    numbers, so that a numpy answer or a list of 0-d tensors is compared like a list of ints."""
    if isinstance(value, Tensor) or is_numpy(value):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, set):
        return [_plain(v) for v in value]
    return value


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_indices(value: Any) -> Any:
    """A list of indices as a 1-D int64 tensor; anything else unchanged, for the message."""
    plain = _plain(value)
    if isinstance(plain, (list, tuple)) and all(_is_index(v) for v in plain):
        return torch.tensor([int(v) for v in plain], dtype=torch.int64)
    return value


# --------------------------------------------------------------------------------------------------
# Exact dedup after normalisation
# --------------------------------------------------------------------------------------------------


def _normalised(text: str, *, form: str | None = "NFKC", casefold: bool = True, lower: bool = False,
                whitespace: str = "collapse", fold_first: bool = False) -> str:
    if fold_first and casefold:  # the mistaken order: case folded before NFKC
        text = text.casefold()
    if form is not None:
        text = unicodedata.normalize(form, text)
    if lower:
        text = text.lower()
    elif casefold and not fold_first:
        text = text.casefold()
    if whitespace == "collapse":
        return " ".join(text.split())
    if whitespace == "strip":
        return text.strip()
    return "".join(text.split())


def _dedup_variant(documents: Sequence[str], casefold: bool = True, *, keep: str = "first",
                   force_casefold: bool | None = None, **normalisation: Any) -> Tensor:
    fold = casefold if force_casefold is None else force_casefold
    groups: dict[str, list[int]] = {}
    for index, document in enumerate(documents):
        groups.setdefault(_normalised(document, casefold=fold, **normalisation), []).append(index)
    chosen = [members[0] if keep == "first" else members[-1] for members in groups.values()]
    return torch.tensor(sorted(chosen), dtype=torch.int64)


def _dedup_reference(documents: Sequence[str], casefold: bool = True) -> Tensor:
    return torch.tensor(reference_dedup.exact_dedup(documents, casefold), dtype=torch.int64)


def _dedup(**knobs: Any) -> Callable[..., Tensor]:
    return lambda documents, casefold=True: _dedup_variant(documents, casefold, **knobs)


def _same_indices_other_order(got: Any, expected: Any) -> bool:
    return (isinstance(got, Tensor) and isinstance(expected, Tensor) and got.shape == expected.shape
            and bool((got.sort().values == expected.sort().values).all()) and not bool((got == expected).all()))


def _adapt_dedup(learner: Callable[..., Any]) -> Callable[..., Any]:
    def adapted(documents: Sequence[str], casefold: bool = True) -> Any:
        kept = learner(documents, casefold)
        if isinstance(kept, (list, tuple)) and kept and all(isinstance(v, str) for v in kept):
            raise CheckFailure(
                "✘ exact_dedup must return a list of int indices (the positions of the kept documents), "
                "got a list of str: the kept texts themselves.\nHint: loop over enumerate(documents) and append i, "
                "not the document.", exercise="exact_dedup", mistake_id="texts_returned")
        return _as_indices(kept)
    return adapted


_WORDS = ["river", "lantern", "orchid", "meadow", "copper", "harbor", "willow", "thunder", "pebble", "saffron",
          "小船", "月光", "山谷", "灯笼", "星星", "竹林"]
_FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def _sentence(random: CaseRandom, words: int) -> str:
    picks = random.ids(len(_WORDS), (words,)).tolist()
    return " ".join(_WORDS[i] for i in picks) + f" {int(random.ids(1000, (1,)))}"


def _full_width(text: str) -> str:
    return "".join(_FULL_WIDTH.get(c, c) for c in text)


def _dedup_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    a, b, c, d = (_sentence(random, 4) for _ in range(4))
    cases = [
        Case("full-width ＡＢＣ/１２３, a circled ① and a composed vs decomposed é (NFKC); casefold=True",
             ([a, _full_width(a), "Caf\u00e9 " + b, "Cafe\u0301 " + b, c, "① " + d, "1 " + d],),
             {"casefold": True}),
        Case("doubled spaces, a tab, a newline, an ideographic space U+3000, a whitespace-only document; "
             "casefold=True",
             ([a, "  " + a.replace(" ", "  ") + "\n", b, b.replace(" ", "\t", 1), b.replace(" ", "\u3000"), "",
               " \n ", "ab cd " + c, "abcd " + c],),
             {"casefold": True}),
        Case("letter case: 'Zeta'/'ZETA'/'\U0001d419eta' (a mathematical bold Z, which NFKC makes a Z), "
             "'Straße'/'STRASSE' (casefold maps ß to ss); casefold=True",
             ([a, a.upper(), "Straße " + b, "STRASSE " + b, "zeta " + c, "Zeta " + c, "\U0001d419eta " + c,
               "\U0001d419ETA " + d, "zeta " + d, _full_width(a)],),
             {"casefold": True}),
        Case("casefold=False: documents that differ only in case are all kept",
             ([a, a.upper(), b, "  " + b, b.title(), _full_width(b)],),
             {"casefold": False}),
        Case("later exact copies: the first occurrence is kept and the order preserved",
             ([c, a, b, a, d, c, b, b, "x " + a],), {"casefold": True}),
        Case("no documents", ([],), {"casefold": True}),
    ]
    if hidden:
        documents = []
        for _ in range(40):
            pick = int(random.ids(6, (1,)))
            base = _sentence(random, 3 + pick)
            variant = [base, base.upper(), _full_width(base), " " + base.replace(" ", "   ") + " ", base, base.title()]
            documents.append(variant[int(random.ids(6, (1,)))] if documents and pick < 4 else base)
            if pick < 3 and len(documents) > 1:
                documents.append(documents[int(random.ids(len(documents), (1,)))])
        cases += [Case(f"{len(documents)} documents with random variants; casefold={fold}", (documents,),
                       {"casefold": fold}) for fold in (True, False)]
    return cases


EXACT_DEDUP = register(Exercise(
    id="exact_dedup",
    title="exact_dedup",
    syllabus=("L17",),
    reference=_dedup_reference,
    adapt=_adapt_dedup,
    cases=_dedup_cases,
    mistakes=[
        Mistake("no_nfkc", "the text is not NFKC-normalised: full-width ＡＢＣ１２３ stays apart from ABC123",
                "Unicode has several spellings of the same text (full-width forms, ligatures, composed and "
                "decomposed accents); NFKC maps them to one before anything is compared.",
                "text = unicodedata.normalize('NFKC', text) first.",
                output=_dedup(form=None)),
        Mistake("nfc_not_nfkc", "NFC is used instead of NFKC: full-width forms and circled digits (①) are kept apart",
                "NFC only composes accents; the K (compatibility) forms fold full-width letters and digits, "
                "circled numbers, ligatures and the ideographic space into the ordinary ones.",
                "unicodedata.normalize('NFKC', text), with the K.",
                output=_dedup(form="NFC")),
        Mistake("whitespace_not_collapsed", "whitespace is only stripped at the ends: runs inside are not collapsed",
                "two spaces, a tab or a newline inside a document must compare equal to one space.",
                "' '.join(text.split()) collapses every run of whitespace and strips the ends.",
                output=_dedup(whitespace="strip")),
        Mistake("whitespace_removed", "all whitespace is removed, so 'ab cd' and 'abcd' become the same document",
                "collapse whitespace to one space; removing it joins words that were apart.",
                "' '.join(text.split()), not ''.join(text.split()).",
                output=_dedup(whitespace="remove")),
        Mistake("case_not_folded", "case is not folded although casefold=True",
                "with casefold=True, 'ZETA' and 'zeta' are the same document.",
                "if casefold: text = text.casefold()",
                output=_dedup(force_casefold=False)),
        Mistake("case_folded_when_not_asked", "case is folded although casefold=False",
                "casefold=False declares that case matters (code, names): leave it as it is.",
                "fold only inside `if casefold:`.",
                output=_dedup(force_casefold=True)),
        Mistake("lower_not_casefold", "str.lower() is used instead of str.casefold(): 'Straße' and 'STRASSE' stay apart",
                "casefold is the Unicode case folding meant for comparison: it also maps ß to ss (and ﬀ, ς …); "
                "lower() does not.",
                "text.casefold(), not text.lower().",
                output=_dedup(lower=True)),
        Mistake("casefold_before_nfkc", "casefold() runs before NFKC: a letter NFKC turns into a capital (𝐙 → Z) "
                "stays capital",
                "the declared order is NFKC first, then casefold: compatibility forms such as the mathematical "
                "bold 𝐙 have no case of their own and become an ordinary capital only under NFKC.",
                "text = unicodedata.normalize('NFKC', text); then if casefold: text = text.casefold().",
                output=_dedup(fold_first=True)),
        Mistake("keeps_last", "the last occurrence of each duplicate group is kept instead of the first",
                "the first occurrence stays, the later copies go.",
                "remember what was seen; keep a document only if its key is not in the seen set yet.",
                output=_dedup(keep="last")),
        Mistake("order_lost", "the right documents are kept but the indices are not in increasing order",
                "return the kept indices in the order of the documents: a set or a dict keyed by hash loses it.",
                "append each kept index in the loop over enumerate(documents), or return sorted(kept).",
                detect=_same_indices_other_order),
    ],
    forbidden={reference_dedup.exact_dedup: "llmcore.data.dedup.exact_dedup",
               reference_dedup.normalize_text: "llmcore.data.dedup.normalize_text",
               reference_dedup.document_hash: "llmcore.data.dedup.document_hash"},
    delegation=lambda documents, casefold=True: reference_dedup.exact_dedup(documents, casefold),
    output_names=("kept indices",),
    fallback_hint="key = ' '.join(unicodedata.normalize('NFKC', text).casefold().split()) (casefold only if asked); "
                  "keep index i when its key (or its sha1) has not been seen; return the indices in order.",
))
check_exact_dedup = EXACT_DEDUP.check


# --------------------------------------------------------------------------------------------------
# The MinHash signature
# --------------------------------------------------------------------------------------------------


def _signature_variant(hashes: Tensor, a: Tensor, b: Tensor, *, reduce: str = "min", modulo: str = "before",
                       one_permutation: bool = False, swap_ab: bool = False, offset: bool = True,
                       empty: str = "p", floating: bool = False) -> Tensor:
    if one_permutation:
        a, b = a[:1].expand_as(a), b[:1].expand_as(b)
    if swap_ab:
        a, b = b, a
    if hashes.numel() == 0:
        return torch.full(a.shape, P if empty == "p" else 0, dtype=torch.int64)
    if floating:
        products = a[:, None].double() * hashes[None, :].double() + (b[:, None].double() if offset else 0)
        permuted = torch.fmod(products, float(P)).long()
    else:
        permuted = a[:, None] * hashes[None, :] + (b[:, None] if offset else 0)
        if modulo == "before":
            permuted = permuted % P
    best = permuted.amin(dim=1) if reduce == "min" else permuted.amax(dim=1)
    return best % P if modulo == "after" else best


def _signature(**knobs: Any) -> Callable[..., Tensor]:
    return lambda hashes, a, b: _signature_variant(hashes, a, b, **knobs)


def _entries_reach_p(got: Any, expected: Any) -> bool:
    return (isinstance(got, Tensor) and isinstance(expected, Tensor) and got.shape == expected.shape
            and bool(((got >= P) & (expected < P)).any()))


def _adapt_signature(learner: Callable[..., Any]) -> Callable[..., Any]:
    def adapted(hashes: Tensor, a: Tensor, b: Tensor) -> Any:
        signature = learner(hashes, a, b)
        if isinstance(signature, Tensor) and signature.dtype != torch.int64:
            raise CheckFailure(
                f"✘ minhash_signature must return an int64 tensor, got {signature.dtype}: the values reach 2³¹ − 2, "
                "and a float32 cannot hold them exactly.\nHint: compute with the int64 inputs as they are "
                "(a·h < 2⁶³ fits), and start an empty-set result with torch.full(..., p, dtype=torch.int64).",
                exercise="minhash_signature", mistake_id="not_int64")
        return signature
    return adapted


def _hashes(random: CaseRandom, n: int) -> Tensor:
    return torch.randint(0, 2**32, (n,), generator=random.generator, dtype=torch.int64)


def _permutations(random: CaseRandom, k: int) -> tuple[Tensor, Tensor]:
    return reference_dedup.minhash_permutations(k, random.generator)


def _signature_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    a, b = _permutations(random, 16)
    large = torch.tensor([2**32 - 1, 2**32 - 2, 2**31, 1, 0], dtype=torch.int64)
    a_large = torch.tensor([P - 1, P - 2, 2**30, 1, 7, P - 3, 3], dtype=torch.int64)
    b_large = torch.tensor([P - 1, 0, P - 5, 12345, 1, 2**30, P - 2], dtype=torch.int64)
    cases = [
        Case("hashes [n=9], a and b [k=16]", (_hashes(random, 9), a, b)),
        Case("one shingle: hashes [n=1], k=7", (_hashes(random, 1), *_permutations(random, 7))),
        Case("the largest values: hashes up to 2³² − 1 and a up to p − 1 (a·h + b stays below 2⁶³), k=7",
             (large, a_large, b_large)),
        Case("a repeated hash: hashes [n=6] with duplicates, k=5",
             (torch.cat([_hashes(random, 3)] * 2), *_permutations(random, 5))),
        Case("the empty set: hashes [n=0], k=11 (every entry is p = 2³¹ − 1)",
             (torch.empty(0, dtype=torch.int64), *_permutations(random, 11))),
    ]
    if hidden:
        cases += [Case("hashes [n=300], k=128", (_hashes(random, 300), *_permutations(random, 128))),
                  Case("hashes [n=0], k=3", (torch.empty(0, dtype=torch.int64), *_permutations(random, 3)))]
    return cases


MINHASH_SIGNATURE = register(Exercise(
    id="minhash_signature",
    title="minhash_signature",
    syllabus=("L17",),
    reference=reference_dedup.minhash_signature,
    adapt=_adapt_signature,
    cases=_signature_cases,
    mistakes=[
        Mistake("one_permutation", "the same permutation (a[0], b[0]) is used for every entry of the signature",
                "each entry i has its own random permutation h ↦ (a[i]·h + b[i]) mod p; k entries are k independent "
                "minima, which is what makes the fraction of equal entries estimate the Jaccard similarity.",
                "broadcast: (a[:, None] * hashes[None, :] + b[:, None]) % p is [k, n], then the min over n.",
                output=_signature(one_permutation=True)),
        Mistake("max_not_min", "the maximum is taken instead of the minimum",
                "MinHash keeps the smallest permuted value of the set (the first element under the permutation).",
                ".amin(dim=1) (or .min(dim=1).values), not the max.",
                output=_signature(reduce="max")),
        Mistake("mod_forgotten", "the mod p is forgotten: entries reach p or more, which (a·h + b) mod p never does",
                "a permutation of [0, p) needs the mod; without it a·h + b is mostly above p, and the minimum "
                "simply follows the smallest hash (or stays at the starting value p).",
                "((a[:, None] * hashes[None, :] + b[:, None]) % p).",
                detect=_entries_reach_p),
        Mistake("mod_after_min", "the mod p is taken after the minimum instead of before",
                "first permute every hash ((a·h + b) mod p), then take the smallest; the minimum of the unreduced "
                "values is another element.",
                "values = (a[:, None] * hashes[None, :] + b[:, None]) % p; signature = values.amin(dim=1).",
                output=_signature(modulo="after")),
        Mistake("offset_forgotten", "b is forgotten: (a·h) mod p instead of (a·h + b) mod p",
                "the offset b belongs to the permutation; without it, hash 0 always maps to 0.",
                "(a[:, None] * hashes[None, :] + b[:, None]) % p.",
                output=_signature(offset=False)),
        Mistake("a_b_swapped", "a and b are swapped: (b·h + a) mod p",
                "a multiplies the hash, b is added.",
                "(a[:, None] * hashes[None, :] + b[:, None]) % p.",
                output=_signature(swap_ab=True)),
        Mistake("computed_in_float", "the products are computed in floating point and lose their last bits",
                "a·h reaches 2⁶³ but a float64 holds only 53 bits exactly; int64 arithmetic is exact here.",
                "keep the int64 tensors: no .double(), no float('inf'), no numpy float.",
                output=_signature(floating=True)),
        Mistake("empty_not_p", "the empty set's signature is 0 instead of p",
                "as declared, an empty set has p everywhere: larger than any real value, so min(sig(A), sig(∅)) = sig(A).",
                "torch.full((k,), p, dtype=torch.int64) when there are no hashes.",
                output=_signature(empty="zero")),
    ],
    forbidden={reference_dedup.minhash_signature: "llmcore.data.dedup.minhash_signature",
               reference_dedup.minhash_signatures: "llmcore.data.dedup.minhash_signatures"},
    delegation=lambda hashes, a, b: reference_dedup.minhash_signature(hashes, a, b),
    output_names=("signature",),
    fallback_hint="p = 2**31 - 1; values = (a[:, None] * hashes[None, :] + b[:, None]) % p  # [k, n]; "
                  "signature = values.amin(dim=1), or all p when n = 0.",
))
check_minhash_signature = MINHASH_SIGNATURE.check


# --------------------------------------------------------------------------------------------------
# LSH banding: candidate pairs
# --------------------------------------------------------------------------------------------------

REFUSED = "a ValueError (bands × rows > signature length)"


def _as_pairs(value: Any) -> Any:
    """A list of (i, j) pairs as a ``[P, 2]`` int64 tensor in sorted order (the order is free);
    anything else unchanged, for the message."""
    pairs = _plain(value)
    if isinstance(pairs, (list, tuple)) and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_index(i) for i in p) for p in pairs):
        return torch.tensor(sorted((int(i), int(j)) for i, j in pairs), dtype=torch.int64).reshape(-1, 2)
    return value


def _refusing(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(signatures: Tensor, bands: int, rows: int) -> Any:
        try:
            return _as_pairs(function(signatures, bands, rows))
        except ValueError:
            return REFUSED
    return run


def _adapt_lsh(learner: Callable[..., Any]) -> Callable[..., Any]:
    """The learner's pairs as ``_refusing`` gives them; a ValueError where bands × rows ≤ k is explained here,
    with the numbers (the sentinel string would read as "got a str")."""

    def run(signatures: Tensor, bands: int, rows: int) -> Any:
        try:
            return _as_pairs(learner(signatures, bands, rows))
        except ValueError as error:
            k = signatures.shape[1]
            if isinstance(bands, int) and isinstance(rows, int) and bands * rows <= k:
                mistake = LSH_CANDIDATE_PAIRS.mistake("refuses_unused_entries")
                raise CheckFailure(
                    f"✘ lsh_candidate_pairs raised ValueError({str(error)!r}) for bands={bands}, rows={rows} and "
                    f"signatures of k={k} entries: bands × rows = {bands * rows} "
                    f"{'=' if bands * rows == k else '<'} k is allowed; only bands × rows > k is an error.\n"
                    f"Diagnosis: {mistake.name}.\nIdea: {mistake.idea}\nHint: {mistake.hint}",
                    exercise="lsh_candidate_pairs", mistake_id=mistake.id) from None
            return REFUSED
    return run


def _bands(signatures: Tensor, bands: int, rows: int, layout: str) -> list[Tensor]:
    if layout == "strided":
        return [signatures[:, band::bands][:, :rows] for band in range(bands)]
    if layout == "sliding":
        return [signatures[:, band : band + rows] for band in range(bands)]
    if layout == "swapped":
        return [signatures[:, band * bands : (band + 1) * bands] for band in range(rows)]
    return [signatures[:, band * rows : (band + 1) * rows] for band in range(bands)]


def _lsh_variant(signatures: Tensor, bands: int, rows: int, *, refuse: bool = True, layout: str = "contiguous",
                 self_pairs: bool = False, both_orders: bool = False, once: bool = True,
                 shared_buckets: bool = False, every_band: bool = False, skip_last: bool = False,
                 key: str = "tuple") -> list[tuple[int, int]]:
    if refuse and bands * rows > signatures.shape[1]:
        raise ValueError("bands × rows > signature length")
    parts = _bands(signatures, bands, rows, layout)
    if skip_last:
        parts = parts[:-1]
    if key == "sum":
        parts = [part.sum(dim=1, keepdim=True) for part in parts]
    elif key == "set":
        parts = [part.sort(dim=1).values for part in parts]
    n = signatures.shape[0]
    pairs = []
    for i in range(n):
        for j in range(n):
            if i == j and not self_pairs or i > j and not both_orders:
                continue
            if shared_buckets:
                keys_i = {tuple(part[i].tolist()) for part in parts}
                shared = sum(tuple(part[j].tolist()) in keys_i for part in parts)
            else:
                shared = sum(bool(torch.equal(part[i], part[j])) for part in parts)
            if every_band:
                shared = int(shared == len(parts))
            pairs += [(i, j)] * (min(shared, 1) if once else shared)
    return pairs


def _lsh(**knobs: Any) -> Callable[..., Any]:
    return _refusing(lambda signatures, bands, rows: _lsh_variant(signatures, bands, rows, **knobs))


def _not_refused(got: Any, expected: Any) -> bool:
    return isinstance(expected, str) and not isinstance(got, str)


def _refused_wrongly(got: Any, expected: Any) -> bool:
    return isinstance(got, str) and not isinstance(expected, str)


def _fresh_signatures(random: CaseRandom, n: int, k: int) -> Tensor:
    """Rows whose entries never collide by chance (distinct values), to be copied from by the cases."""
    return torch.randperm(10 * n * k, generator=random.generator)[: n * k].reshape(n, k).to(torch.int64) + 1000


def _planted_signatures(random: CaseRandom, bands: int, rows: int) -> Tensor:
    """Ten documents whose shared bands tell every banding mistake apart.

    0 ~ 1: band 0 equal; 0 ~ 2: bands 1 and 3 equal (one pair, two buckets); 3 = 4 entirely;
    5's band 2 equals 6's band 0 (the same values in different bands: not a candidate);
    7 agrees with 0 on columns 0, bands, 2·bands, … (a strided band, not a contiguous one);
    8 ~ 9: columns bands … 2·bands − 1 equal (a block of ``bands`` entries, which no band covers when
    bands = 4, rows = 3); 10 ~ 11: the last band equal, and columns 1 … rows (no band);
    12 and 13: band 1 holds the same values in another order (not a candidate: a band is a sequence);
    14 and 15: band 0 has the same sum, not the same values (not a candidate).
    """
    k = bands * rows
    s = _fresh_signatures(random, 16, k)
    band = lambda t: slice(t * rows, (t + 1) * rows)  # noqa: E731
    s[1, band(0)] = s[0, band(0)]
    s[2, band(1)] = s[0, band(1)]
    s[2, band(3)] = s[0, band(3)]
    s[4] = s[3]
    s[5, band(2)] = s[6, band(0)]
    s[7, 0::bands] = s[0, 0::bands]
    s[9, bands : 2 * bands] = s[8, bands : 2 * bands]
    s[11, band(bands - 1)] = s[10, band(bands - 1)]
    s[11, 1 : 1 + rows] = s[10, 1 : 1 + rows]  # a window overlapping bands 0 and 1, which only sliding bands see
    s[13, band(1)] = s[12, band(1)].flip(0)
    s[15, band(0)] = s[14, band(0)]
    s[15, 0] += 1
    s[15, 1] -= 1
    return s


def _lsh_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    four_by_three = _planted_signatures(random, 4, 3)
    cases = [
        Case("signatures [N=16, k=12], bands=4, rows=3, with planted shared bands (one pair shares only the last band; "
             "one band holds another's values in another order, one has the same sum)", (four_by_three, 4, 3)),
        Case("signatures [N=16, k=15], bands=5, rows=3", (_planted_signatures(random, 5, 3), 5, 3)),
        Case("signatures [N=16, k=12], bands=3, rows=4", (_planted_signatures(random, 3, 4), 3, 4)),
        Case("signatures [N=16, k=14], bands=4, rows=3: the last 2 entries are not used",
             (torch.cat([four_by_three, _fresh_signatures(random, 16, 2)], dim=1), 4, 3)),
        Case("bands=5, rows=3 but k=12: must raise a ValueError", (four_by_three, 5, 3)),
        Case("three identical documents [N=3, k=10], bands=2, rows=5: every pair once",
             (_fresh_signatures(random, 1, 10).expand(3, 10).clone(), 2, 5)),
        Case("one document [N=1, k=6], bands=3, rows=2: no pairs", (_fresh_signatures(random, 1, 6), 3, 2)),
    ]
    if hidden:
        base = torch.randint(0, 3, (30, 24), generator=random.generator, dtype=torch.int64)
        cases += [Case("signatures [N=30, k=24] of values in {0, 1, 2}, bands=8, rows=3", (base, 8, 3)),
                  Case("signatures [N=30, k=24], bands=7, rows=3 (21 entries used)", (base, 7, 3)),
                  Case("bands=5, rows=5 but k=24: must raise a ValueError", (base, 5, 5))]
    return cases


def _lsh_reference(signatures: Tensor, bands: int, rows: int) -> Any:
    return _refusing(reference_dedup.lsh_candidate_pairs)(signatures, bands, rows)


LSH_CANDIDATE_PAIRS = register(Exercise(
    id="lsh_candidate_pairs",
    title="lsh_candidate_pairs",
    syllabus=("L17",),
    reference=_lsh_reference,
    adapt=_adapt_lsh,
    cases=_lsh_cases,
    mistakes=[
        Mistake("strided_bands", "the bands are strided (columns t, t + bands, …) instead of contiguous blocks",
                "band t is the block of rows consecutive entries signatures[:, t·rows : (t+1)·rows].",
                "signatures[:, t * rows:(t + 1) * rows], or signatures.view(N, bands, rows)[:, t].",
                output=_lsh(layout="strided")),
        Mistake("overlapping_bands", "the bands overlap: band t starts at column t instead of t·rows",
                "the bands cut the signature into disjoint blocks; each entry belongs to exactly one band.",
                "start band t at t * rows.",
                output=_lsh(layout="sliding")),
        Mistake("bands_rows_swapped", "bands and rows are swapped: the signature is cut into rows blocks of bands entries",
                "bands is how many blocks, rows how many entries per block.",
                "signatures.view(N, bands, rows): band t is [:, t, :].",
                output=_lsh(layout="swapped")),
        Mistake("self_pairs", "pairs (i, i) are included: a document is its own candidate",
                "a candidate pair joins two different documents.",
                "only pairs i < j of the same bucket.",
                output=_lsh(self_pairs=True)),
        Mistake("both_orders", "each pair comes twice, as (i, j) and (j, i)",
                "a pair is unordered: report it once, with i < j.",
                "for n, i in enumerate(members): for j in members[n + 1:]: pairs.add((i, j)).",
                output=_lsh(both_orders=True)),
        Mistake("pairs_repeated", "a pair sharing several bands is listed once per band",
                "two documents are candidates if they share *any* band; collect the pairs in a set.",
                "pairs = set(); … pairs.add((i, j)); return sorted(pairs).",
                output=_lsh(once=False)),
        Mistake("buckets_shared_across_bands", "one bucket table serves all bands: equal values in different bands collide",
                "each band has its own hash table (datasketch keeps one per band): band 2 of one document may "
                "equal band 0 of another by chance, and that is no evidence of similarity.",
                "key the bucket by (t, tuple(band values)), or build a new dict for every band.",
                output=_lsh(shared_buckets=True)),
        Mistake("every_band_required", "a pair is a candidate only if *all* bands agree (AND instead of OR)",
                "one equal band is enough; requiring all of them finds only identical signatures.",
                "add the pair when any band's bucket holds both documents.",
                output=_lsh(every_band=True)),
        Mistake("last_band_skipped", "the last band is skipped: range(bands - 1) instead of range(bands)",
                "every one of the b bands gets its buckets; a pair that shares only the last band is a candidate too.",
                "for t in range(bands): band = signatures[:, t * rows:(t + 1) * rows].",
                output=_lsh(skip_last=True)),
        Mistake("bucket_key_sum", "the bucket key is the sum of the band's values, not the values themselves",
                "two bands collide only when all their rows are equal; different values can have the same sum.",
                "key = tuple(band[i].tolist()): the whole sequence of values.",
                output=_lsh(key="sum")),
        Mistake("bucket_key_set", "the bucket key is the set of the band's values: their order is lost",
                "a band is a sequence: row j of one signature is compared with row j of the other (entry j is "
                "the minimum under permutation j), so the same values in another order are not a match.",
                "key = tuple(band[i].tolist()), not frozenset(...) or sorted(...).",
                output=_lsh(key="set")),
        Mistake("not_refused", "bands × rows > signature length is not refused",
                "when the bands need more entries than the signature has, the last bands come out short or "
                "empty (and every pair shares an empty band); say so instead.",
                "if bands * rows > signatures.shape[1]: raise ValueError(...).",
                detect=_not_refused),
        Mistake("refuses_unused_entries", "bands × rows ≤ signature length is refused (only more than k is an error)",
                "the bands may use fewer entries than the signature has (datasketch's best (b, r) for 128 "
                "permutations at threshold 0.8 is (9, 13), 117 entries): only more than k is an error.",
                "raise only if bands * rows > signatures.shape[1]; band t is signatures[:, t*rows:(t+1)*rows].",
                detect=_refused_wrongly),
    ],
    forbidden={reference_dedup.lsh_candidate_pairs: "llmcore.data.dedup.lsh_candidate_pairs",
               reference_dedup.near_duplicate_pairs: "llmcore.data.dedup.near_duplicate_pairs"},
    delegation=lambda signatures, bands, rows: reference_dedup.lsh_candidate_pairs(signatures, bands, rows),
    output_names=("pairs",),
    fallback_hint="check bands * rows <= k; for each band t: buckets = {}; key = tuple(signatures[i, t*rows:(t+1)*rows]); "
                  "pairs.add((i, j)) for i < j in one bucket; return sorted(pairs).",
))
check_lsh_candidate_pairs = LSH_CANDIDATE_PAIRS.check


# --------------------------------------------------------------------------------------------------
# Verified near-duplicates
# --------------------------------------------------------------------------------------------------


def _near_variant(signatures: Tensor, bands: int, rows: int, threshold: float, *, verify: str = "entries",
                  strict: bool = False, candidates: str = "lsh") -> list[tuple[int, int]]:
    n = signatures.shape[0]
    pairs = (reference_dedup.lsh_candidate_pairs(signatures, bands, rows) if candidates == "lsh"
             else [(i, j) for i in range(n) for j in range(i + 1, n)])
    kept = []
    for i, j in pairs:
        if verify == "none":
            kept.append((i, j))
            continue
        if verify == "sets":  # the Jaccard similarity of the sets of signature values
            a, b = set(signatures[i].tolist()), set(signatures[j].tolist())
            estimate = len(a & b) / len(a | b)
        elif verify == "used":
            used = bands * rows
            estimate = (signatures[i, :used] == signatures[j, :used]).double().mean().item()
        elif verify == "first_band":
            estimate = (signatures[i, :rows] == signatures[j, :rows]).double().mean().item()
        elif verify == "bands":
            used = bands * rows
            equal = signatures[i, :used].view(bands, rows) == signatures[j, :used].view(bands, rows)
            estimate = equal.all(dim=1).double().mean().item()
        else:
            estimate = (signatures[i] == signatures[j]).double().mean().item()
        if estimate > threshold if strict else estimate >= threshold:
            kept.append((i, j))
    return kept


def _near(**knobs: Any) -> Callable[..., Any]:
    return lambda signatures, bands, rows, threshold: _as_pairs(
        _near_variant(signatures, bands, rows, threshold, **knobs))


def _adapt_near(learner: Callable[..., Any]) -> Callable[..., Any]:
    return lambda signatures, bands, rows, threshold: _as_pairs(learner(signatures, bands, rows, threshold))


def _verification_signatures(random: CaseRandom) -> Tensor:
    """Nine documents, k = 12 (bands=3, rows=4), each pair at a known estimate:

    0 ~ 1: band 0 equal, 9 of 12 entries (0.75); 0 ~ 2: band 1 equal, 6 of 12 (0.5, the threshold);
    3 ~ 4: band 2 equal and nothing else, 4 of 12 (0.33); 5 ~ 6: 9 of 12 equal but no band whole (not a candidate);
    7 ~ 8: bands 0 and 1 equal, 8 of 12 (0.67, and 2 of 3 bands); 9 ~ 10: band 0 equal and nothing else, 4 of 12
    (0.33, but 1 over the first band alone).
    """
    s = _fresh_signatures(random, 11, 12)
    s[1, [0, 1, 2, 3, 4, 5, 8, 9, 10]] = s[0, [0, 1, 2, 3, 4, 5, 8, 9, 10]]
    s[2, [4, 5, 6, 7, 0, 11]] = s[0, [4, 5, 6, 7, 0, 11]]
    s[4, 8:12] = s[3, 8:12]
    s[6, [0, 1, 2, 4, 5, 6, 8, 9, 10]] = s[5, [0, 1, 2, 4, 5, 6, 8, 9, 10]]
    s[8, :8] = s[7, :8]
    s[10, :4] = s[9, :4]
    return s


def _near_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # Thresholds are fractions with a power-of-two denominator: an estimate equal to one is exact in float32,
    # float64 and as a count (equal ≥ threshold·k), so every correct spelling agrees on the ties.
    planted = _verification_signatures(random)
    # 4 more entries (values apart from the first 12): 0 ~ 1 share 2 of them (11 of 16), 3 ~ 4 all 4 (8 of 16, the
    # threshold, though 4 of the 12 used ones), 7 ~ 8 one (9 of 16); each verification mistake keeps other pairs here.
    extra = _fresh_signatures(random, planted.shape[0], 4) + 10**6
    extra[1, :2] = extra[0, :2]
    extra[4] = extra[3]
    extra[8, :1] = extra[7, :1]
    longer = torch.cat([planted, extra], dim=1)
    cases = [
        Case("signatures [N=11, k=16], bands=3, rows=4 (4 entries no band uses: the estimate still counts them), "
             "threshold=0.5 (one pair exactly at 8 of 16)", (longer, 3, 4, 0.5)),
        Case("signatures [N=11, k=12], bands=3, rows=4, threshold=0.5 (one pair exactly at 0.5)", (planted, 3, 4, 0.5)),
        Case("the same signatures, threshold=0.625", (planted, 3, 4, 0.625)),
        Case("signatures [N=5, k=8] of values in {0, 1}, bands=4, rows=2, threshold=0.625",
             (torch.randint(0, 2, (5, 8), generator=random.generator, dtype=torch.int64), 4, 2, 0.625)),
    ]
    if hidden:
        cases.append(Case("signatures [N=25, k=16] of values in {0, 1}, bands=4, rows=4, threshold=0.75",
                          (torch.randint(0, 2, (25, 16), generator=random.generator, dtype=torch.int64), 4, 4, 0.75)))
    return cases


def _near_reference(signatures: Tensor, bands: int, rows: int, threshold: float) -> Tensor:
    return _as_pairs(reference_dedup.near_duplicate_pairs(signatures, bands, rows, threshold))


NEAR_DUPLICATE_PAIRS = register(Exercise(
    id="near_duplicate_pairs",
    title="near_duplicate_pairs",
    syllabus=("L17",),
    reference=_near_reference,
    adapt=_adapt_near,
    cases=_near_cases,
    mistakes=[
        Mistake("not_verified", "the candidates are returned without verification",
                "LSH only proposes pairs; a pair sharing one band may still be far below the threshold, so each "
                "candidate's estimated similarity is checked.",
                "keep (i, j) only if (signatures[i] == signatures[j]).double().mean() >= threshold.",
                output=_near(verify="none")),
        Mistake("strict_threshold", "the threshold is compared with > instead of ≥",
                "as declared, a pair whose estimate equals the threshold is a near-duplicate.",
                "estimate >= threshold.",
                output=_near(strict=True)),
        Mistake("fraction_of_bands", "the similarity is estimated as the fraction of equal bands, not of equal entries",
                "the MinHash estimate of the Jaccard similarity is the fraction of equal signature entries; a band "
                "is equal only when all its rows are, which is a much rarer event.",
                "(signatures[i] == signatures[j]).double().mean(), over all k entries.",
                output=_near(verify="bands")),
        Mistake("used_entries_only", "the estimate counts only the first bands × rows entries, not all k",
                "the bands may leave entries unused, but the estimate of the Jaccard similarity is the fraction of "
                "equal entries over the whole signature: more entries, a better estimate.",
                "(signatures[i] == signatures[j]).double().mean(), over all k = signatures.shape[1] entries.",
                output=_near(verify="used")),
        Mistake("first_band_only", "the estimate compares only the first band's rows entries",
                "the first band is one of b; the estimate is the fraction of equal entries over all k of them.",
                "(signatures[i] == signatures[j]).double().mean(), not signatures[i, :rows] == signatures[j, :rows].",
                output=_near(verify="first_band")),
        Mistake("set_jaccard", "the Jaccard similarity of the two sets of signature values is computed instead of "
                "the fraction of equal entries",
                "entry m of a signature is the minimum under permutation m: compare the signatures position by "
                "position; the fraction of positions that agree estimates the Jaccard similarity of the documents. "
                "The sets of values forget the positions and give another number (9 equal of 12 is 9/15 as sets).",
                "(signatures[i] == signatures[j]).double().mean(), not len(a & b) / len(a | b).",
                output=_near(verify="sets")),
        Mistake("every_pair_verified", "every pair is verified, not only the LSH candidates",
                "LSH exists to avoid the N²/2 comparisons: verify the candidate pairs only (those that share a band), "
                "and accept that LSH misses a few pairs above the threshold (its false negatives).",
                "for i, j in lsh_candidate_pairs(signatures, bands, rows): verify (i, j).",
                output=_near(candidates="all")),
    ],
    forbidden={reference_dedup.near_duplicate_pairs: "llmcore.data.dedup.near_duplicate_pairs"},
    delegation=lambda signatures, bands, rows, threshold: reference_dedup.near_duplicate_pairs(
        signatures, bands, rows, threshold),
    output_names=("pairs",),
    fallback_hint="[(i, j) for i, j in lsh_candidate_pairs(signatures, bands, rows) "
                  "if (signatures[i] == signatures[j]).double().mean() >= threshold]",
))
check_near_duplicate_pairs = NEAR_DUPLICATE_PAIRS.check



# --------------------------------------------------------------------------------------------------
# Choosing (bands, rows) for a threshold
# --------------------------------------------------------------------------------------------------

NEAR_TIE = 1e-5
"""Two choices whose weighted errors differ by less than this are a tie: numerical integrators disagree at
about this level, so a learner's other choice of a tie is replaced by the reference's before comparing."""


def _bands_rows_variant(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                        false_negative_weight: float = 0.5, *, exact_tiling: bool = False,
                        weights_swapped: bool = False, sides_swapped: bool = False,
                        result_swapped: bool = False, weights_ignored: bool = False,
                        strict_budget: bool = False) -> tuple[int, int]:
    fp_weight, fn_weight = ((false_negative_weight, false_positive_weight) if weights_swapped
                            else (false_positive_weight, false_negative_weight))
    if weights_ignored:
        fp_weight = fn_weight = 0.5
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            if exact_tiling and bands * rows != num_perm or strict_budget and bands * rows >= num_perm:
                continue
            if sides_swapped:  # the positives counted above the threshold, the negatives below it
                error = (fp_weight * (1 - threshold - reference_dedup.weighted_lsh_error(threshold, bands, rows, 0, 1))
                         + fn_weight * (threshold - reference_dedup.weighted_lsh_error(threshold, bands, rows, 1, 0)))
            else:
                error = reference_dedup.weighted_lsh_error(threshold, bands, rows, fp_weight, fn_weight)
            if error < best_error:
                best, best_error = (bands, rows), error
    return (best[1], best[0]) if result_swapped else best


_best_bands_rows = lru_cache(maxsize=None)(_bands_rows_variant)


class BandsRows:
    """A (bands, rows) choice compared as one value, so that a failure shows both numbers, expected and received."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = int(bands), int(rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BandsRows) and (self.bands, self.rows) == (other.bands, other.rows)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"(bands={self.bands}, rows={self.rows})"


def _bands_rows_reference(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                          false_negative_weight: float = 0.5) -> BandsRows:
    return BandsRows(*_best_bands_rows(threshold, num_perm, false_positive_weight, false_negative_weight))


def _bands_rows(**knobs: Any) -> Callable[..., BandsRows]:
    return lambda threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5: BandsRows(
        *_bands_rows_variant(threshold, num_perm, false_positive_weight, false_negative_weight, **knobs))


def _adapt_bands_rows(learner: Callable[..., Any]) -> Callable[..., Any]:
    def adapted(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                false_negative_weight: float = 0.5) -> Any:
        answer = learner(threshold, num_perm, false_positive_weight, false_negative_weight)
        got = _plain(answer)
        if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(_is_index(v) for v in got)):
            return answer
        bands, rows = int(got[0]), int(got[1])
        if bands < 1 or rows < 1 or bands * rows > num_perm:
            return BandsRows(bands, rows)
        best = _best_bands_rows(threshold, num_perm, false_positive_weight, false_negative_weight)
        weights = (false_positive_weight, false_negative_weight)
        best_error = reference_dedup.weighted_lsh_error(threshold, *best, *weights)
        if reference_dedup.weighted_lsh_error(threshold, bands, rows, *weights) <= best_error + NEAR_TIE:
            return BandsRows(*best)
        return BandsRows(bands, rows)
    return adapted


def _bands_rows_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("threshold=0.8, num_perm=128 (datasketch: b=9, r=13)", (0.8, 128)),
        Case("threshold=0.5, num_perm=128", (0.5, 128)),
        Case("threshold=0.9, num_perm=128", (0.9, 128)),
        Case("threshold=0.5, num_perm=32 (the best choice uses all 32 entries)", (0.5, 32)),
        Case("threshold=0.6, num_perm=64, false_positive_weight=0.7, false_negative_weight=0.3", (0.6, 64, 0.7, 0.3)),
        Case("threshold=0.7, num_perm=64, false_positive_weight=0.3, false_negative_weight=0.7", (0.7, 64, 0.3, 0.7)),
    ]
    if hidden:
        threshold = round(0.55 + 0.3 * float(random.uniform((1,))), 2)
        cases += [Case(f"threshold={threshold}, num_perm=100", (threshold, 100)),
                  Case("threshold=0.75, num_perm=96, false_positive_weight=0.8, false_negative_weight=0.2",
                       (0.75, 96, 0.8, 0.2))]
    return cases


OPTIMAL_BANDS_ROWS = register(Exercise(
    id="optimal_bands_rows",
    title="optimal_bands_rows",
    syllabus=("L17",),
    reference=_bands_rows_reference,
    adapt=_adapt_bands_rows,
    cases=_bands_rows_cases,
    mistakes=[
        Mistake("exact_tiling_only", "only choices with bands × rows = num_perm are tried",
                "the bands may leave entries unused: every b·r ≤ num_perm is a candidate (datasketch's best choice "
                "at 0.8 uses 117 of 128 entries).",
                "for bands in range(1, num_perm + 1): for rows in range(1, num_perm // bands + 1): …",
                output=_bands_rows(exact_tiling=True)),
        Mistake("weights_swapped", "the weights are swapped: false_positive_weight multiplies the false-negative area",
                "the false-positive area is ∫₀ᵗ P(s) ds (pairs below the threshold that become candidates), the "
                "false-negative area ∫ₜ¹ (1 − P(s)) ds; each has its own weight.",
                "error = false_positive_weight * fp_area + false_negative_weight * fn_area.",
                output=_bands_rows(weights_swapped=True)),
        Mistake("sides_swapped", "the areas are taken on the wrong side of the threshold",
                "a false positive is a pair *below* the threshold that LSH proposes: integrate P from 0 to t; a false "
                "negative is a pair *above* it that LSH misses: integrate 1 − P from t to 1.",
                "fp_area = ∫ from 0 to threshold of P(s); fn_area = ∫ from threshold to 1 of 1 − P(s).",
                output=_bands_rows(sides_swapped=True)),
        Mistake("result_swapped", "(rows, bands) is returned instead of (bands, rows)",
                "the S-curve of b bands of r rows is 1 − (1 − s^r)^b: return the number of bands first.",
                "return bands, rows — and check that P(s) = 1 - (1 - s**rows)**bands.",
                output=_bands_rows(result_swapped=True)),
        Mistake("weights_ignored", "the weights are ignored: both areas count the same",
                "false_positive_weight and false_negative_weight say which error costs more (a lost near-duplicate, "
                "or a wasted comparison); with other weights than 0.5 and 0.5 the best choice moves.",
                "error = false_positive_weight * fp_area + false_negative_weight * fn_area.",
                output=_bands_rows(weights_ignored=True)),
        Mistake("budget_strict", "bands × rows < num_perm is required: the choices that use every entry are skipped",
                "a choice may use all num_perm entries: bands × rows ≤ num_perm.",
                "for rows in range(1, num_perm // bands + 1) (or the condition bands * rows <= num_perm).",
                output=_bands_rows(strict_budget=True)),
    ],
    forbidden={reference_dedup.optimal_bands_rows: "llmcore.data.dedup.optimal_bands_rows"},
    delegation=lambda threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5:
        reference_dedup.optimal_bands_rows(threshold, num_perm, false_positive_weight, false_negative_weight),
    output_names=("(bands, rows)",),
    fallback_hint="for every bands, rows with bands * rows <= num_perm: P = lambda s: 1 - (1 - s**rows)**bands; "
                  "error = w_fp * ∫₀ᵗ P + w_fn * ∫ₜ¹ (1 − P) (torch.trapezoid on a fine grid); keep the smallest.",
))
check_optimal_bands_rows = OPTIMAL_BANDS_ROWS.check
