"""Learner code for the exercises of notebook 03_mistral_sliding_window, written as learners write it
(never llmcore's implementation of the exercise itself).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import torch

import llmcore

# ---------------------------------------------------------------------------------------------------
# sliding_window_mask(window) -> mask_mod
# ---------------------------------------------------------------------------------------------------


def window_by_distance(window):
    def mask_mod(b, h, q_idx, kv_idx):
        distance = q_idx - kv_idx
        return (distance >= 0) & (distance < window)

    return mask_mod


def window_as_causal_and_band(window):
    def mask_mod(b, h, q_idx, kv_idx):
        causal = kv_idx <= q_idx
        recent = kv_idx > q_idx - window  # transformers' rule: k > q − W
        return causal & recent

    return mask_mod


def window_from_llmcore_causal(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return llmcore.causal_mask(b, h, q_idx, kv_idx) & ~(kv_idx + window <= q_idx)

    return mask_mod


def window_plus_one(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx <= window)

    return mask_mod


def window_minus_one(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (kv_idx > q_idx - window + 1)

    return mask_mod


def window_before_query(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx < q_idx) & (kv_idx >= q_idx - window)

    return mask_mod


def window_without_far_edge(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx

    return mask_mod


def window_inverted(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx > q_idx) | (kv_idx <= q_idx - window)

    return mask_mod


def window_two_sided(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() < window

    return mask_mod


# ---------------------------------------------------------------------------------------------------
# RollingKVCache(window): .keys, .values [B, H, W, D], .positions [W], .length; update -> (keys, values, positions)
# ---------------------------------------------------------------------------------------------------


class RollingCacheVectorised:
    def __init__(self, window):
        self.window = window
        self.keys = None
        self.values = None
        self.positions = torch.full((window,), -1, dtype=torch.long)
        self.length = 0

    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        if self.keys is None:
            self.keys = keys.new_zeros(batch, heads, self.window, head_dim)
            self.values = values.new_zeros(batch, heads, self.window, head_dim)
        filled = self.positions >= 0
        old_keys, old_values, old_positions = self.keys[:, :, filled], self.values[:, :, filled], self.positions[filled]
        new_positions = torch.arange(self.length, self.length + chunk)
        kept = min(chunk, self.window)
        slots = new_positions[-kept:] % self.window
        self.keys[:, :, slots] = keys[:, :, -kept:]
        self.values[:, :, slots] = values[:, :, -kept:]
        self.positions[slots] = new_positions[-kept:]
        self.length += chunk
        return (torch.cat([old_keys, keys], dim=2), torch.cat([old_values, values], dim=2),
                torch.cat([old_positions, new_positions]))


class RollingCacheTokenLoop:
    """One token at a time; a single new token is written first (its old slot is outside its window)."""

    def __init__(self, window):
        self.window = window
        self.keys = self.values = None
        self.positions = -torch.ones(window, dtype=torch.int64)
        self.length = 0

    def update(self, keys, values):
        if self.keys is None:
            shape = (keys.shape[0], keys.shape[1], self.window, keys.shape[3])
            self.keys = torch.zeros(shape, dtype=keys.dtype)
            self.values = torch.zeros(shape, dtype=values.dtype)
        if keys.shape[2] == 1:
            self._store(keys, values)
            return self._held()
        old_keys, old_values, old_positions = self._held()
        new_positions = torch.tensor(list(range(self.length, self.length + keys.shape[2])))
        self._store(keys, values)
        return (torch.cat([old_keys, keys], dim=2), torch.cat([old_values, values], dim=2),
                torch.cat([old_positions, new_positions]))

    def _held(self):
        slots = torch.nonzero(self.positions >= 0).flatten()
        return (self.keys.index_select(2, slots), self.values.index_select(2, slots),
                self.positions.index_select(0, slots))

    def _store(self, keys, values):
        for i in range(keys.shape[2]):
            slot = self.length % self.window
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = self.length
            self.length += 1


class RollingCacheQueue(RollingCacheVectorised):
    """Keeps the keys in time order: when full, drop the oldest and append at the end."""

    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        if self.keys is None:
            self.keys = keys.new_zeros(batch, heads, self.window, head_dim)
            self.values = values.new_zeros(batch, heads, self.window, head_dim)
        filled = self.positions >= 0
        result = (torch.cat([self.keys[:, :, filled], keys], dim=2),
                  torch.cat([self.values[:, :, filled], values], dim=2),
                  torch.cat([self.positions[filled], torch.arange(self.length, self.length + chunk)]))
        for i in range(chunk):
            if self.length < self.window:
                slot = self.length
            else:
                self.keys = torch.cat([self.keys[:, :, 1:], self.keys[:, :, :1]], dim=2)
                self.values = torch.cat([self.values[:, :, 1:], self.values[:, :, :1]], dim=2)
                self.positions = torch.cat([self.positions[1:], self.positions[:1]])
                slot = self.window - 1
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = self.length
            self.length += 1
        return result


class RollingCacheSlotsFromZero(RollingCacheVectorised):
    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        if self.keys is None:
            self.keys = keys.new_zeros(batch, heads, self.window, head_dim)
            self.values = values.new_zeros(batch, heads, self.window, head_dim)
        filled = self.positions >= 0
        result = (torch.cat([self.keys[:, :, filled], keys], dim=2),
                  torch.cat([self.values[:, :, filled], values], dim=2),
                  torch.cat([self.positions[filled], torch.arange(self.length, self.length + chunk)]))
        for i in range(chunk):
            slot = i % self.window
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = self.length + i
        self.length += chunk
        return result


class RollingCacheClearedWhenFull(RollingCacheVectorised):
    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        if self.keys is None:
            self.keys = keys.new_zeros(batch, heads, self.window, head_dim)
            self.values = values.new_zeros(batch, heads, self.window, head_dim)
        filled = self.positions >= 0
        result = (torch.cat([self.keys[:, :, filled], keys], dim=2),
                  torch.cat([self.values[:, :, filled], values], dim=2),
                  torch.cat([self.positions[filled], torch.arange(self.length, self.length + chunk)]))
        for i in range(chunk):
            slot = self.length % self.window
            if slot == 0 and self.length > 0:  # wrapped around: start a fresh buffer
                self.positions = torch.full((self.window,), -1, dtype=torch.long)
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = self.length
            self.length += 1
        return result


class RollingCacheOnlyTheChunk(RollingCacheVectorised):
    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        filled = self.positions >= 0
        if self.keys is None:
            old = (keys[:, :, :0], values[:, :, :0], torch.zeros(0, dtype=torch.long))
        else:
            old = (self.keys[:, :, filled], self.values[:, :, filled], self.positions[filled])
        new_positions = torch.arange(self.length, self.length + chunk)
        self.keys = keys.new_zeros(batch, heads, self.window, head_dim)
        self.values = values.new_zeros(batch, heads, self.window, head_dim)
        self.positions = torch.full((self.window,), -1, dtype=torch.long)
        kept = min(chunk, self.window)
        slots = new_positions[-kept:] % self.window
        self.keys[:, :, slots] = keys[:, :, -kept:]
        self.values[:, :, slots] = values[:, :, -kept:]
        self.positions[slots] = new_positions[-kept:]
        self.length += chunk
        return torch.cat([old[0], keys], 2), torch.cat([old[1], values], 2), torch.cat([old[2], new_positions])


class RollingCacheWritesFirst(RollingCacheVectorised):
    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        if self.keys is None:
            self.keys = keys.new_zeros(batch, heads, self.window, head_dim)
            self.values = values.new_zeros(batch, heads, self.window, head_dim)
        for i in range(chunk):
            slot = self.length % self.window
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = self.length
            self.length += 1
        filled = self.positions >= 0
        return self.keys[:, :, filled], self.values[:, :, filled], self.positions[filled]


class RollingCacheOneSlotTooMany(RollingCacheVectorised):
    def __init__(self, window):
        super().__init__(window)
        self.slots = window + 1  # the query plus W keys before it
        self.positions = torch.full((self.slots,), -1, dtype=torch.long)

    def update(self, keys, values):
        batch, heads, chunk, head_dim = keys.shape
        if self.keys is None:
            self.keys = keys.new_zeros(batch, heads, self.slots, head_dim)
            self.values = values.new_zeros(batch, heads, self.slots, head_dim)
        filled = self.positions >= 0
        result = (torch.cat([self.keys[:, :, filled], keys], dim=2),
                  torch.cat([self.values[:, :, filled], values], dim=2),
                  torch.cat([self.positions[filled], torch.arange(self.length, self.length + chunk)]))
        for i in range(chunk):
            slot = self.length % self.slots
            self.keys[:, :, slot] = keys[:, :, i]
            self.values[:, :, slot] = values[:, :, i]
            self.positions[slot] = self.length
            self.length += 1
        return result


# ---------------------------------------------------------------------------------------------------
# sliding_receptive_field(length, window, n_layers) -> [S, S] bool
# ---------------------------------------------------------------------------------------------------


def receptive_field_closed_form(length, window, n_layers):
    q = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    return (j <= q) & (q - j <= n_layers * (window - 1))


def receptive_field_matrix_power(length, window, n_layers):
    mask = llmcore.dense_mask(llmcore.sliding_window_mask(window), 1, 1, length, length)[0, 0]
    reach = torch.eye(length, dtype=torch.bool)
    for _ in range(n_layers):
        reach = (mask.float() @ reach.float()) > 0
    return reach


def receptive_field_by_loops(length, window, n_layers):
    reach = torch.zeros(length, length, dtype=torch.bool)
    for q in range(length):
        earliest = max(0, q - n_layers * (window - 1))
        reach[q, earliest: q + 1] = True
    return reach


def receptive_field_grows_by_window(length, window, n_layers):
    q = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    return (j <= q) & (q - j < n_layers * window)


def receptive_field_window_plus_one(length, window, n_layers):
    q = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    return (j <= q) & (q - j <= n_layers * window)


def receptive_field_one_window(length, window, n_layers):
    return llmcore.dense_mask(llmcore.sliding_window_mask(window), 1, 1, length, length)[0, 0]


def receptive_field_one_layer_short(length, window, n_layers):
    mask = llmcore.dense_mask(llmcore.sliding_window_mask(window), 1, 1, length, length)[0, 0].int()
    reach = torch.eye(length, dtype=torch.int)
    for _ in range(1, n_layers):
        reach = ((mask @ reach) > 0).int()
    return reach.bool()


def receptive_field_from_the_mask(length, window, n_layers):
    mask = llmcore.dense_mask(llmcore.sliding_window_mask(window), 1, 1, length, length)[0, 0]
    reach = mask.clone()  # one layer is the mask itself, so n_layers - 1 more products
    for _ in range(n_layers - 1):
        reach = (mask.float() @ reach.float()) > 0
    return reach


def receptive_field_paths_in_bytes(length, window, n_layers):
    mask = llmcore.dense_mask(llmcore.sliding_window_mask(window), 1, 1, length, length)[0, 0].byte()
    paths = torch.eye(length, dtype=torch.uint8)
    for _ in range(n_layers):
        paths = mask @ paths  # counts the paths; only > 0 matters in the end
    return paths > 0


def receptive_field_two_sided(length, window, n_layers):
    q = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    return (q - j).abs() <= n_layers * (window - 1)


CORRECT = {
    "sliding_window_mask": [window_by_distance, window_as_causal_and_band, window_from_llmcore_causal],
    "rolling_kv_cache": [RollingCacheVectorised, RollingCacheTokenLoop],
    "sliding_receptive_field": [receptive_field_closed_form, receptive_field_matrix_power, receptive_field_by_loops],
}

MISTAKES = {
    "sliding_window_mask": {
        "window_plus_one": window_plus_one,
        "window_minus_one": window_minus_one,
        "window_before_query": window_before_query,
        "no_window": window_without_far_edge,
        "inverted": window_inverted,
        "not_causal": window_two_sided,
    },
    "rolling_kv_cache": {
        "queue": RollingCacheQueue,
        "slots_from_zero": RollingCacheSlotsFromZero,
        "cleared_on_wrap": RollingCacheClearedWhenFull,
        "chunk_replaces_buffer": RollingCacheOnlyTheChunk,
        "write_before_read": RollingCacheWritesFirst,
        "window_plus_one_slots": RollingCacheOneSlotTooMany,
    },
    "sliding_receptive_field": {
        "grows_by_window": receptive_field_grows_by_window,
        "window_plus_one": receptive_field_window_plus_one,
        "ignores_layers": receptive_field_one_window,
        "one_layer_short": receptive_field_one_layer_short,
        "zero_layers_not_identity": receptive_field_from_the_mask,
        "path_counts_overflow": receptive_field_paths_in_bytes,
        "not_causal": receptive_field_two_sided,
    },
}
