"""Greedy generation speed, llmcore vs transformers (same weights, same thread count, same run).

256 new tokens after a 16-token prompt, batch 1, for the LLaMA and the GPT-2 of
:mod:`benchmarks.hf_pairs`. Figures: tokens/s ratio with the KV cache (target ≥ 1.5), without it
(recomputing the whole sequence every step; reported, target ≥ 1), and the KV cache's memory
against transformers' ``DynamicCache`` after the same generation (target ≤ 1; llmcore preallocates
the prompt + new tokens, transformers grows its cache by concatenation). Both sides must produce the
same tokens, or the figure is not reported as met.
"""

from __future__ import annotations

import torch

from benchmarks.common import Figure
from benchmarks.hf_pairs import THREADS, VOCAB, interleaved_medians, model_pair

PROMPT, NEW = 16, 256


def _hf_generate(hf, prompt: torch.Tensor, use_cache: bool, new_tokens: int) -> torch.Tensor:
    return hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        do_sample=False, use_cache=use_cache, eos_token_id=None, pad_token_id=0,
    )


def _hf_cache_bytes(hf, prompt: torch.Tensor) -> int:
    out = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
        eos_token_id=None, pad_token_id=0, return_dict_in_generate=True,
    )
    cache = out.past_key_values
    return sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values) if t is not None
    )


def run() -> list[Figure]:
    from transformers.utils import logging as hf_logging

    from llmcore.generation import generate

    hf_logging.set_verbosity_error()
    torch.set_num_threads(THREADS)
    figures = []
    for family in ("llama", "gpt2"):
        hf, ours = model_pair(family)
        hf.eval()
        ours.eval()
        prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            same = torch.equal(_hf_generate(hf, prompt, True, NEW), generate(ours, prompt, max_new_tokens=NEW).sequences)
            hf_s, ours_s = interleaved_medians(
                lambda: _hf_generate(hf, prompt, True, NEW), lambda: generate(ours, prompt, max_new_tokens=NEW), repeats=5
            )
            figures.append(Figure(f"generate_cached_{family}_vs_hf", hf_s / ours_s if same else 0.0, "x", ">=", 1.5))
            figures.append(Figure(f"generate_cached_{family}_tokens_per_s", NEW / ours_s, "tok/s", ">=", NEW / hf_s))
            short = NEW // 4  # without a cache each step is a full forward; a quarter keeps the run short
            hf_s, ours_s = interleaved_medians(
                lambda: _hf_generate(hf, prompt, False, short),
                lambda: generate(ours, prompt, max_new_tokens=short, use_cache=False),
                repeats=3,
            )
            figures.append(Figure(f"generate_uncached_{family}_vs_hf", hf_s / ours_s, "x", ">=", 1.0))
            ours_bytes = generate(ours, prompt, max_new_tokens=NEW).cache_bytes
            figures.append(Figure(f"kv_cache_memory_{family}_vs_hf", ours_bytes / _hf_cache_bytes(hf, prompt), "x", "<=", 1.0))
    return figures
