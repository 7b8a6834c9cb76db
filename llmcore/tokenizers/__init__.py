"""Byte-pair-encoding tokenizers (字节对编码分词器): train, encode, decode, save, load.

::

    from llmcore.tokenizers import train_bpe, load_hf_tokenizer, BPETokenizer
    tokenizer = train_bpe(text, vocab_size=4096, special_tokens=["<|endoftext|>"])
    ids = tokenizer.encode("你好, world 👋")
    assert tokenizer.decode(ids) == "你好, world 👋"
    tokenizer.save("tokenizer.llmcore.json")
    gpt2_style = load_hf_tokenizer("tokenizer.json")     # a Hugging Face BPE tokenizer.json
"""

from .bpe import BPETokenizer, apply_merges, byte_token
from .byte_alphabet import BYTE_TO_CHAR, CHAR_TO_BYTE, bytes_to_token, token_to_bytes
from .huggingface import load_hf_tokenizer, tokenizer_from_hf_dict
from .pretokenize import (
    GPT2_PATTERN,
    LLAMA3_PATTERN,
    METASPACE_PATTERN,
    QWEN2_PATTERN,
    SPIECE_UNDERLINE,
    PreTokenizer,
    SpecialTokenMatch,
    pre_split,
    split_special,
)
from .training import learn_merges, merge_pair, train_bpe
from .extend import base_pieces, extend_embedding_rows, merge_tokenizers, unreachable_tokens

__all__ = [
    "BPETokenizer", "apply_merges", "byte_token",
    "BYTE_TO_CHAR", "CHAR_TO_BYTE", "bytes_to_token", "token_to_bytes",
    "load_hf_tokenizer", "tokenizer_from_hf_dict",
    "GPT2_PATTERN", "LLAMA3_PATTERN", "METASPACE_PATTERN", "QWEN2_PATTERN", "SPIECE_UNDERLINE",
    "PreTokenizer", "SpecialTokenMatch", "pre_split", "split_special",
    "learn_merges", "merge_pair", "train_bpe",
    "merge_tokenizers", "base_pieces", "unreachable_tokens", "extend_embedding_rows",
]
