"""Learner code for the exercises of notebook 08_data_dedup_and_vocabulary, written as learners write it (never llmcore's).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py; tests/test_checks_ch05_dedup.py uses some of them too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from itertools import combinations

import numpy as np
import torch

P = 2**31 - 1

# ---------------------------------------------------------------------------------------------------
# exact_dedup
# ---------------------------------------------------------------------------------------------------


def dedup_with_sha1(documents, casefold=True):
    seen, kept = set(), []
    for i, doc in enumerate(documents):
        text = unicodedata.normalize("NFKC", doc)
        if casefold:
            text = text.casefold()
        text = " ".join(text.split())
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(i)
    return kept


def dedup_with_dict_and_regex(documents, casefold=True):
    first = {}
    for i, doc in enumerate(documents):
        text = unicodedata.normalize("NFKC", doc)
        text = text.casefold() if casefold else text
        key = re.sub(r"\s+", " ", text).strip()
        first.setdefault(key, i)
    return sorted(first.values())


def dedup_as_tensor(documents, casefold=True):
    keys = [" ".join((unicodedata.normalize("NFKC", d).casefold() if casefold
                      else unicodedata.normalize("NFKC", d)).split()) for d in documents]
    return torch.tensor([i for i, key in enumerate(keys) if key not in keys[:i]], dtype=torch.long)


def _dedup_by(normalise, documents):
    seen, kept = set(), []
    for i, doc in enumerate(documents):
        key = normalise(doc)
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return kept


def dedup_without_nfkc(documents, casefold=True):
    return _dedup_by(lambda d: " ".join((d.casefold() if casefold else d).split()), documents)


def dedup_with_nfc(documents, casefold=True):
    return _dedup_by(lambda d: " ".join((unicodedata.normalize("NFC", d).casefold() if casefold
                                         else unicodedata.normalize("NFC", d)).split()), documents)


def dedup_strip_only(documents, casefold=True):
    def normalise(d):
        d = unicodedata.normalize("NFKC", d)
        return (d.casefold() if casefold else d).strip()
    return _dedup_by(normalise, documents)


def dedup_removing_spaces(documents, casefold=True):
    def normalise(d):
        d = unicodedata.normalize("NFKC", d)
        return re.sub(r"\s+", "", d.casefold() if casefold else d)
    return _dedup_by(normalise, documents)


def dedup_case_kept(documents, casefold=True):
    return _dedup_by(lambda d: " ".join(unicodedata.normalize("NFKC", d).split()), documents)


def dedup_always_folded(documents, casefold=True):
    return _dedup_by(lambda d: " ".join(unicodedata.normalize("NFKC", d).casefold().split()), documents)


def dedup_with_lower(documents, casefold=True):
    def normalise(d):
        d = unicodedata.normalize("NFKC", d)
        return " ".join((d.lower() if casefold else d).split())
    return _dedup_by(normalise, documents)


def dedup_casefold_then_nfkc(documents, casefold=True):
    def normalise(doc):
        text = doc.casefold() if casefold else doc
        return " ".join(unicodedata.normalize("NFKC", text).split())
    return _dedup_by(normalise, documents)


def dedup_with_tensor_indices(documents, casefold=True):
    """Indices taken from torch.arange: a list of 0-d tensors."""
    keys, kept = set(), []
    for i in torch.arange(len(documents)):
        text = unicodedata.normalize("NFKC", documents[int(i)])
        key = " ".join((text.casefold() if casefold else text).split())
        if key not in keys:
            keys.add(key)
            kept.append(i)
    return kept


def dedup_as_numpy_array(documents, casefold=True):
    keys = [" ".join((unicodedata.normalize("NFKC", d).casefold() if casefold
                      else unicodedata.normalize("NFKC", d)).split()) for d in documents]
    _, first = np.unique(np.array(keys, dtype=object), return_index=True)
    return np.sort(first)


def dedup_keeping_last(documents, casefold=True):
    last = {}
    for i, doc in enumerate(documents):
        text = unicodedata.normalize("NFKC", doc)
        last[" ".join((text.casefold() if casefold else text).split())] = i
    return sorted(last.values())


def dedup_sorted_by_hash(documents, casefold=True):
    first = {}
    for i, doc in enumerate(documents):
        text = unicodedata.normalize("NFKC", doc)
        text = " ".join((text.casefold() if casefold else text).split())
        first.setdefault(hashlib.md5(text.encode()).hexdigest(), i)
    return [first[digest] for digest in sorted(first)]


# ---------------------------------------------------------------------------------------------------
# minhash_signature
# ---------------------------------------------------------------------------------------------------


def signature_broadcast(hashes, a, b):
    if len(hashes) == 0:
        return torch.full_like(a, P)
    return ((a.unsqueeze(1) * hashes.unsqueeze(0) + b.unsqueeze(1)) % P).min(dim=1).values


def signature_loop(hashes, a, b):
    signature = torch.full((len(a),), P, dtype=torch.int64)
    for h in hashes:
        signature = torch.minimum(signature, (a * h + b) % P)
    return signature


def signature_python_ints(hashes, a, b):
    values = [int(h) for h in hashes]
    return torch.tensor([min([(int(ai) * h + int(bi)) % P for h in values], default=P)
                         for ai, bi in zip(a, b)], dtype=torch.int64)


def signature_one_permutation(hashes, a, b):
    signature = torch.full((len(a),), P, dtype=torch.int64)
    for h in hashes:
        signature = torch.minimum(signature, (a[0] * h + b[0]) % P)
    return signature


def signature_max(hashes, a, b):
    if len(hashes) == 0:
        return torch.full_like(a, P)
    return ((a[:, None] * hashes[None, :] + b[:, None]) % P).max(dim=1).values


def signature_without_mod(hashes, a, b):
    signature = torch.full((len(a),), P, dtype=torch.int64)
    for h in hashes:
        signature = torch.minimum(signature, a * h + b)
    return signature


def signature_mod_after_min(hashes, a, b):
    if len(hashes) == 0:
        return torch.full_like(a, P)
    return (a[:, None] * hashes[None, :] + b[:, None]).min(dim=1).values % P


def signature_without_b(hashes, a, b):
    if len(hashes) == 0:
        return torch.full_like(a, P)
    return (a[:, None] * hashes[None, :] % P).min(dim=1).values


def signature_b_times_h(hashes, a, b):
    if len(hashes) == 0:
        return torch.full_like(a, P)
    return ((b[:, None] * hashes[None, :] + a[:, None]) % P).min(dim=1).values


def signature_in_numpy_floats(hashes, a, b):
    signature = np.full(len(a), float(P))
    for h in hashes.numpy().astype(np.float64):
        signature = np.minimum(signature, np.fmod(a.numpy().astype(np.float64) * h + b.numpy(), P))
    return torch.from_numpy(signature).long()


def signature_empty_zeros(hashes, a, b):
    if hashes.numel() == 0:
        return torch.zeros_like(a)
    return ((a[:, None] * hashes[None, :] + b[:, None]) % P).amin(dim=1)


# ---------------------------------------------------------------------------------------------------
# lsh_candidate_pairs
# ---------------------------------------------------------------------------------------------------


def lsh_with_dicts(signatures, bands, rows):
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands of {rows} rows do not tile {signatures.shape[1]} entries")
    pairs = set()
    for t in range(bands):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[tuple(signatures[i, t * rows:(t + 1) * rows].tolist())].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return sorted(pairs)


def lsh_vectorised(signatures, bands, rows):
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError("bands * rows must equal the signature length")
    blocks = signatures[:, :bands * rows].reshape(n, bands, rows)
    same_band = (blocks[:, None] == blocks[None, :]).all(dim=-1).any(dim=-1)      # [n, n]
    return torch.nonzero(torch.triu(same_band, diagonal=1)).tolist()


def lsh_one_table_keyed_by_band(signatures, bands, rows):
    if signatures.shape[1] < bands * rows:
        raise ValueError("signature length is not bands × rows")
    table = defaultdict(set)
    for i, row in enumerate(signatures.tolist()):
        for t in range(bands):
            table[(t, *row[t * rows:(t + 1) * rows])].add(i)
    return sorted({(i, j) for members in table.values() for i in members for j in members if i < j})


def lsh_strided(signatures, bands, rows):
    if bands * rows > signatures.shape[1]:
        raise ValueError("bad bands")
    pairs = set()
    for t in range(bands):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[tuple(signatures[i, t::bands].tolist())].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return sorted(pairs)


def lsh_overlapping(signatures, bands, rows):
    if bands * rows > signatures.shape[1]:
        raise ValueError("bad bands")
    pairs = set()
    for t in range(bands):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[tuple(signatures[i, t:t + rows].tolist())].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return sorted(pairs)


def lsh_swapped(signatures, bands, rows):
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError("bad bands")
    blocks = signatures[:, :bands * rows].reshape(n, rows, bands)
    same_band = (blocks[:, None] == blocks[None, :]).all(dim=-1).any(dim=-1)
    return torch.nonzero(torch.triu(same_band, diagonal=1)).tolist()


def lsh_with_self_pairs(signatures, bands, rows):
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError("bad bands")
    blocks = signatures[:, :bands * rows].reshape(n, bands, rows)
    same_band = (blocks[:, None] == blocks[None, :]).all(dim=-1).any(dim=-1)
    return torch.nonzero(torch.triu(same_band)).tolist()


def lsh_both_orders(signatures, bands, rows):
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError("bad bands")
    blocks = signatures[:, :bands * rows].reshape(n, bands, rows)
    same_band = (blocks[:, None] == blocks[None, :]).all(dim=-1).any(dim=-1)
    same_band.fill_diagonal_(False)
    return torch.nonzero(same_band).tolist()


def lsh_list_per_band(signatures, bands, rows):
    if bands * rows > signatures.shape[1]:
        raise ValueError("bad bands")
    pairs = []
    for t in range(bands):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[tuple(signatures[i, t * rows:(t + 1) * rows].tolist())].append(i)
        for members in buckets.values():
            pairs += list(combinations(members, 2))
    return pairs


def lsh_one_table(signatures, bands, rows):
    if bands * rows > signatures.shape[1]:
        raise ValueError("bad bands")
    buckets = defaultdict(set)
    for i, row in enumerate(signatures.tolist()):
        for t in range(bands):
            buckets[tuple(row[t * rows:(t + 1) * rows])].add(i)
    return sorted({pair for members in buckets.values() for pair in combinations(sorted(members), 2)})


def lsh_all_bands(signatures, bands, rows):
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError("bad bands")
    blocks = signatures[:, :bands * rows].reshape(n, bands, rows)
    same_band = (blocks[:, None] == blocks[None, :]).all(dim=-1).all(dim=-1)
    return torch.nonzero(torch.triu(same_band, diagonal=1)).tolist()


def lsh_demanding_exact_tiling(signatures, bands, rows):
    if bands * rows != signatures.shape[1]:
        raise ValueError("the bands must cover the signature exactly")
    return lsh_with_dicts(signatures, bands, rows)


def lsh_in_numpy(signatures, bands, rows):
    """numpy throughout; the [P, 2] array of np.argwhere returned as it is."""
    sig = signatures.numpy()
    n, k = sig.shape
    if bands * rows > k:
        raise ValueError("not enough entries")
    blocks = sig[:, :bands * rows].reshape(n, bands, rows)
    same = (blocks[:, None] == blocks[None, :]).all(axis=-1).any(axis=-1)
    return np.argwhere(np.triu(same, 1))


def lsh_skipping_last_band(signatures, bands, rows):
    if bands * rows > signatures.shape[1]:
        raise ValueError("bad bands")
    pairs = set()
    for t in range(bands - 1):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[tuple(signatures[i, t * rows:(t + 1) * rows].tolist())].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return sorted(pairs)


def _lsh_keyed(signatures, bands, rows, key):
    if bands * rows > signatures.shape[1]:
        raise ValueError("bad bands")
    pairs = set()
    for t in range(bands):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[key(signatures[i, t * rows:(t + 1) * rows])].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return sorted(pairs)


def lsh_keyed_by_sum(signatures, bands, rows):
    return _lsh_keyed(signatures, bands, rows, lambda band: int(band.sum()))


def lsh_keyed_by_frozenset(signatures, bands, rows):
    return _lsh_keyed(signatures, bands, rows, lambda band: frozenset(band.tolist()))


def lsh_refusing_exact_fit(signatures, bands, rows):
    if bands * rows >= signatures.shape[1]:
        raise ValueError("bands * rows exceeds the signature")
    return lsh_with_dicts(signatures, bands, rows)


def lsh_without_check(signatures, bands, rows):
    pairs = set()
    for t in range(bands):
        buckets = defaultdict(list)
        for i in range(signatures.shape[0]):
            buckets[tuple(signatures[i, t * rows:(t + 1) * rows].tolist())].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return sorted(pairs)


# ---------------------------------------------------------------------------------------------------
# near_duplicate_pairs
# ---------------------------------------------------------------------------------------------------


def near_duplicates_loop(signatures, bands, rows, threshold):
    return [(i, j) for i, j in lsh_with_dicts(signatures, bands, rows)
            if (signatures[i] == signatures[j]).float().mean().item() >= threshold]


def near_duplicates_counting(signatures, bands, rows, threshold):
    k = signatures.shape[1]
    kept = []
    for i, j in lsh_vectorised(signatures, bands, rows):
        if int((signatures[i] == signatures[j]).sum()) >= threshold * k:
            kept.append([i, j])
    return kept


def near_duplicates_unverified(signatures, bands, rows, threshold):
    return lsh_with_dicts(signatures, bands, rows)


def near_duplicates_strict(signatures, bands, rows, threshold):
    return [(i, j) for i, j in lsh_with_dicts(signatures, bands, rows)
            if (signatures[i] == signatures[j]).double().mean() > threshold]


def near_duplicates_band_fraction(signatures, bands, rows, threshold):
    kept = []
    for i, j in lsh_with_dicts(signatures, bands, rows):
        equal_bands = (signatures[i, :bands * rows].view(bands, rows)
                       == signatures[j, :bands * rows].view(bands, rows)).all(dim=1)
        if equal_bands.double().mean() >= threshold:
            kept.append((i, j))
    return kept


def near_duplicates_over_used_entries(signatures, bands, rows, threshold):
    used = bands * rows
    return [(i, j) for i, j in lsh_with_dicts(signatures, bands, rows)
            if (signatures[i, :used] == signatures[j, :used]).double().mean() >= threshold]


def near_duplicates_first_band(signatures, bands, rows, threshold):
    return [(i, j) for i, j in lsh_with_dicts(signatures, bands, rows)
            if (signatures[i, :rows] == signatures[j, :rows]).double().mean() >= threshold]


def near_duplicates_set_jaccard(signatures, bands, rows, threshold):
    kept = []
    for i, j in lsh_with_dicts(signatures, bands, rows):
        a, b = set(signatures[i].tolist()), set(signatures[j].tolist())
        if len(a & b) / len(a | b) >= threshold:
            kept.append((i, j))
    return kept


def near_duplicates_numpy_rows(signatures, bands, rows, threshold):
    """The verified candidates as a list of numpy rows of np.argwhere."""
    sig = signatures.numpy()
    candidates = np.array(lsh_with_dicts(signatures, bands, rows), dtype=np.int64).reshape(-1, 2)
    estimates = (sig[candidates[:, 0]] == sig[candidates[:, 1]]).mean(axis=1)
    return list(candidates[estimates >= threshold])


def near_duplicates_every_pair(signatures, bands, rows, threshold):
    n = signatures.shape[0]
    return [(i, j) for i, j in combinations(range(n), 2)
            if (signatures[i] == signatures[j]).double().mean() >= threshold]


# ---------------------------------------------------------------------------------------------------
# optimal_bands_rows
# ---------------------------------------------------------------------------------------------------


def _areas(threshold, bands, rows, points=1001):
    below = torch.linspace(0, threshold, points, dtype=torch.float64)
    above = torch.linspace(threshold, 1, points, dtype=torch.float64)
    s_curve = lambda s: 1 - (1 - s**rows) ** bands  # noqa: E731
    return torch.trapezoid(s_curve(below), below).item(), torch.trapezoid(1 - s_curve(above), above).item()


def bands_rows_with_trapezoids(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    best, best_error = None, float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp, fn = _areas(threshold, bands, rows)
            error = false_positive_weight * fp + false_negative_weight * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def bands_rows_midpoints_in_numpy(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    choices = [(b, r) for r in range(1, num_perm + 1) for b in range(1, num_perm // r + 1)]
    b = np.array([c[0] for c in choices], dtype=float)[:, None]
    r = np.array([c[1] for c in choices], dtype=float)[:, None]
    n = 2000
    below = (np.arange(n) + 0.5) / n * threshold
    above = threshold + (np.arange(n) + 0.5) / n * (1 - threshold)
    fp = (1 - (1 - below[None, :] ** r) ** b).mean(axis=1) * threshold
    fn = ((1 - above[None, :] ** r) ** b).mean(axis=1) * (1 - threshold)     # 1 - P(s) = (1 - s^r)^b
    return choices[int(np.argmin(false_positive_weight * fp + false_negative_weight * fn))]


def bands_rows_as_numpy_array(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    """The same search; the answer as a numpy array of two int64."""
    return np.array(bands_rows_with_trapezoids(threshold, num_perm, false_positive_weight, false_negative_weight))


def _bands_rows_by(error_of, num_perm, exact=False):
    best, best_error = None, float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            if exact and bands * rows != num_perm:
                continue
            error = error_of(bands, rows)
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def bands_rows_divisors_only(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    def error(bands, rows):
        fp, fn = _areas(threshold, bands, rows)
        return false_positive_weight * fp + false_negative_weight * fn
    return _bands_rows_by(error, num_perm, exact=True)


def bands_rows_weights_swapped(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    def error(bands, rows):
        fp, fn = _areas(threshold, bands, rows)
        return false_negative_weight * fp + false_positive_weight * fn
    return _bands_rows_by(error, num_perm)


def bands_rows_wrong_sides(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    def error(bands, rows):
        below = torch.linspace(0, threshold, 1001, dtype=torch.float64)
        above = torch.linspace(threshold, 1, 1001, dtype=torch.float64)
        p_above = 1 - (1 - above**rows) ** bands
        p_below = 1 - (1 - below**rows) ** bands
        fp = torch.trapezoid(p_above, above).item()
        fn = torch.trapezoid(1 - p_below, below).item()
        return false_positive_weight * fp + false_negative_weight * fn
    return _bands_rows_by(error, num_perm)


def bands_rows_s_curve_transposed(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    def error(bands, rows):
        fp, fn = _areas(threshold, rows, bands)      # 1 - (1 - s**bands)**rows
        return false_positive_weight * fp + false_negative_weight * fn
    return _bands_rows_by(error, num_perm)


def bands_rows_weights_ignored(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    def error(bands, rows):
        fp, fn = _areas(threshold, bands, rows)
        return fp + fn
    return _bands_rows_by(error, num_perm)


def bands_rows_strictly_below_budget(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    best, best_error = None, float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm + 1):
            if bands * rows < num_perm:
                fp, fn = _areas(threshold, bands, rows)
                error = false_positive_weight * fp + false_negative_weight * fn
                if error < best_error:
                    best, best_error = (bands, rows), error
    return best


CORRECT = {
    "exact_dedup": [dedup_with_sha1, dedup_with_dict_and_regex, dedup_as_tensor, dedup_with_tensor_indices,
                    dedup_as_numpy_array],
    "minhash_signature": [signature_broadcast, signature_loop, signature_python_ints],
    "lsh_candidate_pairs": [lsh_with_dicts, lsh_vectorised, lsh_one_table_keyed_by_band, lsh_in_numpy],
    "near_duplicate_pairs": [near_duplicates_loop, near_duplicates_counting, near_duplicates_numpy_rows],
    "optimal_bands_rows": [bands_rows_with_trapezoids, bands_rows_midpoints_in_numpy, bands_rows_as_numpy_array],
}

MISTAKES = {
    "exact_dedup": {
        "no_nfkc": dedup_without_nfkc,
        "nfc_not_nfkc": dedup_with_nfc,
        "whitespace_not_collapsed": dedup_strip_only,
        "whitespace_removed": dedup_removing_spaces,
        "case_not_folded": dedup_case_kept,
        "case_folded_when_not_asked": dedup_always_folded,
        "lower_not_casefold": dedup_with_lower,
        "casefold_before_nfkc": dedup_casefold_then_nfkc,
        "keeps_last": dedup_keeping_last,
        "order_lost": dedup_sorted_by_hash,
    },
    "minhash_signature": {
        "one_permutation": signature_one_permutation,
        "max_not_min": signature_max,
        "mod_forgotten": signature_without_mod,
        "mod_after_min": signature_mod_after_min,
        "offset_forgotten": signature_without_b,
        "a_b_swapped": signature_b_times_h,
        "computed_in_float": signature_in_numpy_floats,
        "empty_not_p": signature_empty_zeros,
    },
    "lsh_candidate_pairs": {
        "strided_bands": lsh_strided,
        "overlapping_bands": lsh_overlapping,
        "bands_rows_swapped": lsh_swapped,
        "self_pairs": lsh_with_self_pairs,
        "both_orders": lsh_both_orders,
        "pairs_repeated": lsh_list_per_band,
        "buckets_shared_across_bands": lsh_one_table,
        "every_band_required": lsh_all_bands,
        "last_band_skipped": lsh_skipping_last_band,
        "bucket_key_sum": lsh_keyed_by_sum,
        "bucket_key_set": lsh_keyed_by_frozenset,
        "not_refused": lsh_without_check,
        "refuses_unused_entries": lsh_demanding_exact_tiling,
    },
    "near_duplicate_pairs": {
        "not_verified": near_duplicates_unverified,
        "strict_threshold": near_duplicates_strict,
        "fraction_of_bands": near_duplicates_band_fraction,
        "every_pair_verified": near_duplicates_every_pair,
        "used_entries_only": near_duplicates_over_used_entries,
        "first_band_only": near_duplicates_first_band,
        "set_jaccard": near_duplicates_set_jaccard,
    },
    "optimal_bands_rows": {
        "exact_tiling_only": bands_rows_divisors_only,
        "weights_swapped": bands_rows_weights_swapped,
        "sides_swapped": bands_rows_wrong_sides,
        "result_swapped": bands_rows_s_curve_transposed,
        "weights_ignored": bands_rows_weights_ignored,
        "budget_strict": bands_rows_strictly_below_budget,
    },
}
