"""W04 · The MoE routing viewer (专家路由): which experts each token is sent to, and how the load spreads.

A sparse mixture of experts (稀疏混合专家) scores every token against ``E`` experts with a router
and keeps the ``k`` best (top-k 路由). The viewer needs only the router logits ``[tokens, experts]``
and ``k``, so it works for any router; it also reads :attr:`llmcore.moe.MixtureOfExperts.last_routing`.

Left: the full softmax of the router (the ``P`` of the load-balancing loss), the chosen experts
circled. Right: the load per expert (负载), i.e. how many top-k assignments each received, against
the balanced load ``T·k/E``. An unbalanced router overloads a few experts and leaves others
untrained - what the auxiliary load-balancing loss (负载均衡损失, shown in the title, ``k`` when
perfectly balanced) pushes against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..moe import MixtureOfExperts, Routing, load_balancing_loss
from ._common import Explorer, dropdown, int_slider, new_figure, rows_of, set_position_ticks, to_numpy

__all__ = ["RoutingViewer", "plot_routing", "routing_counts", "routing_viewer"]


@dataclass(frozen=True)
class RoutingData:
    """What the viewer draws: ``logits [T, E]``, ``indices [T, k]``, ``probabilities [T, E]``, ``counts [E]``."""

    logits: Tensor
    indices: Tensor
    probabilities: Tensor
    counts: Tensor
    loss: float


def _logits_of(source: Any, function: str) -> tuple[Tensor, Tensor | None]:
    """``(logits [T, E], the router's own top-k indices [T, k] or None)``."""
    if isinstance(source, MixtureOfExperts):
        if source.last_routing is None:
            raise ValueError(f"{function}: the MixtureOfExperts layer has not run a forward pass yet (last_routing is None)")
        source = source.last_routing
    if isinstance(source, Routing):
        n_experts = source.logits.shape[-1]
        logits = source.logits.detach().float().reshape(-1, n_experts)
        return logits, source.top_k_indices.detach().reshape(-1, source.top_k_indices.shape[-1])
    if not isinstance(source, Tensor):
        raise TypeError(
            f"{function}: expected router logits [tokens, experts], a Routing or a MixtureOfExperts, got {type(source).__name__}"
        )
    if source.dim() < 2 or not source.is_floating_point():
        raise ValueError(
            f"{function}: router logits must be a floating [tokens, experts] tensor, got {source.dtype} of shape {tuple(source.shape)}"
        )
    return source.detach().float().reshape(-1, source.shape[-1]), None


def _routing(source: Any, top_k: int | None, function: str) -> RoutingData:
    logits, own_indices = _logits_of(source, function)
    n_tokens, n_experts = logits.shape
    if n_tokens == 0 or n_experts == 0:
        raise ValueError(f"{function}: router logits are empty (shape {tuple(logits.shape)})")
    if top_k is None:
        if own_indices is None:
            raise ValueError(f"{function}: pass top_k with plain router logits")
        top_k = own_indices.shape[-1]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
        raise ValueError(f"{function}: top_k={top_k!r} must be an int in 1..n_experts={n_experts}")
    if own_indices is not None and own_indices.shape[-1] == top_k:
        indices = own_indices  # what the layer really did
    else:
        indices = logits.topk(top_k, dim=-1).indices
    counts = torch.bincount(indices.flatten(), minlength=n_experts)
    loss = float(load_balancing_loss(logits, indices))
    return RoutingData(logits, indices, torch.softmax(logits, dim=-1), counts, loss)


def routing_counts(source: Any, top_k: int | None = None) -> Tensor:
    """Top-k assignments per expert, ``[E]`` int64: ``bincount(topk(logits, k).indices, minlength=E)``."""
    return _routing(source, top_k, "routing_counts").counts


def plot_routing(
    source: Any,
    top_k: int | None = None,
    *,
    tokens: Sequence[str] | None = None,
    expert_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Token → expert assignment and load per expert.

    Args:
        source: router logits ``[..., E]`` (any router), a :class:`llmcore.moe.Routing` or a
            :class:`llmcore.moe.MixtureOfExperts` that has run (its ``last_routing``; with its own
            ``k`` the layer's actual choices are drawn).
        top_k: experts per token (required with plain logits).
        tokens, expert_names: axis labels.

    ``axes[0].images[0]`` is the router softmax ``[T, E]``, ``axes[0].collections[0]`` marks the
    chosen (expert, token) cells, ``axes[1].patches`` are the bars of :func:`routing_counts`.
    """
    data = _routing(source, top_k, "plot_routing")
    n_tokens, n_experts = data.logits.shape
    k = data.indices.shape[-1]
    if tokens is not None and len(tokens) != n_tokens:
        raise ValueError(f"plot_routing: {len(tokens)} token labels for {n_tokens} tokens")
    if expert_names is not None and len(expert_names) != n_experts:
        raise ValueError(f"plot_routing: {len(expert_names)} expert names for {n_experts} experts")
    experts = list(expert_names) if expert_names is not None else [f"E{e}" for e in range(n_experts)]

    height = min(9.0, max(3.4, 0.22 * n_tokens + 1.4))
    figure = new_figure(4.0 + 0.45 * n_experts + 3.5, height)
    heat, bars = figure.subplots(1, 2, width_ratios=[max(1.0, 0.25 * n_experts), 1.2])
    image = heat.imshow(to_numpy(data.probabilities), cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    rows = torch.arange(n_tokens).repeat_interleave(k)
    heat.scatter(to_numpy(data.indices.flatten()), to_numpy(rows), s=45, facecolors="none", edgecolors="#d62728",
                 linewidths=1.6, label=f"top-{k}")
    figure.colorbar(image, ax=heat, fraction=0.06, label="router probability")
    set_position_ticks(heat, "x", n_experts, experts)
    if tokens is not None and n_tokens <= 48:
        set_position_ticks(heat, "y", n_tokens, tokens)
    else:
        set_position_ticks(heat, "y", n_tokens)
    heat.set(xlabel="expert", ylabel="token", title=f"router softmax, top-{k} circled")
    bars.bar(range(n_experts), to_numpy(data.counts), color="#7a9cc6")
    bars.axhline(n_tokens * k / n_experts, color="#f28e00", linestyle="--", label=f"balanced T·k/E = {n_tokens * k / n_experts:.3g}")
    set_position_ticks(bars, "x", n_experts, experts)
    bars.set(xlabel="expert", ylabel="tokens assigned", title=f"load per expert · balancing loss {data.loss:.3f} (ideal {k})")
    bars.legend(fontsize=7)
    for ax in (heat, bars):
        ax.title.set_fontsize(9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.viz_data = {"routing": data}
    return figure


class RoutingViewer(Explorer):
    """The W04 widget; see :func:`routing_viewer`.

    ``controls``: ``"top_k"`` (IntSlider 1 … E) and ``"layer"`` (Dropdown, shown with several
    routings). After each redraw ``last_counts`` (``[E]``), ``last_indices`` (``[T, k]``),
    ``last_probabilities`` (``[T, E]``) and ``last_loss``.
    """

    def __init__(self, routings: dict[str, Any], *, top_k: int | None, tokens: Sequence[str] | None,
                 expert_names: Sequence[str] | None) -> None:
        super().__init__()
        self.routings = routings
        self.tokens, self.expert_names = tokens, expert_names
        self.last_counts: Tensor | None = None
        self.last_indices: Tensor | None = None
        self.last_probabilities: Tensor | None = None
        self.last_loss: float | None = None
        first = next(iter(routings.values()))
        logits, own = _logits_of(first, "routing_viewer")
        n_experts = logits.shape[-1]
        k = top_k if top_k is not None else (own.shape[-1] if own is not None else min(2, n_experts))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_experts:
            raise ValueError(f"routing_viewer: top_k={k!r} must be an int in 1..n_experts={n_experts}")
        self.controls["top_k"] = int_slider("top_k", k, 1, n_experts, "top-k")
        self.controls["layer"] = dropdown(list(routings), next(iter(routings)), "layer")
        self.controls["layer"].layout.display = "" if len(routings) > 1 else "none"
        self._finish(rows_of([self.controls["layer"], self.controls["top_k"]], 2))

    def _draw(self) -> tuple[Any, str]:
        name, k = self.controls["layer"].value, self.controls["top_k"].value
        figure = plot_routing(self.routings[name], k, tokens=self.tokens, expert_names=self.expert_names,
                              title=name if len(self.routings) > 1 else None)
        data: RoutingData = figure.viz_data["routing"]
        self.last_counts, self.last_indices = data.counts, data.indices
        self.last_probabilities, self.last_loss = data.probabilities, data.loss
        n_tokens, n_experts = data.logits.shape
        busiest = int(data.counts.argmax())
        info = (
            f"<b>{n_tokens} tokens → {n_experts} experts, top-{k}</b> · busiest expert {busiest} with "
            f"{int(data.counts[busiest])} of {n_tokens * k} assignments · idle experts: {int((data.counts == 0).sum())} · "
            f"load-balancing loss {data.loss:.3f} (perfect balance: {k})"
        )
        return figure, info


def routing_viewer(
    source: Any,
    top_k: int | None = None,
    *,
    tokens: Sequence[str] | None = None,
    expert_names: Sequence[str] | None = None,
) -> RoutingViewer:
    """The MoE routing viewer (W04) with a top-k slider.

    Args:
        source: router logits ``[..., E]``, a :class:`llmcore.moe.Routing`, a
            :class:`llmcore.moe.MixtureOfExperts` that has run, a model containing such layers (one
            entry per layer in the ``"layer"`` dropdown) or a dict ``{name: any of these}``.
        top_k: initial k (default: the layer's own, or 2 for plain logits).
    """
    if isinstance(source, dict):
        routings = dict(source)
    elif isinstance(source, nn.Module) and not isinstance(source, MixtureOfExperts):
        routings = {name: m for name, m in source.named_modules() if isinstance(m, MixtureOfExperts) and m.last_routing is not None}
        if not routings:
            raise ValueError("routing_viewer: the model has no MixtureOfExperts layer that has run a forward pass")
    else:
        routings = {"router": source}
    if not routings:
        raise ValueError("routing_viewer: nothing to show")
    for name, routing in routings.items():
        _logits_of(routing, f"routing_viewer ({name})")
    return RoutingViewer(routings, top_k=top_k, tokens=tokens, expert_names=expert_names)
