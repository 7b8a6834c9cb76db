"""Special cases of the checks of notebook 08_data_dedup_and_vocabulary (the promises every exercise keeps are
generated from the registry in tests/test_exercise_contracts.py; the learners live in tests/learners_ch05_dedup.py)."""

from __future__ import annotations

import unicodedata

import numpy as np
import torch

from check_test_helpers import diagnosed, failure_message
from grader.checks.ch05 import dedup as checks
from learners_ch05_dedup import P, lsh_with_dicts, lsh_without_check, signature_broadcast


def test_the_notebook_imports_every_check() -> None:
    import grader.checks.ch05 as chapter

    for name in checks.__all__:
        assert getattr(chapter, name) is getattr(checks, name)


# ---------------------------------------------------------------------------------------------------
# exact_dedup
# ---------------------------------------------------------------------------------------------------


def test_no_normalisation_at_all_is_named_as_the_missing_nfkc() -> None:
    """Three mistakes at once (no NFKC, no case folding, no whitespace collapse): the first case only has
    documents that differ by NFKC, so the first of them is still named."""
    def compares_raw_text(documents, casefold=True):
        seen, kept = set(), []
        for i, document in enumerate(documents):
            if document not in seen:
                seen.add(document)
                kept.append(i)
        return kept

    message = failure_message(checks.check_exact_dedup, compares_raw_text)
    assert "case 1 of 6" in message and "expected shape (4,), got (7,)" in message
    assert diagnosed(message, checks.EXACT_DEDUP.mistake("no_nfkc").name)


def test_numpy_indices_and_a_tensor_are_accepted() -> None:
    def numpy_indices(documents, casefold=True):
        normalised = [unicodedata.normalize("NFKC", d) for d in documents]
        keys = [" ".join((text.casefold() if casefold else text).split()) for text in normalised]
        _, first = np.unique(np.array(keys, dtype=object), return_index=True)
        return [np.int64(i) for i in sorted(first)]

    checks.check_exact_dedup(numpy_indices)


def test_kept_texts_instead_of_indices_are_named() -> None:
    def returns_texts(documents, casefold=True):
        seen, kept = set(), []
        for document in documents:
            key = " ".join(unicodedata.normalize("NFKC", document).casefold().split())
            if key not in seen:
                seen.add(key)
                kept.append(document)
        return kept

    message = failure_message(checks.check_exact_dedup, returns_texts)
    assert "got a list of str" in message and "torch.Tensor" not in message


# ---------------------------------------------------------------------------------------------------
# minhash_signature
# ---------------------------------------------------------------------------------------------------


def test_a_float_signature_is_refused_with_the_reason() -> None:
    def float_signature(hashes, a, b):
        return signature_broadcast(hashes, a, b).to(torch.float32)

    message = failure_message(checks.check_minhash_signature, float_signature)
    assert "must return an int64 tensor, got torch.float32" in message


def test_forgotten_mod_is_named_whether_or_not_the_minimum_starts_at_p() -> None:
    def broadcast_without_mod(hashes, a, b):
        if len(hashes) == 0:
            return torch.full_like(a, P)
        return (a[:, None] * hashes[None, :] + b[:, None]).amin(dim=1)

    message = failure_message(checks.check_minhash_signature, broadcast_without_mod)
    assert diagnosed(message, checks.MINHASH_SIGNATURE.mistake("mod_forgotten").name)


# ---------------------------------------------------------------------------------------------------
# lsh_candidate_pairs
# ---------------------------------------------------------------------------------------------------


def test_missing_refusal_names_the_case() -> None:
    message = failure_message(checks.check_lsh_candidate_pairs, lsh_without_check)
    assert "bands=5, rows=3 but k=12: must raise a ValueError" in message
    assert "expected 'a ValueError (bands × rows > signature length)'" in message
    assert diagnosed(message, checks.LSH_CANDIDATE_PAIRS.mistake("not_refused").name)


def test_refusing_bands_that_use_every_entry_says_so() -> None:
    from learners_ch05_dedup import lsh_refusing_exact_fit

    message = failure_message(checks.check_lsh_candidate_pairs, lsh_refusing_exact_fit)
    assert "raised ValueError" in message and "bands=4, rows=3 and signatures of k=12 entries" in message
    assert "bands × rows = 12 = k is allowed" in message and "got a str" not in message
    assert diagnosed(message, checks.LSH_CANDIDATE_PAIRS.mistake("refuses_unused_entries").name)


def test_pairs_as_a_tensor_in_any_order_are_accepted() -> None:
    def reversed_tensor(signatures, bands, rows):
        return torch.tensor(lsh_with_dicts(signatures, bands, rows)[::-1], dtype=torch.long).reshape(-1, 2)

    checks.check_lsh_candidate_pairs(reversed_tensor)
    checks.check_lsh_candidate_pairs(reversed_tensor, hidden=True)


def test_a_crash_on_unused_entries_reports_the_inputs() -> None:
    def reshapes_the_whole_signature(signatures, bands, rows):
        blocks = signatures.view(signatures.shape[0], bands, rows)
        same = (blocks[:, None] == blocks[None]).all(-1).any(-1)
        return torch.nonzero(torch.triu(same, 1)).tolist()

    message = failure_message(checks.check_lsh_candidate_pairs, reshapes_the_whole_signature)
    assert "raised an error on case 4 of 7" in message
    assert "signatures [16, 14] int64, bands = 4, rows = 3" in message


# ---------------------------------------------------------------------------------------------------
# near_duplicate_pairs
# ---------------------------------------------------------------------------------------------------


def test_unverified_and_strict_at_once_name_the_missing_verification() -> None:
    """A learner with both mistakes returns every candidate: that is the unverified output (the strict comparison
    never runs)."""
    def every_candidate(signatures, bands, rows, threshold):
        return lsh_with_dicts(signatures, bands, rows)

    message = failure_message(checks.check_near_duplicate_pairs, every_candidate)
    assert diagnosed(message, checks.NEAR_DUPLICATE_PAIRS.mistake("not_verified").name)


def test_an_empty_answer_gets_no_false_diagnosis() -> None:
    message = failure_message(checks.check_near_duplicate_pairs, lambda signatures, bands, rows, threshold: [])
    assert "Diagnosis" not in message and "expected shape (3, 2), got (0, 2)" in message


def test_each_verification_mistake_is_named_on_the_first_case() -> None:
    """Counting the first bands × rows entries, the first band alone, the sets of values or > instead of ≥ each keep
    other pairs on case 1 (k = 16 > b·r = 12, a pair exactly at the threshold), so none is taken for another."""
    from learners_ch05_dedup import MISTAKES

    for mistake_id in ("strict_threshold", "used_entries_only", "first_band_only", "set_jaccard"):
        message = failure_message(checks.check_near_duplicate_pairs, MISTAKES["near_duplicate_pairs"][mistake_id])
        assert "case 1 of 4" in message, message
        assert diagnosed(message, checks.NEAR_DUPLICATE_PAIRS.mistake(mistake_id).name), message


# ---------------------------------------------------------------------------------------------------
# optimal_bands_rows
# ---------------------------------------------------------------------------------------------------


def _coarse_search(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5, points=101):
    below = torch.linspace(0, threshold, points, dtype=torch.float64)
    above = torch.linspace(threshold, 1, points, dtype=torch.float64)
    errors = {}
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            errors[(bands, rows)] = (false_positive_weight * torch.trapezoid(1 - (1 - below**rows) ** bands, below)
                                     + false_negative_weight * torch.trapezoid((1 - above**rows) ** bands, above)).item()
    return min(errors, key=errors.get)


def test_a_coarser_integration_and_other_return_types_are_accepted() -> None:
    checks.check_optimal_bands_rows(_coarse_search)
    checks.check_optimal_bands_rows(lambda *args: list(_coarse_search(*args)), hidden=True)
    checks.check_optimal_bands_rows(lambda *args: torch.tensor(_coarse_search(*args)))


def test_a_choice_beyond_num_perm_is_reported_as_it_is() -> None:
    message = failure_message(checks.check_optimal_bands_rows, lambda threshold, num_perm, *weights: (20, 20))
    assert "case 1 of 6" in message and "(bands, rows): expected (bands=9, rows=13), got (bands=20, rows=20)" in message


def test_ignored_weights_are_not_taken_for_exact_tiling() -> None:
    from learners_ch05_dedup import bands_rows_weights_ignored

    message = failure_message(checks.check_optimal_bands_rows, bands_rows_weights_ignored)
    assert "expected (bands=9, rows=7), got (bands=10, rows=6)" in message
    assert diagnosed(message, checks.OPTIMAL_BANDS_ROWS.mistake("weights_ignored").name)
