"""Text generation (文本生成) for llmcore's decoder-only and encoder–decoder models.

:func:`generate` is one loop for every ``CausalLM`` (GPT, LLaMA, Qwen, Mistral, Mixtral, …) and
every ``Seq2SeqLM`` (2017 Transformer, T5, BART):

* **greedy** (贪心) - the most probable token (ties go to the lowest id);
* **sampling** (采样) - from the model's distribution reshaped by repetition penalty, temperature,
  top-k and top-p (nucleus, 核采样), in that order, with a seedable ``torch.Generator``;
* **beam search** (束搜索) - the ``num_beams`` best partial sequences by summed log-probability,
  finished hypotheses ranked by ``score / length^length_penalty``;
* batched prompts with **left padding** (a ``[B, P]`` ``attention_mask``; positions count only real
  tokens, so a padded row generates exactly what it would alone);
* **stop tokens**, **streaming** to a callback, and a **KV cache** (:mod:`llmcore.cache`): each step
  feeds one token and reuses every earlier key and value, with Mistral's rolling buffer for
  sliding-window layers and the encoder output's cross-attention keys computed once. Without the
  cache every step recomputes the whole sequence; both give the same tokens.

The building blocks (:func:`apply_repetition_penalty`, :func:`top_k_filter`, :func:`top_p_filter`,
:func:`sampling_distribution`) are public so that a notebook can show each step's effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import KVCache

__all__ = [
    "GenerationResult",
    "apply_repetition_penalty",
    "top_k_filter",
    "top_p_filter",
    "sampling_distribution",
    "generate",
]


@dataclass(frozen=True)
class GenerationResult:
    """What :func:`generate` returns.

    Attributes:
        sequences: ``[B, P + N]`` for a decoder-only model (the prompt as given, padding included,
            then the new tokens); ``[B, N]`` new tokens for an encoder–decoder model.
        new_tokens: ``[B, N]`` the generated tokens; after a row's stop token, ``pad_token_id``.
        finished: ``[B]`` whether the row produced a stop token.
        scores: ``[B]`` beam search's length-normalised log-probability of each returned sequence
            (``None`` for greedy and sampling).
        cache_bytes: memory held by the KV cache at the end (0 without a cache).
    """

    sequences: Tensor
    new_tokens: Tensor
    finished: Tensor
    scores: Tensor | None
    cache_bytes: int


def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty (重复惩罚; Keskar et al., 2019) on ``logits [B, V]``.

    Every token marked in ``seen [B, V]`` (bool) has its logit divided by ``penalty`` when positive
    and multiplied by it when negative, so with ``penalty > 1`` it always becomes less likely.
    """
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, set the others to −∞ (ties at the k-th value are kept)."""
    if k <= 0:
        raise ValueError(f"top_k must be a positive int, got {k}")
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (核采样; Holtzman et al., 2020): keep the smallest set of most probable tokens
    whose probabilities sum to at least ``p``; the others get −∞.

    In descending order of probability a token is kept when the mass of the tokens *before* it is
    still below ``p``, so the most probable token is always kept.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    mass_before = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1) - torch.softmax(sorted_logits, dim=-1)
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_distribution(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """Probabilities ``[B, V]`` to sample from: ``softmax(filter(logits / temperature))``.

    Temperature (温度) < 1 sharpens the distribution, > 1 flattens it; top-k then top-p remove the
    tail.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for temperature 0), got {temperature}")
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def _is_encoder_decoder(model: nn.Module) -> bool:
    return hasattr(model, "encode") and hasattr(model, "decode") and hasattr(model, "decoder_layers")


class _CausalSteps:
    """Feeds a decoder-only model one step at a time, with or without a KV cache."""

    def __init__(self, model: nn.Module, prompt: Tensor, keep: Tensor, use_cache: bool, capacity: int) -> None:
        if getattr(model.config, "position_2d", False):
            raise ValueError(
                "generate does not know the 2-D positions of ChatGLM-style models; call the model with "
                "position_ids/block_position_ids and a KVCache directly"
            )
        self.model = model
        self.ids, self.keep = prompt, keep
        # Positions count real tokens only: a left-padded row sees the same positions as alone.
        self.positions = (keep.long().cumsum(dim=1) - 1).clamp(min=0)
        self.cache = KVCache.for_model(model, capacity) if use_cache else None

    def first(self) -> Tensor:
        return self.model(self.ids, self.keep, self.positions, cache=self.cache, logits_to_keep=1)[:, -1]

    def next(self, tokens: Tensor) -> Tensor:
        position = self.positions[:, -1:] + 1
        step_keep = torch.ones_like(tokens, dtype=torch.bool).unsqueeze(1)
        if self.cache is not None:
            # The cache holds the past; only the newest position is needed for the next step.
            self.positions = position
            return self.model(tokens.unsqueeze(1), step_keep, position, cache=self.cache, logits_to_keep=1)[:, -1]
        self.ids = torch.cat([self.ids, tokens.unsqueeze(1)], dim=1)
        self.keep = torch.cat([self.keep, step_keep], dim=1)
        self.positions = torch.cat([self.positions, position], dim=1)
        return self.model(self.ids, self.keep, self.positions, logits_to_keep=1)[:, -1]

    def reorder(self, index: Tensor) -> None:
        self.positions = self.positions.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)
        else:
            self.ids, self.keep = self.ids.index_select(0, index), self.keep.index_select(0, index)


class _Seq2SeqSteps:
    """Encodes the source once, then feeds the decoder one step at a time."""

    def __init__(
        self, model: nn.Module, source: Tensor, keep: Tensor, start_id: int, use_cache: bool, capacity: int
    ) -> None:
        self.model = model
        self.keep = keep
        self.memory = model.encode(source, keep)
        self.ids = torch.full((source.shape[0], 1), start_id, dtype=torch.long, device=source.device)
        self.cache = KVCache.for_model(model, capacity) if use_cache else None

    def first(self) -> Tensor:
        return self.model.decode(self.ids, self.memory, self.keep, cache=self.cache, logits_to_keep=1)[:, -1]

    def next(self, tokens: Tensor) -> Tensor:
        self.ids = torch.cat([self.ids, tokens.unsqueeze(1)], dim=1)
        if self.cache is not None:
            return self.model.decode(tokens.unsqueeze(1), self.memory, self.keep, cache=self.cache, logits_to_keep=1)[:, -1]
        return self.model.decode(self.ids, self.memory, self.keep, logits_to_keep=1)[:, -1]

    def reorder(self, index: Tensor) -> None:
        self.memory, self.keep = self.memory.index_select(0, index), self.keep.index_select(0, index)
        self.ids = self.ids.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)


def _prompt_keep(input_ids: Tensor, attention_mask: Tensor | None, *, left_padded: bool) -> Tensor:
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(f"input_ids must be [B, P] integers, got {input_ids.dtype} of shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids must hold at least one token per row")
    if attention_mask is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(input_ids.shape)}")
    keep = attention_mask.bool()
    if not bool(keep.any(dim=1).all()):
        raise ValueError("every row of attention_mask needs at least one real token")
    if left_padded and not bool((keep[:, 1:] >= keep[:, :-1]).all()):
        raise ValueError("decoder-only generation needs left padding: in each row of attention_mask, no 0 after a 1")
    return keep


def _check_options(
    max_new_tokens: int, num_beams: int, do_sample: bool, repetition_penalty: float,
    temperature: float, top_k: int | None, top_p: float | None,
) -> None:
    # Checked whatever the mode, so that a typo is never silently ignored by greedy decoding.
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for temperature 0), got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if num_beams > 1 and repetition_penalty != 1.0:
        raise ValueError("repetition_penalty is not supported by beam search; use greedy or sampling")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1, got {num_beams!r}")
    if num_beams > 1 and do_sample:
        raise ValueError("beam search is deterministic: use num_beams > 1 or do_sample=True, not both")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    stop_tokens: Sequence[int] = (),
    pad_token_id: int = 0,
    decoder_start_token_id: int | None = None,
    use_cache: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    on_token: Callable[[Tensor], None] | None = None,
) -> GenerationResult:
    """Continue ``input_ids`` with up to ``max_new_tokens`` tokens.

    Args:
        model: a ``CausalLM`` (``input_ids`` is the prompt) or a ``Seq2SeqLM`` (``input_ids`` is the
            source; decoding starts from ``decoder_start_token_id``: T5 uses its pad id 0, BART its
            eos id 2).
        input_ids: ``[B, P]``; ``attention_mask [B, P]`` marks real tokens (left padding for
            decoder-only models).
        do_sample: sample instead of taking the argmax; ``temperature``, ``top_k`` and ``top_p``
            reshape the distribution (:func:`sampling_distribution`); they are validated in every mode.
        repetition_penalty: > 1 discourages tokens already in the prompt or the output
            (:func:`apply_repetition_penalty`; greedy and sampling - beam search refuses it).
        num_beams: > 1 for beam search; ``length_penalty`` α ranks finished hypotheses by
            ``sum log p / length^α`` (0: raw sum, favours short outputs; 1: mean).
        stop_tokens: ids that finish a row (kept in its output); later positions get ``pad_token_id``.
        use_cache: keep keys and values between steps (same tokens as without, much faster).
        seed / generator: make sampling reproducible (a seed builds a fresh ``torch.Generator``).
        on_token: called after each step with the ``[B]`` tokens just produced (streaming; beam
            search calls it once at the end with each new token column of the best hypotheses).

    Returns:
        A :class:`GenerationResult`. Decoding stops early once every row has finished.
    """
    _check_options(max_new_tokens, num_beams, do_sample, repetition_penalty, temperature, top_k, top_p)
    model_was_training = model.training
    model.eval()
    try:
        encoder_decoder = _is_encoder_decoder(model)
        keep = _prompt_keep(input_ids, attention_mask, left_padded=not encoder_decoder)
        if encoder_decoder and decoder_start_token_id is None:
            raise ValueError("an encoder-decoder model needs decoder_start_token_id (T5: 0, BART: 2)")
        if do_sample and generator is None:
            generator = torch.Generator(device=input_ids.device)
            if seed is not None:
                generator.manual_seed(seed)
            else:
                generator.seed()
        stop = torch.tensor(sorted(set(stop_tokens)), dtype=torch.long, device=input_ids.device)

        def steps_for(ids: Tensor, mask: Tensor):
            if encoder_decoder:
                assert decoder_start_token_id is not None
                return _Seq2SeqSteps(model, ids, mask, decoder_start_token_id, use_cache, max(max_new_tokens, 1))
            # The last new token is never fed back, so the cache needs one position less.
            return _CausalSteps(model, ids, mask, use_cache, ids.shape[1] + max(max_new_tokens - 1, 0))

        if num_beams > 1:
            return _beam_search(
                steps_for, input_ids, keep, encoder_decoder, max_new_tokens=max_new_tokens, num_beams=num_beams,
                length_penalty=length_penalty, stop=stop, pad_token_id=pad_token_id, on_token=on_token,
            )
        return _sample_or_greedy(
            steps_for(input_ids, keep), input_ids, keep, encoder_decoder,
            max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            repetition_penalty=repetition_penalty, stop=stop, pad_token_id=pad_token_id, generator=generator,
            on_token=on_token,
        )
    finally:
        model.train(model_was_training)


def _sample_or_greedy(
    steps, input_ids: Tensor, keep: Tensor, encoder_decoder: bool, *, max_new_tokens: int, do_sample: bool,
    temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float, stop: Tensor,
    pad_token_id: int, generator: torch.Generator | None, on_token: Callable[[Tensor], None] | None,
) -> GenerationResult:
    batch = input_ids.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    produced: list[Tensor] = []
    seen: Tensor | None = None
    logits = steps.first() if max_new_tokens else None
    for step in range(max_new_tokens):
        assert logits is not None
        logits = logits.float()
        if repetition_penalty != 1.0:
            if seen is None:
                counts = torch.zeros(batch, logits.shape[-1], dtype=torch.long, device=logits.device)
                if not encoder_decoder:
                    counts.scatter_add_(1, input_ids, keep.long())
                seen = counts > 0
            logits = apply_repetition_penalty(logits, seen, repetition_penalty)
        if do_sample:
            probs = sampling_distribution(logits, temperature=temperature, top_k=top_k, top_p=top_p)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            token = logits.argmax(dim=-1)
        if stop.numel():
            token = token.masked_fill(finished, pad_token_id)
        produced.append(token)
        if seen is not None:
            seen.scatter_(1, token.unsqueeze(1), True)
        if on_token is not None:
            on_token(token)
        if stop.numel():
            finished |= torch.isin(token, stop)
            if bool(finished.all()):
                break
        if step + 1 < max_new_tokens:
            logits = steps.next(token)
    new_tokens = (
        torch.stack(produced, dim=1) if produced else input_ids.new_empty(batch, 0)
    )
    sequences = new_tokens if encoder_decoder else torch.cat([input_ids, new_tokens], dim=1)
    cache_bytes = steps.cache.memory_bytes() if steps.cache is not None else 0
    return GenerationResult(sequences, new_tokens, finished, None, cache_bytes)


def _length_normalised(total: float, length: int, length_penalty: float) -> float:
    return total / (length**length_penalty)


def _best_possible(total: float, length: int, max_length: int, length_penalty: float) -> float:
    """Upper bound of ``(total + future) / L^α`` over ``L ∈ [length+1, max_length]``, future ≤ 0."""
    if total > 0 or length >= max_length:
        return _length_normalised(total, max(length, 1), length_penalty)
    return max(_length_normalised(total, n, length_penalty) for n in (length + 1, max_length))


def _beam_search(
    steps_for, input_ids: Tensor, keep: Tensor, encoder_decoder: bool, *, max_new_tokens: int, num_beams: int,
    length_penalty: float, stop: Tensor, pad_token_id: int, on_token: Callable[[Tensor], None] | None,
) -> GenerationResult:
    """Beam search over log-probabilities; exact (equal to exhaustive search) once ``num_beams`` is at
    least the number of candidate sequences, because a row stops only when no live beam can still
    beat its ``num_beams``-th finished hypothesis."""
    batch, device = input_ids.shape[0], input_ids.device
    rows = torch.arange(batch, device=device).repeat_interleave(num_beams)
    steps = steps_for(input_ids.index_select(0, rows), keep.index_select(0, rows))
    stop_ids = set(stop.tolist())
    # Only the first beam of each row is live at the start, so the first step picks distinct tokens.
    beam_scores = torch.full((batch, num_beams), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    beam_tokens: list[list[list[int]]] = [[[] for _ in range(num_beams)] for _ in range(batch)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    logits = steps.first() if max_new_tokens else None
    for step in range(max_new_tokens):
        assert logits is not None
        log_probs = F.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.shape[-1]
        candidates = (beam_scores.view(-1, 1) + log_probs).view(batch, num_beams * vocab)
        width = min(2 * num_beams, num_beams * vocab)
        top_scores, top_index = torch.topk(candidates, width, dim=1)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        next_scores = torch.full((batch, num_beams), float("-inf"), device=device)
        next_tokens = torch.full((batch, num_beams), pad_token_id, dtype=torch.long, device=device)
        next_source = torch.zeros(batch, num_beams, dtype=torch.long, device=device)
        new_beam_tokens: list[list[list[int]]] = []
        last_step = step + 1 == max_new_tokens
        for b in range(batch):
            kept: list[list[int]] = []
            if not done[b]:
                for score, flat in zip(top_scores[b], top_index[b]):
                    if score == float("-inf") or len(kept) == num_beams:
                        break
                    beam, token = divmod(flat, vocab)
                    tokens = beam_tokens[b][beam] + [token]
                    if token in stop_ids or last_step:
                        finished[b].append((_length_normalised(score, len(tokens), length_penalty), tokens))
                        continue
                    next_scores[b, len(kept)] = score
                    next_tokens[b, len(kept)] = token
                    next_source[b, len(kept)] = b * num_beams + beam
                    kept.append(tokens)
                finished[b].sort(key=lambda hypothesis: -hypothesis[0])
                del finished[b][num_beams:]
                live_best = max(
                    (_best_possible(float(next_scores[b, i]), len(t), max_new_tokens, length_penalty) for i, t in enumerate(kept)),
                    default=float("-inf"),
                )
                if len(finished[b]) == num_beams and finished[b][-1][0] >= live_best or not kept:
                    done[b] = True
            if done[b]:
                kept = []
                next_source[b] = b * num_beams
            kept += [[] for _ in range(num_beams - len(kept))]
            new_beam_tokens.append(kept)
        beam_tokens = new_beam_tokens
        if all(done) or last_step:
            break
        index = next_source.view(-1)
        steps.reorder(index)
        beam_scores = next_scores
        logits = steps.next(next_tokens.view(-1))
    best = [max(hyps, key=lambda hypothesis: hypothesis[0]) if hyps else (0.0, []) for hyps in finished]
    length = max((len(tokens) for _, tokens in best), default=0)
    new_tokens = torch.full((batch, length), pad_token_id, dtype=torch.long, device=device)
    for b, (_, tokens) in enumerate(best):
        new_tokens[b, : len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=device)
    if on_token is not None:
        for column in new_tokens.unbind(dim=1):
            on_token(column)
    ended = torch.tensor([bool(tokens) and tokens[-1] in stop_ids for _, tokens in best], device=device)
    scores = torch.tensor([score for score, _ in best], device=device)
    sequences = new_tokens if encoder_decoder else torch.cat([input_ids, new_tokens], dim=1)
    cache_bytes = steps.cache.memory_bytes() if steps.cache is not None else 0
    return GenerationResult(sequences, new_tokens, ended, scores, cache_bytes)
