"""Inputs shared by the tests of the 2017 encoder-decoder (tests/test_transformer.py, tests/test_decoding.py)."""

from __future__ import annotations

import torch

from llmcore import TransformerConfig

PAD = 0


def padded_ids(lengths, width, vocab_size, seed):
    """Rows of random real tokens (ids 1..V-1) followed by PAD."""
    ids = torch.randint(1, vocab_size, (len(lengths), width), generator=torch.Generator().manual_seed(seed))
    return ids.masked_fill(torch.arange(width) >= torch.tensor(lengths)[:, None], PAD)


def small_config(**overrides):
    base = dict(
        src_vocab_size=11, tgt_vocab_size=13, d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=3,
        d_ff=32, dropout=0.0, max_positions=16, pad_id=PAD,
    )
    return TransformerConfig(**{**base, **overrides})
