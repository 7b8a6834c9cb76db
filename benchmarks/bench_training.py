"""Training-step speed and memory, llmcore vs transformers (same weights, same thread count, same run).

One step is forward + cross-entropy + backward on a batch of 8 × 256 tokens, for the LLaMA and the
GPT-2 of :mod:`benchmarks.hf_pairs` (dropout 0, transformers with its default SDPA attention).
Figures: step-time ratio llmcore / transformers (target ≤ 1.0) and the peak memory a step adds,
measured in a fresh process per side as the resident set's peak during the step minus the resident
set before it (Linux: the peak is reset through ``/proc/self/clear_refs``; target ≤ 1.0). Before timing, both sides' losses and gradients must agree (the same model), or the
speed figure is reported as unmet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.common import Figure
from llmcore.losses import next_token_loss
from benchmarks.hf_pairs import THREADS, VOCAB, interleaved_medians, model_pair

BATCH, LENGTH = 8, 256
REPO = Path(__file__).resolve().parent.parent


def _batch() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(2))


def hf_step(hf, tokens: torch.Tensor) -> torch.Tensor:
    loss = hf(tokens, labels=tokens).loss
    loss.backward()
    return loss.detach()


def llmcore_step(model, tokens: torch.Tensor) -> torch.Tensor:
    loss = next_token_loss(model(tokens), tokens)
    loss.backward()
    return loss.detach()


def _same_step(hf, ours, tokens: torch.Tensor) -> bool:
    hf_loss, our_loss = hf_step(hf, tokens), llmcore_step(ours, tokens)
    hf_grad = hf.get_output_embeddings().weight.grad
    same = torch.allclose(hf_loss, our_loss, rtol=1e-5) and torch.allclose(hf_grad, ours.lm_head.weight.grad, atol=1e-6)
    hf.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    return same


_MEMORY_PROBE = """
import json, sys, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads({threads})
from benchmarks.bench_training import _batch, hf_step, llmcore_step
from benchmarks.hf_pairs import model_pair
hf, ours = model_pair({family!r})
model, step = (hf, hf_step) if {side!r} == "hf" else (ours, llmcore_step)
tokens = _batch()
def status(field):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field))
with open("/proc/self/clear_refs", "w") as handle:  # "5" resets the peak resident set (VmHWM)
    handle.write("5")
before = status("VmRSS:")
step(model, tokens)
print(json.dumps(status("VmHWM:") - before))
"""


def _peak_step_kib(family: str, side: str) -> int:
    code = _MEMORY_PROBE.format(repo=str(REPO), threads=THREADS, family=family, side=side)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def run() -> list[Figure]:
    torch.set_num_threads(THREADS)
    figures = []
    tokens = _batch()
    for family in ("llama", "gpt2"):
        hf, ours = model_pair(family)
        hf.train()
        ours.train()
        same = _same_step(hf, ours, tokens)

        def timed(model, step):
            def once() -> None:
                step(model, tokens)
                model.zero_grad(set_to_none=True)

            return once

        hf_s, ours_s = interleaved_medians(timed(hf, hf_step), timed(ours, llmcore_step), repeats=5)
        figures.append(Figure(f"train_step_{family}_vs_hf", ours_s / hf_s if same else float("inf"), "x", "<=", 1.0))
        figures.append(Figure(f"train_step_{family}_ms", ours_s * 1e3, "ms", "<=", hf_s * 1e3))
        hf_kib, ours_kib = _peak_step_kib(family, "hf"), _peak_step_kib(family, "llmcore")
        figures.append(Figure(f"train_step_{family}_peak_memory_vs_hf", ours_kib / max(hf_kib, 1), "x", "<=", 1.0))
    return figures
