"""Extending a vocabulary (扩充词表): merge a Chinese BPE into an English one, then grow the embedding.

Chinese-LLaMA (Cui, Yang and Yao, 2023, "Efficient and Effective Text Encoding for Chinese LLaMA and
Alpaca", §2.2) trained a 20K-piece Chinese SentencePiece model, added its pieces that LLaMA's 32,000
did not have, and got a 49,953-entry tokenizer that needs about half as many tokens for Chinese
text. The embedding matrix and the LM head (语言模型输出层) grew from 32,000 to 49,953 rows; the
old rows stayed as they were and the new rows were appended at the end.

Conventions of this module:

* **Merging** (:func:`merge_tokenizers`): both tokenizers are byte-level BPEs with the same byte
  alphabet. Every id of ``base`` keeps its meaning (so the old embedding rows stay valid); the
  tokens of ``addition`` that ``base`` lacks are appended in ``addition``'s merge order, each with
  its merge, and the added merges rank after all of ``base``'s. A new token is only reachable if
  ``base`` does not already merge its bytes another way: true for Chinese characters when ``base``
  was trained on ASCII English (:func:`unreachable_tokens` lists the exceptions).
* **New rows** (:func:`extend_embedding_rows`), one row per new id, for the input embedding or
  the LM head alike:

  - ``"mean"``: the mean of the old rows. Hugging Face's ``resize_token_embeddings`` does this today
    (``mean_resizing=True``, the default since transformers 4.46): it samples from a normal with the
    old rows' mean and 10⁻⁹ times their covariance, i.e. the mean up to a negligible jitter (Hewitt,
    2021, "Initializing new word embeddings for pretrained language models").
  - ``"subword_mean"``: the mean of the old rows of the pieces ``base`` splits the new token into
    (:func:`base_pieces`): the new token starts where the model already "reads" that text.
  - ``"random"``: ``N(0, std²)``, what ``resize_token_embeddings`` did before 4.46 (``_init_weights``,
    ``std = initializer_range = 0.02`` for LLaMA), and hence what Chinese-LLaMA's 2023 scripts got.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .bpe import BPETokenizer, apply_merges
from .byte_alphabet import BYTE_TO_CHAR, token_to_bytes

__all__ = ["merge_tokenizers", "base_pieces", "unreachable_tokens", "extend_embedding_rows", "INIT_METHODS"]

INIT_METHODS = ("mean", "subword_mean", "random")


def merge_tokenizers(base: BPETokenizer, addition: BPETokenizer) -> BPETokenizer:
    """``base`` with the tokens of ``addition`` it lacks appended (ids ``base.vocab_size`` onwards).

    Both must be ``kind="byte_level"``; the result keeps ``base``'s pre-tokenizer and special tokens.
    """
    if base.kind != "byte_level" or addition.kind != "byte_level":
        raise ValueError("merge_tokenizers joins two byte-level BPE tokenizers")
    data = base.to_dict()
    tokens: list[str] = data["tokens"]
    merges: list[list[int]] = data["merges"]
    ids = {token: i for i, token in enumerate(tokens) if token not in base.special_tokens}
    for left, right, result in addition.merges:
        left_token, right_token = addition.tokens[left], addition.tokens[right]
        new_token = addition.tokens[result]
        if new_token in ids:
            continue
        ids[new_token] = len(tokens)
        tokens.append(new_token)
        merges.append([ids[left_token], ids[right_token], ids[new_token]])
    return BPETokenizer.from_dict(data)


def _merge_table(tokenizer: BPETokenizer) -> dict[tuple[int, int], tuple[int, int]]:
    return {(left, right): (rank, result) for rank, (left, right, result) in enumerate(tokenizer.merges)}


def base_pieces(base: BPETokenizer, extended: BPETokenizer) -> list[list[int]]:
    """For each new id of ``extended`` (from ``base.vocab_size`` on), the ids ``base`` splits its bytes into."""
    table = _merge_table(base)
    byte_ids = [base.token_to_id(BYTE_TO_CHAR[byte]) for byte in range(256)]
    return [apply_merges([byte_ids[byte] for byte in token_to_bytes(extended.tokens[i])], table)
            for i in range(base.vocab_size, extended.vocab_size)]


def unreachable_tokens(extended: BPETokenizer, first_new_id: int) -> list[str]:
    """The new tokens (ids ``first_new_id`` onwards) that encoding their own bytes does not produce."""
    table = _merge_table(extended)
    byte_ids = [extended.token_to_id(BYTE_TO_CHAR[byte]) for byte in range(256)]
    return [extended.tokens[i] for i in range(first_new_id, extended.vocab_size)
            if apply_merges([byte_ids[b] for b in token_to_bytes(extended.tokens[i])], table) != [i]]


def extend_embedding_rows(weight: Tensor, new_rows: int, method: str = "mean", *,
                          pieces: Sequence[Sequence[int]] | None = None, std: float = 0.02,
                          generator: torch.Generator | None = None) -> Tensor:
    """``weight`` ``[V, d]`` with ``new_rows`` rows appended: ``[V + new_rows, d]``, same dtype.

    ``method`` is one of :data:`INIT_METHODS` (see the module docstring); ``"subword_mean"`` needs
    ``pieces`` (``new_rows`` lists of old ids, e.g. from :func:`base_pieces`), ``"random"`` draws
    from ``generator``. The old rows are copied unchanged. Works for an LM head's ``[V, d]`` weight too.
    """
    if method not in INIT_METHODS:
        raise ValueError(f"method must be one of {INIT_METHODS}, got {method!r}")
    old = weight.detach()
    if method == "mean":
        added = old.double().mean(dim=0, keepdim=True).expand(new_rows, -1)
    elif method == "subword_mean":
        if pieces is None or len(pieces) != new_rows or any(len(p) == 0 for p in pieces):
            raise ValueError("subword_mean needs one non-empty list of old ids per new row")
        added = torch.stack([old[list(p)].double().mean(dim=0) for p in pieces]) if new_rows else old[:0].double()
    else:
        added = torch.randn(new_rows, old.shape[1], generator=generator, dtype=torch.float64) * std
    return torch.cat([old, added.to(old.dtype)], dim=0)
