"""The same small models in transformers and in llmcore, with identical weights, for the speed benchmarks.

The sizes are the issue's: 4 layers, d = 256, 8 heads, vocabulary 4096, dropout 0 - a LLaMA (RMSNorm,
RoPE, SwiGLU of width 688 ≈ 8d/3) and a GPT-2 (LayerNorm, learned positions, GELU MLP of width 4d).
transformers runs its default attention (SDPA) and its own ``generate``.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

VOCAB, WIDTH, LAYERS, HEADS, CONTEXT = 4096, 256, 4, 8, 1024
THREADS = 2

__all__ = ["THREADS", "VOCAB", "model_pair", "interleaved_medians"]


def model_pair(family: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """``(transformers model, llmcore model)`` of ``family`` (``llama`` or ``gpt2``) with equal weights."""
    import transformers

    from llmcore.models.hub import from_hf_model

    torch.manual_seed(seed)
    if family == "llama":
        config = transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            num_key_value_heads=HEADS, intermediate_size=688, max_position_embeddings=CONTEXT,
        )
        hf = transformers.LlamaForCausalLM(config)
    elif family == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS, n_positions=CONTEXT,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
        )
        hf = transformers.GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown family {family!r}; known: llama, gpt2")
    return hf, from_hf_model(hf)


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], *, repeats: int = 5, warmup: int = 1
) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, timed alternately so that load drift hits both."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, record in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])
