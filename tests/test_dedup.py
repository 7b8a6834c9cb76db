"""llmcore.data.dedup against independent oracles: hand-worked normalisation examples, exact Jaccard
on small sets, naive Python-integer loops, the binomial spread of the MinHash estimate over many
seeds, and datasketch 2.0.0 (a test-only dependency) for the 32-bit shingle hash, Jaccard estimates,
LSH banding and the (bands, rows) chosen for a threshold."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch

from llmcore.data import dedup
from llmcore.data.corpus import load_corpus
from llmcore.data.dedup import MERSENNE_PRIME_31 as P

datasketch = pytest.importorskip("datasketch")


@pytest.mark.parametrize("text,folded,kept_case", [
    ("ＡＢＣ　１２３", "abc 123", "ABC 123"),              # full width and the ideographic space U+3000
    ("  Straße\t\tund\nSTRASSE ", "strasse und strasse", "Straße und STRASSE"),
    ("ﬁne Cafe\u0301", "fine café", "fine Café"),          # ligature, decomposed accent
    ("", "", ""),
    (" \n\u3000 ", "", ""),
])
def test_normalize_text_by_hand(text: str, folded: str, kept_case: str) -> None:
    assert dedup.normalize_text(text) == folded
    assert dedup.normalize_text(text, casefold=False) == kept_case


def test_exact_dedup_keeps_first_occurrences_in_order() -> None:
    documents = ["b  c", "A", "ａ", "B C", "x", "a\n", "X"]
    assert dedup.exact_dedup(documents) == [0, 1, 4]
    assert dedup.exact_dedup(documents, casefold=False) == [0, 1, 2, 3, 4, 6]  # "ａ" and "a\n" are "a"
    assert dedup.exact_dedup([]) == []
    assert dedup.document_hash("ＡＢＣ") == dedup.document_hash(" abc ")


def test_char_shingles_by_hand() -> None:
    assert dedup.char_shingles("Hello", 3) == {"hel", "ell", "llo"}
    assert dedup.char_shingles("月光照山谷", 2) == {"月光", "光照", "照山", "山谷"}
    assert dedup.char_shingles("ab", 5) == {"ab"}
    assert dedup.char_shingles("  ", 5) == set()


def test_sha1_hash32_is_datasketchs() -> None:
    from datasketch.hashfunc import sha1_hash32
    for text in ["", "hello", "月光照山谷", "ＡＢＣ"]:
        assert dedup.sha1_hash32(text.encode()) == sha1_hash32(text.encode())


def test_jaccard_by_hand() -> None:
    assert dedup.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert dedup.jaccard(set(), set()) == 1.0
    assert dedup.jaccard({1}, set()) == 0.0


def test_minhash_signature_equals_a_python_integer_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = dedup.minhash_permutations(64, generator)
    hashes = torch.tensor([0, 1, 2**32 - 1, 2**31, 123456789, 987654321], dtype=torch.int64)
    signature = dedup.minhash_signature(hashes, a, b)
    expected = [min((ai * h + bi) % P for h in hashes.tolist()) for ai, bi in zip(a.tolist(), b.tolist())]
    assert signature.dtype == torch.int64 and signature.tolist() == expected
    assert dedup.minhash_signature(torch.empty(0, dtype=torch.int64), a, b).tolist() == [P] * 64
    # The minimum over a union is the minimum of the minima (and the empty set is its neutral element).
    more = torch.tensor([5, 6, 7], dtype=torch.int64)
    union = dedup.minhash_signature(torch.cat([hashes, more]), a, b)
    assert torch.equal(union, torch.minimum(signature, dedup.minhash_signature(more, a, b)))


def _sets_with_jaccard(shared: int, only_first: int, only_second: int) -> tuple[set[str], set[str]]:
    common = {f"c{i}" for i in range(shared)}
    return common | {f"a{i}" for i in range(only_first)}, common | {f"b{i}" for i in range(only_second)}


@pytest.mark.parametrize("shared,only_first,only_second", [(60, 20, 20), (30, 50, 20), (90, 5, 5)])
def test_estimate_is_unbiased_within_its_binomial_spread(shared: int, only_first: int, only_second: int) -> None:
    first, second = _sets_with_jaccard(shared, only_first, only_second)
    exact = dedup.jaccard(first, second)
    h1, h2 = dedup.shingle_hashes(first), dedup.shingle_hashes(second)
    seeds, k = 60, 128
    estimates = []
    for seed in range(seeds):
        a, b = dedup.minhash_permutations(k, torch.Generator().manual_seed(seed))
        estimates.append(dedup.estimated_jaccard(dedup.minhash_signature(h1, a, b),
                                                 dedup.minhash_signature(h2, a, b)).item())
    spread = math.sqrt(exact * (1 - exact) / (seeds * k))
    assert abs(sum(estimates) / seeds - exact) < 4 * spread
    assert all(abs(e - exact) < 6 * math.sqrt(exact * (1 - exact) / k) for e in estimates)


def test_estimates_agree_with_datasketch() -> None:
    """datasketch's 2⁶¹ − 1 arithmetic overflows uint64 (issues #99, #239), so only estimates compare."""
    paragraphs = [p for p in load_corpus("english", 20000).split("\n\n") if p.strip()][:12]
    a, b = dedup.minhash_permutations(128, torch.Generator().manual_seed(1))
    worst = 0.0
    for first, second in combinations(paragraphs, 2):
        s1, s2 = dedup.char_shingles(first), dedup.char_shingles(second)
        ours = dedup.estimated_jaccard(dedup.minhash_signature(dedup.shingle_hashes(s1), a, b),
                                       dedup.minhash_signature(dedup.shingle_hashes(s2), a, b)).item()
        m1, m2 = datasketch.MinHash(num_perm=128, seed=1), datasketch.MinHash(num_perm=128, seed=1)
        m1.update_batch([s.encode() for s in s1])
        m2.update_batch([s.encode() for s in s2])
        exact = dedup.jaccard(s1, s2)
        bound = 4 * math.sqrt(max(exact * (1 - exact), 1 / 128) / 128)
        assert abs(ours - exact) < bound and abs(m1.jaccard(m2) - exact) < bound
        worst = max(worst, abs(ours - m1.jaccard(m2)))
    assert worst < 0.2


def _naive_candidates(signatures: torch.Tensor, bands: int, rows: int) -> list[tuple[int, int]]:
    n = signatures.shape[0]
    return [(i, j) for i in range(n) for j in range(i + 1, n)
            if any(signatures[i, t * rows:(t + 1) * rows].tolist() == signatures[j, t * rows:(t + 1) * rows].tolist()
                   for t in range(bands))]


@pytest.mark.parametrize("k,bands,rows", [(12, 4, 3), (14, 4, 3), (12, 2, 5)])
def test_lsh_candidates_equal_a_naive_loop_and_datasketch(k: int, bands: int, rows: int) -> None:
    """datasketch's MinHashLSH with params=(b, r) also reads only the first b·r entries."""
    generator = torch.Generator().manual_seed(3)
    signatures = torch.randint(0, 3, (40, k), generator=generator, dtype=torch.int64)
    ours = dedup.lsh_candidate_pairs(signatures, bands, rows)
    assert ours == _naive_candidates(signatures, bands, rows)
    lsh = datasketch.MinHashLSH(num_perm=k, params=(bands, rows))
    minhashes = [datasketch.MinHash(num_perm=k, hashvalues=row.numpy().astype("uint64"), scheme="legacy")
                 for row in signatures]
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    theirs = sorted({(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i})
    assert ours == theirs


def test_lsh_refuses_bands_longer_than_the_signature() -> None:
    with pytest.raises(ValueError, match="bands × rows"):
        dedup.lsh_candidate_pairs(torch.zeros(3, 10, dtype=torch.int64), 4, 3)


def test_near_duplicates_are_the_candidates_at_or_above_the_threshold() -> None:
    signatures = torch.tensor([[1, 2, 3, 4], [1, 2, 9, 9], [1, 2, 3, 9], [7, 7, 3, 4]])
    # Pairs sharing a band (2 × 2): (0,1) 0.5, (0,2) 0.75, (1,2) 0.75, (0,3) 0.5.
    assert dedup.lsh_candidate_pairs(signatures, 2, 2) == [(0, 1), (0, 2), (0, 3), (1, 2)]
    assert dedup.near_duplicate_pairs(signatures, 2, 2, 0.75) == [(0, 2), (1, 2)]
    assert dedup.near_duplicate_pairs(signatures, 2, 2, 0.5) == [(0, 1), (0, 2), (0, 3), (1, 2)]


def test_s_curve_equals_simulated_banding() -> None:
    """Entries equal independently with probability s: a pair shares a band with probability 1 − (1 − s^r)^b."""
    generator = torch.Generator().manual_seed(4)
    bands, rows, trials = 9, 13, 20000
    for s in (0.6, 0.8, 0.9):
        equal = torch.rand(trials, bands, rows, generator=generator) < s
        simulated = equal.all(dim=2).any(dim=1).double().mean().item()
        expected = dedup.candidate_probability(s, bands, rows).item()
        assert abs(simulated - expected) < 4 * math.sqrt(expected * (1 - expected) / trials) + 1e-9


@pytest.mark.parametrize("threshold,expected", [(0.9, (5, 25)), (0.8, (9, 13)), (0.5, (25, 5))])
def test_optimal_bands_rows_published_values(threshold: float, expected: tuple[int, int]) -> None:
    assert dedup.optimal_bands_rows(threshold, 128) == expected


def test_optimal_bands_rows_equals_datasketch_on_a_grid() -> None:
    from datasketch.lsh import _optimal_param
    for threshold in (0.3, 0.45, 0.6, 0.7, 0.75, 0.85, 0.95):
        assert dedup.optimal_bands_rows(threshold, 128) == _optimal_param(threshold, 128, 0.5, 0.5)
    assert dedup.optimal_bands_rows(0.8, 64, 0.3, 0.7) == _optimal_param(0.8, 64, 0.3, 0.7)


def test_planted_copies_are_found() -> None:
    paragraphs = list(dict.fromkeys(p for p in load_corpus("english", 30000).split("\n\n") if p.strip()))
    corpus = dedup.planted_near_duplicates(paragraphs, 30, seed=0)
    kept = dedup.exact_dedup(corpus.documents)
    for i, (source, kind) in enumerate(zip(corpus.planted, corpus.kind)):
        if kind in ("exact", "variant"):
            assert i not in kept, (kind, corpus.documents[i])
    a, b = dedup.minhash_permutations(128, torch.Generator().manual_seed(0))
    signatures = torch.stack([dedup.minhash_signature(dedup.shingle_hashes(dedup.char_shingles(d)), a, b)
                              for d in corpus.documents])
    found = set(dedup.near_duplicate_pairs(signatures, 9, 13, 0.8))
    edited = [(source, i) for i, (source, kind) in enumerate(zip(corpus.planted, corpus.kind)) if kind == "edited"]
    assert edited and sum(pair in found for pair in edited) >= 0.8 * len(edited)


@pytest.mark.parametrize("threshold,bands,rows", [(0.5, 25, 5), (0.8, 9, 13), (0.9, 5, 25), (0.3, 1, 1), (0.7, 40, 3)])
def test_weighted_error_equals_datasketchs_integrals(threshold: float, bands: int, rows: int) -> None:
    """datasketch integrates the same two areas with scipy.integrate.quad."""
    from datasketch.lsh import _false_negative_probability, _false_positive_probability
    assert dedup.weighted_lsh_error(threshold, bands, rows, 1.0, 0.0) == pytest.approx(
        _false_positive_probability(threshold, bands, rows), abs=1e-6)
    assert dedup.weighted_lsh_error(threshold, bands, rows, 0.0, 1.0) == pytest.approx(
        _false_negative_probability(threshold, bands, rows), abs=1e-6)


@pytest.mark.parametrize(("bands", "rows", "message"), [(0, 4, "at least 1"), (4, 0, "at least 1"), (5, 4, "exceeds")])
def test_banding_names_what_is_wrong_with_bands_and_rows(bands: int, rows: int, message: str) -> None:
    signatures = torch.zeros(3, 16, dtype=torch.int64)
    with pytest.raises(ValueError, match=message):
        dedup.lsh_candidate_pairs(signatures, bands, rows)
