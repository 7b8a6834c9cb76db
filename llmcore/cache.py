"""Key-value caches for incremental decoding (KV 缓存).

A decoder that has already processed ``T`` tokens only needs the new token's query at the next
step: the keys and values of the ``T`` earlier tokens do not change, so each attention layer keeps
them and appends the new ones. Generation then costs ``O(T)`` per token instead of ``O(T²)``.

* :class:`LayerKVCache` keeps every key of one layer in a preallocated buffer
  ``[B, H_kv, capacity, D]`` (grown by doubling when a caller goes past it). Keys are stored
  *after* RoPE, so they never need rotating again. With grouped-query attention the cache holds
  only the ``H_kv`` key/value heads, which is the memory GQA saves (LLaMA 2 70B: 8 instead of 64).
* :class:`RollingKVCache` is Mistral's rolling buffer (滚动缓存) for sliding-window layers: a layer
  whose queries see only the last ``W`` keys keeps ``W`` slots and writes position ``p`` into slot
  ``p mod W``, so memory stays constant however long the text grows.
* :class:`CrossAttentionCache` keeps an encoder–decoder's cross-attention keys and values, computed
  from the encoder output once at the first decoding step.
* :class:`KVCache` holds one layer cache per layer and the padding mask of every position seen so
  far; pass it to :meth:`llmcore.models.CausalLM.forward` or ``Seq2SeqLM.decode``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LayerKVCache", "RollingKVCache", "CrossAttentionCache", "KVCache"]


class _KeyValueTensors:
    """Keys and values ``[B, H_kv, S, D]`` that follow beam search's choice of rows and report their size."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search picks which hypotheses survive)."""
        if self.keys is not None and self.values is not None:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)

    def memory_bytes(self) -> int:
        """Bytes held (for a preallocated buffer: its capacity, not only the filled part)."""
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values) if t is not None)


class LayerKVCache(_KeyValueTensors):
    """All keys and values of one self-attention layer, ``[B, H_kv, length, D]`` (views of a buffer).

    Args:
        capacity: positions to preallocate (grown by doubling when exceeded).
    """

    def __init__(self, capacity: int = 0) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def key_positions(self, query_length: int, device: torch.device | None = None) -> Tensor:
        """Absolute positions of the keys the next :meth:`update` of ``query_length`` tokens returns."""
        return torch.arange(self.length + query_length, device=device)

    def _reserve(self, like: Tensor, needed: int) -> None:
        if self.keys is not None and needed <= self.keys.shape[2]:
            return
        size = max(needed, self.capacity, 2 * (self.keys.shape[2] if self.keys is not None else 0))
        batch, heads, _, head_dim = like.shape
        keys = like.new_empty(batch, heads, size, head_dim)
        values = like.new_empty(batch, heads, size, head_dim)
        if self.keys is not None and self.values is not None:
            keys[:, :, : self.length] = self.keys[:, :, : self.length]
            values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``[B, H_kv, L, D]`` keys/values; return all of them so far, ``[B, H_kv, T+L, D]``."""
        end = self.length + keys.shape[2]
        self._reserve(keys, end)
        assert self.keys is not None and self.values is not None
        # narrow + copy_ rather than slice assignment: two plain ops instead of the indexing machinery.
        self.keys.narrow(2, self.length, keys.shape[2]).copy_(keys)
        self.values.narrow(2, self.length, keys.shape[2]).copy_(values)
        self.length = end
        return self.keys.narrow(2, 0, end), self.values.narrow(2, 0, end)


class RollingKVCache(LayerKVCache):
    """Mistral's rolling buffer: the last ``window`` keys of a sliding-window layer in ``window`` slots.

    Position ``p`` lives in slot ``p mod window``. A single new token (the usual decoding step) is
    written first and then attends to the whole buffer, which by then holds exactly the ``window``
    keys its window allows. A chunk of several tokens attends to the old slots plus its own keys
    (earlier tokens of the chunk need keys the chunk's later tokens would overwrite) and is written
    afterwards. Slots are not in time order; the attention mask is built from
    :meth:`key_positions`, and the softmax does not care about key order.
    """

    def __init__(self, window: int) -> None:
        if not isinstance(window, int) or window <= 0:
            raise ValueError(f"window must be a positive int, got {window!r}")
        super().__init__(window)
        self.window = window

    def slot_positions(self, device: torch.device | None = None) -> Tensor:
        """``[min(length, W)]`` the absolute position held by each filled slot, slot 0 first.

        After 10 tokens with ``W = 4``: ``[8, 9, 6, 7]`` (position ``p`` sits in slot ``p mod 4``).
        """
        return self._slot_positions(self.length, device)

    def _slot_positions(self, length: int, device: torch.device | None) -> Tensor:
        """Positions held in slots ``0 … min(length, W) − 1`` once ``length`` tokens were written."""
        filled = min(length, self.window)
        slots = torch.arange(filled, device=device)
        # The slot of position p is p mod W, so slot s holds the latest p < length with p ≡ s.
        return slots + ((length - 1 - slots) // self.window) * self.window

    def _writes_first(self, query_length: int) -> bool:
        return query_length == 1 or self.length + query_length <= self.window

    def key_positions(self, query_length: int, device: torch.device | None = None) -> Tensor:
        if self._writes_first(query_length):
            return self._slot_positions(self.length + query_length, device)
        old = self._slot_positions(self.length, device)
        return torch.cat([old, torch.arange(self.length, self.length + query_length, device=device)])

    def _write(self, keys: Tensor, values: Tensor) -> None:
        query_length = keys.shape[2]
        self._reserve(keys, self.window)
        assert self.keys is not None and self.values is not None
        kept = min(query_length, self.window)
        positions = torch.arange(self.length + query_length - kept, self.length + query_length, device=keys.device)
        slots = positions % self.window
        self.keys[:, :, slots] = keys[:, :, -kept:]
        self.values[:, :, slots] = values[:, :, -kept:]

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        query_length = keys.shape[2]
        if self._writes_first(query_length):
            self._write(keys, values)
            self.length += query_length
            filled = min(self.length, self.window)
            assert self.keys is not None and self.values is not None
            return self.keys[:, :, :filled], self.values[:, :, :filled]
        filled = min(self.length, self.window)
        if filled:
            assert self.keys is not None and self.values is not None
            all_keys = torch.cat([self.keys[:, :, :filled], keys], dim=2)
            all_values = torch.cat([self.values[:, :, :filled], values], dim=2)
        else:
            all_keys, all_values = keys, values
        self._write(keys, values)
        self.length += query_length
        return all_keys, all_values


class CrossAttentionCache(_KeyValueTensors):
    """Cross-attention keys/values ``[B, H_kv, S, D]`` of the encoder output, computed once."""

    @property
    def filled(self) -> bool:
        return self.keys is not None

    def store(self, keys: Tensor, values: Tensor) -> None:
        self.keys, self.values = keys, values


class KVCache:
    """The caches of a whole model plus the padding mask ``keep [B, T]`` of all ``T`` positions seen.

    Args:
        layer_kinds: each layer's attention kind (``ModelConfig.resolved_layer_kinds``);
            ``sliding`` layers get a :class:`RollingKVCache` of ``sliding_window`` slots.
        sliding_window: the window ``W`` of the sliding layers.
        capacity: positions to preallocate in the full layers (prompt + new tokens).
        cross_attention: also keep cross-attention caches (encoder–decoder models).

    Usually built by :meth:`for_model`. ``length`` is the number of positions processed so far.
    """

    def __init__(
        self,
        layer_kinds: tuple[str, ...] | list[str],
        *,
        sliding_window: int | None = None,
        capacity: int = 0,
        cross_attention: bool = False,
    ) -> None:
        self.layers: list[LayerKVCache] = []
        for kind in layer_kinds:
            if kind == "sliding":
                if sliding_window is None:
                    raise ValueError("a sliding layer needs sliding_window")
                self.layers.append(RollingKVCache(sliding_window))
            else:
                self.layers.append(LayerKVCache(capacity))
        self.cross: list[CrossAttentionCache] | None = (
            [CrossAttentionCache() for _ in layer_kinds] if cross_attention else None
        )
        self.keep: Tensor | None = None

    @classmethod
    def for_model(cls, model, capacity: int = 0) -> "KVCache":
        """A cache shaped for ``model`` (a ``CausalLM`` or ``Seq2SeqLM``)."""
        config = model.config
        if hasattr(model, "decoder_layers"):
            return cls(["full"] * len(model.decoder_layers), capacity=capacity, cross_attention=True)
        kinds = config.resolved_layer_kinds
        if "sliding" in kinds and config.position == "alibi":
            raise ValueError("a rolling KV cache needs position-independent keys; ALiBi with sliding windows is not supported")
        return cls(kinds, sliding_window=config.sliding_window, capacity=capacity)

    @property
    def length(self) -> int:
        return 0 if self.keep is None else self.keep.shape[1]

    def extend_keep(self, keep: Tensor) -> Tensor:
        """Append the new tokens' ``[B, L]`` padding mask; return the mask of all positions ``[B, T+L]``."""
        if self.keep is not None and self.keep.shape[0] != keep.shape[0]:
            raise ValueError(f"the cache holds batch size {self.keep.shape[0]}, the input has {keep.shape[0]}")
        self.keep = keep if self.keep is None else torch.cat([self.keep, keep], dim=1)
        return self.keep

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` in every layer (beam search)."""
        for layer in self.layers:
            layer.reorder(index)
        for cross in self.cross or []:
            cross.reorder(index)
        if self.keep is not None:
            self.keep = self.keep.index_select(0, index)

    def memory_bytes(self) -> int:
        """Bytes held by all key/value buffers (self- and cross-attention)."""
        total = sum(layer.memory_bytes() for layer in self.layers)
        return total + sum(cross.memory_bytes() for cross in self.cross or [])
