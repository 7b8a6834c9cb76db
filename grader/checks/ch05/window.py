"""Exercises of notebook 03_mistral_sliding_window: the sliding-window mask, the rolling-buffer KV
cache and the receptive field of stacked windows (SYLLABUS L14; Mistral 7B, Jiang et al. 2023).

Conventions, as in llmcore and transformers 5.x: masks are boolean with True = may attend; a window
of ``W`` keys counts the query itself, so key ``k`` is kept for query ``q`` iff ``q − W < k ≤ q``;
position ``p`` of a rolling buffer lives in slot ``p mod W``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from llmcore import cache as reference_cache
from llmcore.cache import KVCache
from llmcore import masks as reference_masks
from llmcore.masks import MaskMod
from llmcore.viz import masks as reference_viz_masks

from ..cases import CaseRandom
from ..framework import Case, CheckFailure, Mistake
from ..mask_mods import evaluate_mask_mod
from ..spec import Exercise, register

__all__ = [
    "SLIDING_WINDOW_MASK",
    "ROLLING_KV_CACHE",
    "SLIDING_RECEPTIVE_FIELD",
    "check_sliding_window_mask",
    "check_rolling_kv_cache",
    "check_sliding_receptive_field",
    "kv_cache_with",
]


# --------------------------------------------------------------------------------------------------
# The sliding-window mask: sliding_window_mask(window) -> mask_mod
# --------------------------------------------------------------------------------------------------

def _evaluate_window_mask(make_mask_mod: Callable[[int], MaskMod]) -> Callable[..., Tensor]:
    """``(window, B, H, L, S) -> [B, H, L, S]``: the mask_mod made for ``window``, evaluated by
    llmcore.dense_mask with the L queries at the last L of the S positions (as with a KV cache)."""

    def evaluate(window: int, batch: int, heads: int, q_len: int, kv_len: int) -> Tensor:
        mask_mod = make_mask_mod(window)
        if not callable(mask_mod):
            returned = "None" if mask_mod is None else type(mask_mod).__name__
            raise CheckFailure(
                f"✘ sliding_window_mask({window}) returned {returned}: "
                "it must return a mask_mod, a function (b, h, q_idx, kv_idx) -> boolean tensor. Define it inside "
                "sliding_window_mask and `return` it.", exercise="sliding_window_mask", mistake_id="wrong_return")
        return evaluate_mask_mod(mask_mod, described=f"the mask_mod of sliding_window_mask({window})",
                                 exercise="sliding_window_mask", batch=batch, heads=heads, q_len=q_len,
                                 kv_len=kv_len, q_offset=kv_len - q_len)

    return evaluate


def _band(keep: Callable[[Tensor, int], Tensor]) -> Callable[..., Tensor]:
    """A mistaken window as a rule on the distance ``q − k``: ``keep(distance, window)``."""
    return _evaluate_window_mask(lambda window: lambda b, h, q_idx, kv_idx: keep(q_idx - kv_idx, window))


def _keeps_future_keys(got: Any, expected: Any) -> bool:
    """The symptom of a band that is not causal: some query keeps a key after its own position.

    The cases put the queries at the last L of S positions, so query row i sits at position S − L + i.
    """
    if not isinstance(got, Tensor) or not isinstance(expected, Tensor) or got.shape != expected.shape:
        return False
    if got.dtype != torch.bool:
        return False
    q_len, kv_len = got.shape[-2:]
    query_positions = torch.arange(kv_len - q_len, kv_len).view(-1, 1)
    future = torch.arange(kv_len).view(1, -1) > query_positions
    return bool((got & future).any())


def _window_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # args: (window, B, H, L, S); the L queries sit at positions S − L … S − 1.
    if not hidden:
        return [
            Case("W=3, B=1, H=1, L=S=9 (a prompt of 9 tokens)", (3, 1, 1, 9, 9)),
            Case("W=4, B=2, H=3, L=S=7: the mask_mod must broadcast over batch rows and heads", (4, 2, 3, 7, 7)),
            Case("W=5, L=3 queries at positions 9, 10, 11 over S=12 keys (decoding with a cache)", (5, 1, 1, 3, 12)),
            Case("W=1: each token sees only itself, L=S=5", (1, 1, 1, 5, 5)),
            Case("W=8 longer than the text, L=S=6: the window hides nothing, the mask is causal", (8, 1, 1, 6, 6)),
        ]
    return [
        Case("W=7, B=2, H=1, L=S=30", (7, 2, 1, 30, 30)),
        Case("W=2, B=1, H=2, L=4 queries at positions 9..12 over S=13 keys", (2, 1, 2, 4, 13)),
        Case("W=6, one decoding step: L=1 query at position 19 over S=20 keys", (6, 1, 1, 1, 20)),
        Case("W=16, L=S=10", (16, 1, 1, 10, 10)),
    ]


SLIDING_WINDOW_MISTAKES = [
    Mistake(
        "window_plus_one",
        "the window holds W+1 keys: the query plus W before it",
        "W counts the query itself (Mistral's buffer has W slots): key k is kept when q − W < k ≤ q, "
        "so with W=8 position 8 sees positions 1…8, never position 0 (HF #29623, vLLM #3385).",
        "keep 0 <= q_idx - kv_idx < window; `<= window` lets W+1 keys through.",
        output=_band(lambda distance, window: (distance >= 0) & (distance <= window)),
    ),
    Mistake(
        "window_minus_one",
        "the window holds W−1 keys",
        "a window of W keys reaches back W−1 positions: distances 0, 1, …, W−1 are all kept.",
        "keep 0 <= q_idx - kv_idx < window (not < window - 1, nor kv_idx > q_idx - window + 1).",
        output=_band(lambda distance, window: (distance >= 0) & (distance < window - 1)),
    ),
    Mistake(
        "window_before_query",
        "the window is the W keys before the query, without the query itself",
        "the query is one of its own W keys (distance 0); a token that cannot see itself loses its own value.",
        "keep 0 <= q_idx - kv_idx < window; distance 0 (the query itself) is inside.",
        output=_band(lambda distance, window: (distance > 0) & (distance <= window)),
    ),
    Mistake(
        "no_window",
        "the mask is only causal: the window's far edge is missing",
        "a sliding window adds a second bound to causality: keys more than W−1 positions back are hidden.",
        "combine both bounds: (q_idx - kv_idx >= 0) & (q_idx - kv_idx < window).",
        output=_band(lambda distance, window: distance >= 0),
    ),
    Mistake(
        "inverted",
        "the mask is inverted (True where attention is forbidden)",
        "in this course True means *may attend*: True inside the window, False outside.",
        "return the window itself, (q_idx - kv_idx >= 0) & (q_idx - kv_idx < window), not its complement.",
        output=_band(lambda distance, window: (distance < 0) | (distance >= window)),
    ),
    Mistake(
        "not_causal",
        "the band is not causal: queries keep keys after their own position",
        "the window lies behind the query: only distances q − k = 0 … W−1 are kept, never a negative one.",
        "use the signed distance q_idx - kv_idx with both bounds, not its absolute value.",
        detect=_keeps_future_keys,
    ),
]


SLIDING_WINDOW_MASK = register(Exercise(
    id="sliding_window_mask",
    title="sliding_window_mask",
    syllabus=("L14",),
    reference=_evaluate_window_mask(reference_masks.sliding_window_mask),
    cases=_window_cases,
    adapt=_evaluate_window_mask,
    mistakes=SLIDING_WINDOW_MISTAKES,
    forbidden={
        reference_masks.sliding_window_mask: "llmcore.sliding_window_mask",
        reference_masks.strided_local_mask: "llmcore.masks.strided_local_mask (the same band)",
        reference_masks.layer_kind_mask: "llmcore.masks.layer_kind_mask",
    },
    delegation=reference_masks.sliding_window_mask,
    output_names=("mask",),
    fallback_hint="inside the mask_mod: distance = q_idx - kv_idx; return (distance >= 0) & (distance < window).",
))
check_sliding_window_mask = SLIDING_WINDOW_MASK.check


# --------------------------------------------------------------------------------------------------
# The rolling-buffer KV cache: a class RollingKVCache(window) with .keys, .values, .positions, .length
# and update(keys, values) -> (keys, values, positions), driven chunk by chunk by the check.
# --------------------------------------------------------------------------------------------------


class _LibraryRollingCache:
    """The learner's API on top of llmcore.cache.RollingKVCache (the reference and the delegation)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.library = reference_cache.RollingKVCache(window)
        self.positions = torch.full((window,), -1)

    @property
    def length(self) -> int:
        return self.library.length

    @property
    def keys(self) -> Tensor | None:
        return self.library.keys

    @property
    def values(self) -> Tensor | None:
        return self.library.values

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        filled = min(self.library.length, self.window)
        old_positions = self.library.slot_positions()
        start = self.library.length
        if filled:
            old_keys = self.library.keys[:, :, :filled].clone()
            old_values = self.library.values[:, :, :filled].clone()
        self.library.update(keys, values)
        held = self.library.slot_positions()
        self.positions[: len(held)] = held
        new_positions = torch.arange(start, start + keys.shape[2])
        if not filled:
            return keys, values, new_positions
        return (torch.cat([old_keys, keys], 2), torch.cat([old_values, values], 2),
                torch.cat([old_positions, new_positions]))


def _attend(queries: Tensor, returned: Any, window: int, start: int, step: int = 1) -> Tensor:
    """The step's queries (positions start, start+1, …) attending, within the window, to what update returned.

    Returned positions that no correct cache returns are named here, at the step where they first appear: −1
    (an empty slot returned with the filled ones) and a position returned twice (the old part read after the
    chunk's write, often through a slice of the buffer, which is a view; or the chunk's positions started wrong).
    """
    if not isinstance(returned, (tuple, list)) or len(returned) != 3:
        raise CheckFailure(
            "✘ RollingKVCache.update must return three things, (keys, values, positions): the keys and values the "
            "chunk's queries attend to and their absolute positions; it returned "
            f"{'None' if returned is None else 'a ' + type(returned).__name__}"
            f"{' of ' + str(len(returned)) if isinstance(returned, (tuple, list)) else ''}.",
            exercise="rolling_kv_cache", mistake_id="wrong_return")
    keys, values, positions = returned
    for name, value in (("keys", keys), ("values", values), ("positions", positions)):
        if not isinstance(value, Tensor):
            raise CheckFailure(f"✘ RollingKVCache.update returned {name} that is not a tensor "
                               f"({'None' if value is None else type(value).__name__}).",
                               exercise="rolling_kv_cache", mistake_id="wrong_return")
    _check_returned_positions(positions, window, start, queries.shape[2], step)
    query_positions = torch.arange(start, start + queries.shape[2]).view(-1, 1)
    distance = query_positions - positions.view(1, -1)
    visible = (distance >= 0) & (distance < window)
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
    weights = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
    return weights @ values


def _check_returned_positions(positions: Tensor, window: int, start: int, chunk_length: int, step: int) -> None:
    if positions.dim() != 1 or positions.is_floating_point() or positions.is_complex() or not positions.numel():
        return
    where = f"at step {step} (W={window}, the chunk starts at position {start})"
    if bool((positions < 0).any()):
        raise CheckFailure(
            f"✘ RollingKVCache.update returned the position {int(positions.min())} {where}: that is an empty "
            "slot, not a position, and the chunk's queries would attend to whatever it holds.\n"
            "Idea: return only the filled slots as they were before the chunk (filled = self.positions >= 0: "
            "self.keys[:, :, filled], …), followed by the chunk.",
            exercise="rolling_kv_cache", mistake_id="empty_slots_returned")
    values, counts = positions.unique(return_counts=True)
    repeated = values[counts > 1]
    if not repeated.numel():
        return
    chunk = torch.arange(start, start + chunk_length)
    read_after_write = repeated[torch.isin(repeated, chunk)]
    if read_after_write.numel():
        raise CheckFailure(
            f"✘ RollingKVCache.update returned the position {int(read_after_write[0])} twice {where}: once in the "
            "old part and once in the chunk, so the chunk's queries would attend to that key twice.\n"
            "Idea: the old part is the slots as they were *before* the chunk is written. Read after the write, or "
            "taken as a slice of the buffer (self.keys[:, :, :n], self.positions[:n]: a view, which the write "
            "changes before torch.cat reads it), it already holds the chunk. Copy it before writing (.clone(), or "
            "index with the boolean mask self.positions >= 0, which copies).",
            exercise="rolling_kv_cache", mistake_id="old_part_read_after_write")
    raise CheckFailure(
        f"✘ RollingKVCache.update returned the position {int(repeated[0])} twice {where}, so the chunk's queries "
        "would attend to that key twice.\n"
        f"Idea: the old part holds positions before the chunk, each once; the chunk's own positions are "
        f"self.length … self.length + L − 1, here {start} … {start + chunk_length - 1} (self.length counts every "
        "position fed so far).",
        exercise="rolling_kv_cache", mistake_id="position_returned_twice")


def _filled_slots(buffer: Any, positions: Any) -> Any:
    """The buffer with its empty slots (position −1) zeroed, so that what a cache leaves there does not count."""
    if not (isinstance(buffer, Tensor) and isinstance(positions, Tensor) and buffer.dim() == 4
            and positions.dim() == 1 and buffer.shape[2] == positions.shape[0]):
        return buffer
    return torch.where((positions >= 0).view(1, 1, -1, 1), buffer, torch.zeros((), dtype=buffer.dtype))


def _snapshot(value: Any) -> Any:
    """A copy of what the cache holds now (its buffers change in place at the next step)."""
    return value.detach().clone() if isinstance(value, Tensor) else value


def _drive(cache_class: Callable[[int], Any]) -> Callable[..., tuple]:
    """``(window, keys, values, queries, chunks) -> outputs``: feed the cache chunk by chunk; after each step
    record the slots' positions, keys and values, and the attention output of the step's queries."""

    def run(window: int, keys: Tensor, values: Tensor, queries: Tensor, chunks: tuple[int, ...]) -> tuple:
        cache = cache_class(window)
        outputs: list[Any] = []
        start = 0
        for number, size in enumerate(chunks, 1):
            step = slice(start, start + size)
            returned = cache.update(keys[:, :, step].clone(), values[:, :, step].clone())
            attended = _attend(queries[:, :, step], returned, window, start, number)
            positions = _snapshot(cache.positions)
            outputs += [positions, _filled_slots(_snapshot(cache.keys), positions),
                        _filled_slots(_snapshot(cache.values), positions), attended]
            start += size
        return tuple(outputs)

    return run


class _MistakenRollingCache:
    """A plain rolling buffer with one knob per known mistake (the mistakes' variants)."""

    def __init__(self, window: int, *, queue: bool = False, from_slot_zero: bool = False,
                 clear_on_wrap: bool = False, chunk_replaces: bool = False, write_first: bool = False,
                 extra_slot: bool = False) -> None:
        self.window = window
        self.slots = window + 1 if extra_slot else window
        self.queue, self.from_slot_zero, self.clear_on_wrap = queue, from_slot_zero, clear_on_wrap
        self.chunk_replaces, self.write_first = chunk_replaces, write_first
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.positions = torch.full((self.slots,), -1)
        self.length = 0

    def _held(self) -> tuple[Tensor, Tensor, Tensor]:
        filled = self.positions >= 0
        return self.keys[:, :, filled], self.values[:, :, filled], self.positions[filled]

    def _write(self, keys: Tensor, values: Tensor) -> None:
        if self.keys is None:
            batch, heads, _, head_dim = keys.shape
            self.keys = keys.new_zeros(batch, heads, self.slots, head_dim)
            self.values = values.new_zeros(batch, heads, self.slots, head_dim)
        if self.chunk_replaces:
            self.positions.fill_(-1)
        for i in range(keys.shape[2]):
            position = self.length + i
            if self.clear_on_wrap and position > 0 and position % self.slots == 0:
                self.positions.fill_(-1)
            slot = (i if self.from_slot_zero else position) % self.slots
            if self.queue and position >= self.slots:  # full: shift everything one slot left, write at the end
                self.keys, self.values = self.keys.roll(-1, 2), self.values.roll(-1, 2)
                self.positions = self.positions.roll(-1)
                slot = self.slots - 1
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = position
        self.length += keys.shape[2]

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.write_first:
            self._write(keys, values)
            return self._held()
        start = self.length
        if self.keys is None:
            old = (keys[:, :, :0], values[:, :, :0], torch.zeros(0, dtype=torch.long))
        else:
            old = self._held()
        self._write(keys, values)
        return (torch.cat([old[0], keys], 2), torch.cat([old[1], values], 2),
                torch.cat([old[2], torch.arange(start, start + keys.shape[2])]))


def _cache_variant(**knob: bool) -> Callable[..., tuple]:
    return _drive(lambda window: _MistakenRollingCache(window, **knob))


def _cache_case(random: CaseRandom, description: str, window: int, batch: int, heads: int, head_dim: int,
                chunks: tuple[int, ...], dtype: torch.dtype) -> Case:
    length = sum(chunks)
    shape = (batch, heads, length, head_dim)
    keys, values, queries = (random.tensor(shape, dtype) for _ in range(3))
    return Case(description, (window, keys, values, queries, chunks))


def _cache_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # args: (window, keys, values, queries [B, H, T, D], chunk sizes); the check feeds the chunks in order.
    if not hidden:
        return [
            _cache_case(random, "W=4, B=2, H=3, D=5, float32: 10 tokens fed one at a time (the buffer wraps twice)",
                        4, 2, 3, 5, (1,) * 10, torch.float32),
            _cache_case(random, "W=5, B=3, H=2, D=4, float64: a 12-token prompt in Mistral's chunks of W (5, 5, 2), "
                                "then 3 decoding steps", 5, 3, 2, 4, (5, 5, 2, 1, 1, 1), torch.float64),
            _cache_case(random, "W=3, B=1, H=2, D=6, float32: chunks (2, 7, 1), the second longer than the window",
                        3, 1, 2, 6, (2, 7, 1), torch.float32),
        ]
    return [
        _cache_case(random, "W=6, B=2, H=1, D=3, float64: chunks (3, 1, 6, 6, 1, 1, 2)",
                    6, 2, 1, 3, (3, 1, 6, 6, 1, 1, 2), torch.float64),
        _cache_case(random, "W=2, B=1, H=3, D=4, float32: 7 single tokens", 2, 1, 3, 4, (1,) * 7, torch.float32),
        _cache_case(random, "W=7, B=2, H=2, D=5, float32: one 20-token prefill, then 2 decoding steps",
                    7, 2, 2, 5, (20, 1, 1), torch.float32),
        _cache_case(random, "W=1, B=1, H=2, D=3, float64: chunks (1, 3, 1)", 1, 1, 2, 3, (1, 3, 1), torch.float64),
    ]


ROLLING_CACHE_MISTAKES = [
    Mistake(
        "queue",
        "the buffer is a queue in time order (old keys shifted out), not slots p mod W",
        "Mistral's buffer never moves a key: position p is written once, into slot p mod W, overwriting p − W.",
        "slot = position % self.window; self.keys[:, :, slot] = …; no torch.cat/roll of the whole buffer.",
        output=_cache_variant(queue=True),
    ),
    Mistake(
        "slots_from_zero",
        "each chunk is written from slot 0: the chunk's positions start at self.length, not at 0",
        "a token's slot comes from its absolute position p = self.length + i, so the second chunk continues "
        "where the first stopped.",
        "positions = torch.arange(self.length, self.length + L); slots = positions % self.window.",
        output=_cache_variant(from_slot_zero=True),
    ),
    Mistake(
        "cleared_on_wrap",
        "the buffer is emptied when it wraps: the W − 1 positions still inside the window are lost",
        "when position p comes back to slot 0 it overwrites only p − W; the other slots still hold keys the next "
        "queries need.",
        "never reset self.positions or the buffers after the first write; overwrite one slot per new position.",
        output=_cache_variant(clear_on_wrap=True),
    ),
    Mistake(
        "chunk_replaces_buffer",
        "the new chunk replaces the buffer: positions written earlier are forgotten",
        "each position overwrites only its own slot; the earlier slots keep their positions until a later token "
        "lands on them.",
        "write into the chunk's slots only; leave the other entries of self.positions and the buffers as they are.",
        output=_cache_variant(chunk_replaces=True),
    ),
    Mistake(
        "write_before_read",
        "the chunk is written before its queries read: it overwrote keys its own first queries still need",
        "a chunk's first query needs the W − 1 positions before it, which the chunk's later tokens overwrite; "
        "return the old slots plus the chunk, then write.",
        "old = (self.keys[:, :, filled], …) cloned first; result = torch.cat([old, chunk]); then write the slots.",
        output=_cache_variant(write_first=True),
    ),
    Mistake(
        "window_plus_one_slots",
        "the buffer has W + 1 slots",
        "a window of W keys counts the query itself, so W slots hold everything a query may see.",
        "allocate [B, H_kv, window, D] buffers and use slot = position % window.",
        output=_cache_variant(extra_slot=True),
    ),
]


class _CacheExercise(Exercise):
    """The learner writes a class; the check builds it with the window and drives it (``adapt``)."""

    expects = "the class RollingKVCache itself"

    def _guard(self, learner: Any) -> None:
        if not isinstance(learner, type) and hasattr(learner, "update"):
            raise CheckFailure(f"✘ {self.title}: expected the class itself, got an instance. "
                               "Pass the class: check_rolling_kv_cache(RollingKVCache).",
                               exercise=self.id, mistake_id="wrong_object")
        if not callable(learner):
            raise CheckFailure(f"✘ {self.title}: expected {self.expects}, got a {type(learner).__name__}",
                               exercise=self.id, mistake_id="wrong_object")


ROLLING_KV_CACHE = register(_CacheExercise(
    id="rolling_kv_cache",
    title="RollingKVCache",
    syllabus=("L14",),
    reference=_drive(_LibraryRollingCache),
    cases=_cache_cases,
    adapt=_drive,
    mistakes=ROLLING_CACHE_MISTAKES,
    forbidden={
        reference_cache.RollingKVCache.update: "llmcore.cache.RollingKVCache",
        reference_cache.RollingKVCache._write: "llmcore.cache.RollingKVCache",
    },
    delegation=_LibraryRollingCache,
    output_names=tuple(
        f"after step {step}: {what}" for step in range(1, 17)
        for what in ("the positions in the slots (self.positions)", "the keys in the filled slots (self.keys)",
                     "the values in the filled slots (self.values)",
                     "the attention output of the step's queries over what update returned")
    ),
    fallback_hint="in update: old = the filled slots (keys, values, positions) cloned; positions of the chunk = "
                  "arange(self.length, self.length + L); write its last min(L, W) tokens to slots position % W; "
                  "self.length += L; return the old part followed by the chunk.",
))
check_rolling_kv_cache = ROLLING_KV_CACHE.check


# --------------------------------------------------------------------------------------------------
# The receptive field of N stacked sliding-window layers: sliding_receptive_field(length, window, n_layers)
# --------------------------------------------------------------------------------------------------


def _reference_receptive_field(length: int, window: int, n_layers: int) -> Tensor:
    mask = reference_masks.dense_mask(reference_masks.sliding_window_mask(window), 1, 1, length, length)[0, 0]
    return reference_viz_masks.receptive_field(mask, n_layers)


def _reach(back: Callable[[int, int], int], *, two_sided: bool = False) -> Callable[..., Tensor]:
    """A mistaken receptive field: query q has drawn on j when 0 <= q − j <= back(window, n_layers)."""

    def field(length: int, window: int, n_layers: int) -> Tensor:
        distance = torch.arange(length).view(-1, 1) - torch.arange(length).view(1, -1)
        if two_sided:
            distance = distance.abs()
        return (distance >= 0) & (distance <= back(window, n_layers))

    return field


def _counted_in_a_byte(length: int, window: int, n_layers: int) -> Tensor:
    """Paths counted with a matrix power in uint8 and thresholded only at the end: counts wrap mod 256."""
    mask = reference_masks.dense_mask(reference_masks.sliding_window_mask(window), 1, 1, length, length)[0, 0].long()
    paths = torch.eye(length, dtype=torch.long)
    for _ in range(n_layers):
        paths = (mask @ paths) % 256
    return paths > 0


def _reaches_the_future(got: Any, expected: Any) -> bool:
    if not isinstance(got, Tensor) or not isinstance(expected, Tensor) or got.shape != expected.shape:
        return False
    return got.dtype == torch.bool and got.dim() == 2 and bool(got.triu(diagonal=1).any())


def _receptive_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # args: (length S, window W, n_layers N)
    if not hidden:
        return [
            Case("S=14, W=3, N=3 layers", (14, 3, 3)),
            Case("S=20, W=4, N=2 layers", (20, 4, 2)),
            Case("S=9, W=1, N=5 layers: a window of one token never reaches another", (9, 1, 5)),
            Case("S=7, W=3, N=0 layers: before any layer each position holds only itself", (7, 3, 0)),
            Case("S=16, W=5, N=6 layers: the reach (24 back) is longer than the text", (16, 5, 6)),
            Case("S=20, W=8, N=6 layers: up to 17136 paths lead from a key to a query", (20, 8, 6)),
        ]
    return [
        Case("S=40, W=7, N=4 layers", (40, 7, 4)),
        Case("S=24, W=7, N=8 layers: hundreds of thousands of paths lead from a key to a query", (24, 7, 8)),
        Case("S=33, W=2, N=30 layers", (33, 2, 30)),
        Case("S=12, W=12, N=1 layer", (12, 12, 1)),
        Case("S=25, W=6, N=3 layers", (25, 6, 3)),
    ]


RECEPTIVE_FIELD_MISTAKES = [
    Mistake(
        "zero_layers_not_identity",
        "with 0 layers the field is one window: the layers are counted from the mask, not from the identity",
        "with 0 layers each position holds only itself (the identity); every layer then applies the window "
        "once, so N layers are N products starting from the identity.",
        "reach = torch.eye(length, dtype=torch.bool); then n_layers times reach = (mask.int() @ reach.int()) > 0.",
        output=_reach(lambda window, n_layers: max(n_layers, 1) * (window - 1)),
    ),
    Mistake(
        "grows_by_window",
        "the reach grows by W per layer; it grows by W − 1",
        "one layer moves information W − 1 positions (the W keys include the query itself), so N layers reach "
        "N·(W − 1) back, not N·W − 1.",
        "keep 0 <= q - j <= n_layers * (window - 1).",
        output=_reach(lambda window, n_layers: n_layers * window - 1),
    ),
    Mistake(
        "window_plus_one",
        "each layer reaches W positions back (a window of W + 1 keys)",
        "a layer's window holds W keys, the query itself and W − 1 before it.",
        "per layer the reach is window - 1: keep q - j <= n_layers * (window - 1).",
        output=_reach(lambda window, n_layers: n_layers * window),
    ),
    Mistake(
        "ignores_layers",
        "the receptive field is one layer's window whatever the number of layers",
        "layer l reads keys whose states already hold what they gathered in layer l − 1: the reach adds up.",
        "multiply the layers' masks (a boolean matrix power) or use the closed form n_layers * (window - 1).",
        output=_reach(lambda window, n_layers: window - 1),
    ),
    Mistake(
        "one_layer_short",
        "the receptive field is one layer short (N − 1 layers)",
        "after N layers the mask has been applied N times; starting from the identity takes N products, "
        "starting from the mask N − 1.",
        "reach = identity, then N times reach = (mask @ reach) > 0; or q - j <= n_layers * (window - 1).",
        output=_reach(lambda window, n_layers: max(n_layers - 1, 0) * (window - 1)),
    ),
    Mistake(
        "path_counts_overflow",
        "the number of paths is counted in a small integer type (uint8/int8) and wraps around: where it reaches "
        "a multiple of 256 it reads 0",
        "the product of 0/1 masks counts paths, which grow quickly with the layers; only whether a path exists "
        "matters, so threshold after every layer (or count in int64/float).",
        "reach = (mask.int() @ reach.int()) > 0 inside the loop, not one `> 0` after products in uint8.",
        output=_counted_in_a_byte,
    ),
    Mistake(
        "not_causal",
        "the receptive field reaches positions after the query",
        "every layer is causal, so no path ever goes forward: only j <= q can be reached.",
        "use the signed distance q - j >= 0, not its absolute value, and build on the causal window mask.",
        detect=_reaches_the_future,
    ),
]


SLIDING_RECEPTIVE_FIELD = register(Exercise(
    id="sliding_receptive_field",
    syllabus=("L14",),
    reference=_reference_receptive_field,
    cases=_receptive_cases,
    mistakes=RECEPTIVE_FIELD_MISTAKES,
    forbidden={
        reference_viz_masks.receptive_field: "llmcore.viz.receptive_field",
        reference_viz_masks.reach_by_layer: "llmcore.viz.reach_by_layer",
        reference_viz_masks._reach_steps: "llmcore.viz.receptive_field",
    },
    delegation=_reference_receptive_field,
    output_names=("receptive field",),
    fallback_hint="reach[q, j] is True when 0 <= q - j <= n_layers * (window - 1); or start from the identity and "
                  "apply (window_mask.int() @ reach.int()) > 0 once per layer.",
))
check_sliding_receptive_field = SLIDING_RECEPTIVE_FIELD.check


# --------------------------------------------------------------------------------------------------
# The demo: a model decoding with the learner's rolling buffer in its sliding-window layers.
# --------------------------------------------------------------------------------------------------


class _LearnerLayerCache:
    """A learner's RollingKVCache behind the interface llmcore's decoder layers call.

    The decoder builds each layer's mask from :meth:`key_positions` *before* the layer calls
    :meth:`update`, so the keys are laid out here in one fixed order, the slots held before the step
    (by position) then the new tokens, whatever order the learner's ``update`` returned them in. A
    position the learner did not return gets a zero key and value: it is either outside the window
    (masked anyway) or a bug that the demo's tokens will show.
    """

    def __init__(self, learner_cache: Any) -> None:
        self.learner = learner_cache
        self._planned: Tensor | None = None

    def key_positions(self, query_length: int, device: torch.device | None = None) -> Tensor:
        held = torch.as_tensor(self.learner.positions)
        held = held[held >= 0].sort().values
        start = self.learner.length
        self._planned = torch.cat([held, torch.arange(start, start + query_length)]).to(device)
        return self._planned

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        planned = self._planned if self._planned is not None else self.key_positions(keys.shape[2], keys.device)
        self._planned = None
        got_keys, got_values, got_positions = self.learner.update(keys, values)
        match = planned.view(-1, 1) == torch.as_tensor(got_positions, device=planned.device).view(1, -1)
        index = match.int().argmax(dim=1)
        found = match.any(dim=1).view(1, 1, -1, 1).to(keys.dtype)
        return got_keys[:, :, index] * found, got_values[:, :, index] * found

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.learner.keys, self.learner.values)
                   if isinstance(t, Tensor))


def kv_cache_with(model: Any, cache_class: Callable[[int], Any]) -> KVCache:
    """A :class:`llmcore.cache.KVCache` for ``model`` whose sliding-window layers keep their keys in
    ``cache_class(window)`` (the notebook's RollingKVCache); pass it as ``model(ids, cache=...)``."""
    cache = KVCache.for_model(model)
    window = model.config.sliding_window
    cache.layers = [
        _LearnerLayerCache(cache_class(window)) if isinstance(layer, reference_cache.RollingKVCache) else layer
        for layer in cache.layers
    ]
    return cache
