"""W03 · The attention-weights viewer (注意力权重): what each head of each layer looks at.

Row = query token, column = key token, colour = the softmax weight (each row sums to 1, masked
keys get exactly 0). The weights come from :func:`llmcore.attention.record_attention`, which
collects every :class:`llmcore.attention.MultiHeadAttention` call of a forward pass: chapter 1's
:class:`llmcore.Transformer` (encoder self-attention, decoder self-attention, cross-attention 交叉注意力)
and every zoo model built on it. In a trained reversal model the cross-attention draws the
anti-diagonal; heads of one layer (多头注意力) often split the work between them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..attention import record_attention
from ._common import MAX_FIGURE_WIDTH, Explorer, dropdown, new_figure, require, set_position_ticks, to_numpy

__all__ = ["AttentionViewer", "attention_viewer", "plot_attention", "record_attention_maps"]

# Token labels in points: 11 pixels at the widgets' 80 dpi, as large as the notebook's own text.
TICK_FONTSIZE = 10


def record_attention_maps(model: nn.Module, *inputs: Any, batch_index: int = 0, **forward_kwargs: Any) -> dict[str, Tensor]:
    """Run ``model(*inputs, **forward_kwargs)`` once and return ``{module name: weights [H, L, S]}``.

    The model runs in eval mode (no dropout on the weights) under ``torch.no_grad()`` and is put back
    in its previous mode. Each entry is the first call of that attention module, batch row
    ``batch_index``; modules that were not called are left out. Names follow ``named_modules``,
    e.g. ``"decoder_layers.1.cross_attn"`` or ``"layers.0.self_attn"``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"record_attention_maps: model must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), record_attention(model) as recorded:
            model(*inputs, **forward_kwargs)
    finally:
        model.train(was_training)
    maps: dict[str, Tensor] = {}
    for name, calls in recorded.items():
        if not calls:
            continue
        weights = calls[0]
        if not 0 <= batch_index < weights.shape[0]:
            raise ValueError(f"record_attention_maps: batch_index={batch_index} but the batch has {weights.shape[0]} rows")
        maps[name] = weights[batch_index].float()
    if not maps:
        raise ValueError(
            "record_attention_maps: the forward pass called no llmcore MultiHeadAttention; the viewer needs a model "
            "built from llmcore.attention.MultiHeadAttention (llmcore.Transformer, the zoo models)"
        )
    return maps


def _check_labels(labels: Sequence[str] | None, count: int, what: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ValueError(f"plot_attention: {len(labels)} {what} tokens for {count} {what} positions")
    return labels


def plot_attention(
    weights: Tensor,
    tokens_q: Sequence[str] | None = None,
    tokens_k: Sequence[str] | None = None,
    *,
    layer: int | None = None,
    head: int | str | None = None,
    title: str | None = None,
    layer_names: Sequence[str] | None = None,
) -> Any:
    """Attention weights as heat maps, token labels on the axes (row = query, column = key).

    Args:
        weights: ``[L, S]``, ``[H, L, S]`` (one layer) or ``[layers, H, L, S]``.
        tokens_q, tokens_k: labels of the queries (y axis) and keys (x axis); ``tokens_k`` defaults
            to ``tokens_q`` when the lengths agree (self-attention).
        layer: with 4-D weights, draw only this layer (default: every layer, one row each).
        head: an int draws that head, ``"mean"`` the mean over heads, ``None`` every head (columns).
        layer_names: row titles (e.g. module names) for 4-D weights.

    Every Axes has one image, the weights it shows: with every layer and head,
    ``fig.axes[l * H + h].images[0].get_array()`` is ``weights[l, h]``.
    """
    if not isinstance(weights, Tensor):
        raise TypeError(f"plot_attention: weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() not in (2, 3, 4):
        raise ValueError(f"plot_attention: weights must be [L, S], [H, L, S] or [layers, H, L, S], got shape {tuple(weights.shape)}")
    stack = weights.detach().float().cpu()
    stack = stack.reshape(1, 1, *stack.shape) if stack.dim() == 2 else (stack.unsqueeze(0) if stack.dim() == 3 else stack)
    n_layers, n_heads, q_len, k_len = stack.shape
    names = list(layer_names) if layer_names is not None else [f"layer {i}" for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"plot_attention: {len(names)} layer names for {n_layers} layers")
    if layer is not None:
        if not 0 <= layer < n_layers:
            raise ValueError(f"plot_attention: layer must be in 0..{n_layers - 1}, got {layer}")
        stack, names = stack[layer : layer + 1], [names[layer]]
    if head == "mean":
        stack, head_names = stack.mean(dim=1, keepdim=True), ["mean of heads"]
    elif head is None:
        head_names = [f"head {h}" for h in range(n_heads)]
    elif isinstance(head, int) and not isinstance(head, bool) and 0 <= head < n_heads:
        stack, head_names = stack[:, head : head + 1], [f"head {head}"]
    else:
        raise ValueError(f"plot_attention: head must be None, 'mean' or an int in 0..{n_heads - 1}, got {head!r}")
    tokens_q = _check_labels(tokens_q, q_len, "query")
    if tokens_k is None and tokens_q is not None and q_len == k_len:
        tokens_k = tokens_q
    tokens_k = _check_labels(tokens_k, k_len, "key")

    rows, columns = stack.shape[0], stack.shape[1]
    cell = min(4.0, max(2.2, 0.28 * max(q_len, k_len) + 1.0))
    # At most MAX_FIGURE_WIDTH wide, so that the browser shows the PNG unscaled and the token labels
    # keep their TICK_FONTSIZE: one layer's heads wrap into a grid, several layers' panels shrink.
    fit = max(1, int((MAX_FIGURE_WIDTH - 0.8) // cell))
    if rows == 1 and columns > fit:
        rows, columns = math.ceil(columns / fit), fit
    elif columns > fit:
        cell = max(1.6, (MAX_FIGURE_WIDTH - 0.8) / columns)
    figure = new_figure(cell * columns + 0.8, cell * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    vmax = float(stack.max()) if stack.numel() else 1.0
    panels = [(l, h) for l in range(stack.shape[0]) for h in range(stack.shape[1])]
    image = None
    for ax, (l, h) in zip(axes, panels):
        image = ax.imshow(to_numpy(stack[l, h]), cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-9), interpolation="nearest")
        set_position_ticks(ax, "x", k_len, tokens_k, fontsize=TICK_FONTSIZE)
        set_position_ticks(ax, "y", q_len, tokens_q, fontsize=TICK_FONTSIZE)
        ax.set_title(f"{names[l]} · {head_names[h]}" if len(names) > 1 or layer_names is not None else head_names[h],
                     fontsize=9)
    for ax in axes[len(panels):]:
        figure.delaxes(ax)
    if image is not None:
        figure.colorbar(image, ax=list(axes[: len(panels)]), fraction=0.03, label="weight")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.viz_data = {"weights": stack}
    return figure


class AttentionViewer(Explorer):
    """The W03 widget; see :func:`attention_viewer`.

    ``controls``: ``"layer"`` (Dropdown of the recorded attention modules) and ``"head"`` (``"all"``,
    ``"mean"`` or a head index). ``maps`` holds every recorded ``[H, L, S]``; after each redraw
    ``last_weights`` (``[H, L, S]`` or ``[1, L, S]`` drawn), ``last_tokens`` (query, key labels).
    """

    def __init__(self, maps: Mapping[str, Tensor], *, tokens: Sequence[str] | None = None,
                 src_tokens: Sequence[str] | None = None, tgt_tokens: Sequence[str] | None = None,
                 layer: str | None = None) -> None:
        super().__init__()
        self.maps = dict(maps)
        self.tokens, self.src_tokens, self.tgt_tokens = tokens, src_tokens, tgt_tokens
        self.last_weights: Tensor | None = None
        self.last_tokens: tuple[list[str] | None, list[str] | None] = (None, None)
        names = list(self.maps)
        if layer is not None and layer not in self.maps:
            raise ValueError(f"attention_viewer: unknown layer {layer!r}; recorded: {names}")
        self.controls["layer"] = dropdown(names, layer or names[0], "layer")
        self.controls["head"] = dropdown(self._head_options(layer or names[0]), "all", "head")
        widgets = require("ipywidgets", "llmcore.viz widgets")
        self._finish([widgets.HBox([self.controls["layer"], self.controls["head"]])])

    def _head_options(self, name: str) -> list[tuple[str, Any]]:
        n_heads = self.maps[name].shape[0]
        return [("all heads", "all"), ("mean of heads", "mean"), *((f"head {h}", h) for h in range(n_heads))]

    def _sync_controls(self) -> None:
        """The head choices follow the layer's number of heads."""
        if "head" not in self.controls:
            return
        options = self._head_options(self.controls["layer"].value)
        if [value for _, value in options] != [value for _, value in self.controls["head"].options]:
            keep = self.controls["head"].value
            self.controls["head"].options = options
            self.controls["head"].value = keep if keep in [value for _, value in options] else "all"

    def _labels(self, name: str, q_len: int, k_len: int) -> tuple[list[str] | None, list[str] | None]:
        """Query and key labels of module ``name``: source/target tokens by the module's role, else ``tokens``."""
        lowered = name.lower()
        if "cross" in lowered:
            query, key = self.tgt_tokens, self.src_tokens
        elif lowered.startswith("encoder"):
            query, key = self.src_tokens, self.src_tokens
        elif lowered.startswith("decoder"):
            query, key = self.tgt_tokens, self.tgt_tokens
        else:
            query, key = self.tokens, self.tokens

        def fit(labels: Sequence[str] | None, count: int) -> list[str] | None:
            for candidate in (labels, self.tokens):
                if candidate is not None and len(candidate) == count:
                    return [str(label) for label in candidate]
            return None

        return fit(query, q_len), fit(key, k_len)

    def _draw(self) -> tuple[Any, str]:
        name, head = self.controls["layer"].value, self.controls["head"].value
        weights = self.maps[name]
        n_heads, q_len, k_len = weights.shape
        tokens_q, tokens_k = self._labels(name, q_len, k_len)
        figure = plot_attention(weights, tokens_q, tokens_k, head=None if head == "all" else head, title=name)
        self.last_weights, self.last_tokens = figure.viz_data["weights"][0], (tokens_q, tokens_k)
        missing = "" if tokens_q is not None and tokens_k is not None else " · some axes show positions (no labels of that length)"
        info = f"<b>{name}</b> · {n_heads} heads · {q_len} queries × {k_len} keys · every row sums to 1{missing}"
        return figure, info


def attention_viewer(
    model: nn.Module | Mapping[str, Tensor] | Tensor,
    *inputs: Any,
    tokens: Sequence[str] | None = None,
    src_tokens: Sequence[str] | None = None,
    tgt_tokens: Sequence[str] | None = None,
    batch_index: int = 0,
    layer: str | None = None,
    **forward_kwargs: Any,
) -> AttentionViewer:
    """Layer × head attention weights of ``model`` on ``inputs`` (W03), with token labels on the axes.

    Args:
        model: a model built from llmcore's MultiHeadAttention, run once as
            ``model(*inputs, **forward_kwargs)`` (:func:`record_attention_maps`); or already recorded
            weights, ``{name: [H, L, S]}`` or a ``[layers, H, L, S]`` tensor.
        tokens: labels for decoder-only / encoder-only models (queries and keys).
        src_tokens, tgt_tokens: an encoder–decoder's source and decoder-input labels: encoder
            modules use the source on both axes, decoder self-attention the target, cross-attention
            target (queries) × source (keys).
        batch_index: which row of the batch to show.
        layer: the module shown first.

    Example (chapter 1's trained model)::

        viz.attention_viewer(model, source, decoder_input, src_tokens=[*word, "</s>"], tgt_tokens=labels)
    """
    if isinstance(model, nn.Module):
        maps = record_attention_maps(model, *inputs, batch_index=batch_index, **forward_kwargs)
    elif isinstance(model, Tensor):
        if model.dim() != 4:
            raise ValueError(f"attention_viewer: a weights tensor must be [layers, H, L, S], got shape {tuple(model.shape)}")
        maps = {f"layer {i}": model[i] for i in range(model.shape[0])}
    elif isinstance(model, Mapping):
        maps = {}
        for name, weights in model.items():
            if isinstance(weights, (list, tuple)):  # straight from record_attention: a list of calls
                weights = weights[0]
            if not isinstance(weights, Tensor) or weights.dim() not in (3, 4):
                raise ValueError(f"attention_viewer: weights of {name!r} must be [H, L, S] or [B, H, L, S]")
            maps[name] = (weights[batch_index] if weights.dim() == 4 else weights).detach().float()
        if not maps:
            raise ValueError("attention_viewer: no attention weights given")
    else:
        raise TypeError(f"attention_viewer: expected a model, a dict of weights or a tensor, got {type(model).__name__}")
    return AttentionViewer(maps, tokens=tokens, src_tokens=src_tokens, tgt_tokens=tgt_tokens, layer=layer)
