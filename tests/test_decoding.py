"""llmcore's greedy_decode against two oracles: a scripted model whose per-step outputs are known (EOS then PAD,
feeding back its own tokens, ties to the lowest id, budgets), and a manual argmax loop of full forward passes
over a random Transformer.
"""
import pytest
import torch

from llmcore import Transformer, greedy_decode
from seq2seq_helpers import PAD, padded_ids, small_config


BOS, EOS, DPAD, VOCAB = 1, 2, 0, 8


class ScriptedModel:
    """Emits script[row][t] at step t (logit 1 on that id, 0 elsewhere), and records what it was given."""

    def __init__(self, script, ties=None):
        self.script = script
        self.ties = ties or {}
        self.decoder_inputs = []
        self.encode_calls = 0

    def encode(self, src_ids):
        self.encode_calls += 1
        return src_ids.float().unsqueeze(-1)

    def decode(self, tgt_ids, memory, src_ids):
        self.decoder_inputs.append(tgt_ids.clone())
        batch, length = tgt_ids.shape
        logits = torch.zeros(batch, length, VOCAB)
        for row in range(batch):
            for token in self.ties.get((row, length - 1), [self.script[row][length - 1]]):
                logits[row, -1, token] = 1.0
        return logits


def decode(model, batch=2, max_new_tokens=6):
    src = torch.full((batch, 3), 5)
    return greedy_decode(model, src, bos_id=BOS, eos_id=EOS, pad_id=DPAD, max_new_tokens=max_new_tokens)


def test_greedy_decode_writes_pad_after_eos_until_every_row_ends():
    model = ScriptedModel([[5, EOS, 6, 7, 3, 3], [4, 4, 3, EOS, 5, 5]])
    out = decode(model)
    assert out.tolist() == [[5, EOS, DPAD, DPAD], [4, 4, 3, EOS]]
    assert model.encode_calls == 1
    assert len(model.decoder_inputs) == 4  # stopped early, not after max_new_tokens = 6


def test_greedy_decode_feeds_back_its_own_tokens_after_bos():
    model = ScriptedModel([[5, EOS, 6, 7], [4, 3, 3, EOS]])
    decode(model)
    assert [t.tolist() for t in model.decoder_inputs] == [
        [[BOS], [BOS]],
        [[BOS, 5], [BOS, 4]],
        [[BOS, 5, EOS], [BOS, 4, 3]],
        [[BOS, 5, EOS, DPAD], [BOS, 4, 3, 3]],
    ]


def test_greedy_decode_without_eos_runs_to_max_new_tokens():
    model = ScriptedModel([[3, 4, 5, 6, 7, 3, 4], [7, 7, 7, 7, 7, 7, 7]])
    out = decode(model, max_new_tokens=5)
    assert out.tolist() == [[3, 4, 5, 6, 7], [7, 7, 7, 7, 7]]


def test_greedy_decode_single_step_eos_in_every_row():
    out = decode(ScriptedModel([[EOS] * 4, [EOS] * 4]))
    assert out.tolist() == [[EOS], [EOS]]


def test_greedy_decode_ties_go_to_the_lowest_id():
    model = ScriptedModel([[3, 3, 3], [3, 3, 3]], ties={(0, 0): [6, 4], (1, 1): [7, 5, EOS]})
    assert decode(model, max_new_tokens=3).tolist() == [[4, 3, 3], [3, EOS, DPAD]]


def test_greedy_decode_zero_and_negative_budgets():
    assert decode(ScriptedModel([[3], [3]]), max_new_tokens=0).shape == (2, 0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(ScriptedModel([[3], [3]]), max_new_tokens=-1)


def manual_greedy(model, src, eos_id, max_new_tokens):
    """Full forward passes, one argmax per row per step, EOS bookkeeping in plain Python."""
    rows = [[BOS] for _ in range(src.shape[0])]
    done = [False] * src.shape[0]
    for _ in range(max_new_tokens):
        logits = model(src, torch.tensor(rows))[:, -1]
        for r, row in enumerate(rows):
            token = DPAD if done[r] else max(range(logits.shape[1]), key=lambda v: (logits[r, v].item(), -v))
            row.append(token)
            done[r] = done[r] or token == eos_id
        if all(done):
            break
    return torch.tensor([row[1:] for row in rows])


def test_greedy_decode_matches_a_manual_argmax_loop_on_a_random_model(one_thread):
    torch.manual_seed(0)
    # An untied output layer: a tied random model just echoes its input token.
    model = Transformer(small_config(src_vocab_size=13, tgt_vocab_size=13, tie_output=False, pad_id=DPAD)).eval()
    src = padded_ids([6, 3, 5, 2], 6, 13, seed=9)
    with torch.no_grad():
        free_run = manual_greedy(model, src, eos_id=-1, max_new_tokens=8)
        # Make EOS the token that row 0 emits at step 3, so EOS handling is exercised for real.
        eos_id = int(free_run[0, 2])
        expected = manual_greedy(model, src, eos_id=eos_id, max_new_tokens=8)
    # The scenario must be meaningful: some row ended early and was padded, some row ran to the budget.
    assert expected.shape == (4, 8) and (expected == DPAD).any() and (expected == eos_id).any(dim=1).sum() < 4
    actual = greedy_decode(model, src, bos_id=BOS, eos_id=eos_id, pad_id=DPAD, max_new_tokens=8)
    assert torch.equal(actual, expected)
