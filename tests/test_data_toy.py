"""llmcore.data's toy sequence-to-sequence task and metric: ToySeq2SeqTask encoding/decoding, vocabulary sizes,
and samples checked row by row against the copy/reverse/sort transforms written in plain Python, and
sequence_accuracy against hand-worked cases (exact match up to EOS).
"""
import pytest
import torch

from llmcore.data import ToySeq2SeqTask, sequence_accuracy


def test_toy_encode_and_decode():
    task = ToySeq2SeqTask(n_symbols=10)
    assert task.encode("abc").tolist() == [[3, 4, 5, 2]]
    assert task.encode("").tolist() == [[2]]
    assert task.decode([3, 4, 5, 2, 7]) == "abc"
    assert task.decode(torch.tensor([1, 3, 0, 12, 2, 4])) == "aj"
    for text in ["a", "jihgfedcba", "aaab"]:
        assert task.decode(task.encode(text)[0]) == text
    with pytest.raises(ValueError, match="'k'"):
        task.encode("abk")


def test_toy_vocabulary_sizes():
    task = ToySeq2SeqTask(n_symbols=26, max_length=7)
    assert (task.vocab_size, task.max_target_length) == (29, 9)
    assert (task.PAD, task.BOS, task.EOS) == (0, 1, 2)


TRANSFORMS = {"copy": lambda s: s, "reverse": lambda s: s[::-1], "sort": sorted}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_toy_samples_pair_sources_with_transformed_targets(transform):
    task = ToySeq2SeqTask(transform, n_symbols=5, min_length=2, max_length=6)
    src, tgt = task.sample(64, torch.Generator().manual_seed(0))
    assert src.shape[0] == tgt.shape[0] == 64
    assert src.shape[1] <= 7 and tgt.shape[1] <= 8
    lengths = set()
    for src_row, tgt_row in zip(src.tolist(), tgt.tolist()):
        n = src_row.index(task.EOS)
        letters = src_row[:n]
        lengths.add(n)
        assert all(3 <= t < 8 for t in letters)
        assert src_row[n + 1 :] == [task.PAD] * (len(src_row) - n - 1)
        expected = [task.BOS] + list(TRANSFORMS[transform](letters)) + [task.EOS]
        assert tgt_row == expected + [task.PAD] * (len(tgt_row) - len(expected))
    assert lengths <= set(range(2, 7)) and len(lengths) > 1
    assert src.shape[1] == max(lengths) + 1 and tgt.shape[1] == max(lengths) + 2


def test_toy_sampling_is_reproducible_with_a_generator():
    task = ToySeq2SeqTask()
    first = task.sample(8, torch.Generator().manual_seed(5))
    second = task.sample(8, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("kwargs, field", [
    (dict(transform="rotate"), "transform"),
    (dict(n_symbols=0), "n_symbols"),
    (dict(n_symbols=27), "n_symbols"),
    (dict(min_length=0), "min_length"),
    (dict(min_length=5, max_length=4), "min_length"),
])
def test_toy_task_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ToySeq2SeqTask(**kwargs)


def test_sequence_accuracy_hand_cases():
    target = torch.tensor([[5, 2, 0], [6, 7, 2], [3, 2, 0]])
    # Row 0: right up to EOS (what follows is ignored); row 1: one wrong token; row 2: right.
    assert sequence_accuracy(torch.tensor([[5, 2, 9], [6, 8, 2], [3, 2, 0]]), target, eos_id=2) == pytest.approx(2 / 3)
    # A prediction that stops before EOS, or emits something else where EOS belongs, is wrong.
    assert sequence_accuracy(torch.tensor([[5]]), torch.tensor([[5, 2]]), eos_id=2) == 0.0
    assert sequence_accuracy(torch.tensor([[5, 3, 2]]), torch.tensor([[5, 2]]), eos_id=2) == 0.0
    assert sequence_accuracy(torch.tensor([[5, 2]]), torch.tensor([[5, 2]]), eos_id=2) == 1.0
    assert sequence_accuracy(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long), eos_id=2) == 0.0
