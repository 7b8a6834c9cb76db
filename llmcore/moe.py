"""Sparse mixture of experts (稀疏混合专家): a router sends each token to ``k`` of ``E`` feed-forward experts.

Shazeer et al. (2017, "Outrageously Large Neural Networks") replaced one FFN by many experts and a
learned gate that keeps only the top-k of them per token, so parameters grow with ``E`` while the
compute per token grows only with ``k``. Switch Transformer (Fedus et al., 2021) routed to a single
expert (k = 1) and made the auxiliary load-balancing loss (负载均衡损失) simple; ST-MoE (Zoph et al.,
2022) added the router z-loss (路由 z 损失) that keeps router logits small for stability. Mixtral
(Jiang et al., 2024) puts 8 SwiGLU experts with top-2 routing in every layer of a Mistral decoder.

Shapes: ``T`` tokens (all leading dimensions flattened), ``E`` experts, ``k`` experts per token.

Routing options (路由方式)
    ``"mixtral"``: the k largest logits, softmax over those k only (Mixtral, DeepSeek-MoE's
    normalised variant). ``"switch"``: softmax over all E logits, keep the k largest probabilities
    as they are (Switch Transformer, Qwen1.5-MoE/Qwen2-MoE with ``norm_topk_prob=False``, OLMoE);
    with ``renormalize=True`` they are rescaled to sum to one (Qwen2-MoE's ``norm_topk_prob``),
    which is mathematically the ``"mixtral"`` rule.

Auxiliary losses, for a training loop to add to the language-model loss
    ``load_balancing_loss = E · Σ_i f_i · P_i`` (Switch eq. 4; Mixtral uses the same), with ``f_i``
    the number of top-k assignments to expert ``i`` divided by the number of tokens (so Σ f = k)
    and ``P_i`` the mean full-softmax router probability of expert ``i``. Only ``P`` carries a
    gradient. A perfectly balanced router scores ``k``; everything sent to k experts scores up to
    ``E``. ``router_z_loss = mean_t (logsumexp_j z_tj)²`` (ST-MoE eq. 5). Typical weights: 0.01–0.02
    and 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ffn import GatedFeedForward

__all__ = [
    "ROUTINGS",
    "Routing",
    "RouterLosses",
    "MixtureOfExperts",
    "load_balancing_loss",
    "router_z_loss",
    "router_losses",
    "active_parameters",
]

ROUTINGS = ("mixtral", "switch")


def _select(tensor: Tensor, keep: Tensor | None, name: str) -> Tensor:
    """``tensor [..., X] → [T', X]``: flatten the token dimensions and drop the rows where ``keep`` is false."""
    if keep is None:
        return tensor.reshape(-1, tensor.shape[-1])
    if keep.shape != tensor.shape[:-1]:
        raise ValueError(f"{name}: keep has shape {tuple(keep.shape)}, expected {tuple(tensor.shape[:-1])}")
    return tensor[keep.bool()]


def load_balancing_loss(logits: Tensor, top_k_indices: Tensor, keep: Tensor | None = None) -> Tensor:
    """Switch/Mixtral auxiliary loss ``E · Σ_i f_i · P_i`` (a float32 scalar).

    Args:
        logits: router logits ``[..., E]``.
        top_k_indices: the experts each token was sent to, ``[..., k]``.
        keep: optional boolean ``[...]``; tokens marked false (padding) are left out of both
            ``f`` and ``P``, as transformers' ``load_balancing_loss_func`` does with an attention mask.
    """
    n_experts = logits.shape[-1]
    probabilities = F.softmax(_select(logits, keep, "load_balancing_loss").float(), dim=-1)
    chosen = _select(top_k_indices, keep, "load_balancing_loss")
    # f counts assignments, not tokens: with k = 2 a token adds to two experts, so Σ f = k.
    fraction = torch.bincount(chosen.flatten(), minlength=n_experts).to(probabilities.dtype) / chosen.shape[0]
    return n_experts * (fraction * probabilities.mean(dim=0)).sum()


def router_z_loss(logits: Tensor, keep: Tensor | None = None) -> Tensor:
    """ST-MoE router z-loss ``mean_t (logsumexp_j z_tj)²`` over the tokens ``keep`` marks (float32 scalar).

    Penalising the log-partition function pushes router logits towards zero, where the softmax
    and bfloat16 rounding are well behaved (ST-MoE, §3.1).
    """
    return torch.logsumexp(_select(logits, keep, "router_z_loss").float(), dim=-1).square().mean()


@dataclass
class Routing:
    """What a :class:`MixtureOfExperts` layer decided in its last forward pass (路由记录).

    ``logits [..., E]`` (float32, still attached to the autograd graph so the losses can be
    recomputed with a padding mask and back-propagated), ``top_k_indices [..., k]`` (int64),
    ``top_k_weights [..., k]`` (float32, the mixing weights), and the two auxiliary losses over
    *all* tokens, padding included (the layer does not see the attention mask; use
    :func:`router_losses` to leave padding out). ``...`` is the leading shape of the layer's input,
    e.g. ``[B, L]``.
    """

    logits: Tensor
    top_k_indices: Tensor
    top_k_weights: Tensor
    load_balancing_loss: Tensor
    z_loss: Tensor

    @property
    def probabilities(self) -> Tensor:
        """Full softmax over the experts ``[..., E]`` (the ``P`` of the load-balancing loss)."""
        return F.softmax(self.logits, dim=-1)


class MixtureOfExperts(nn.Module):
    """Top-k routed mixture of gated feed-forward experts, a drop-in replacement for one FFN.

    Submodules: ``gate`` (the router, ``Linear(d_model → E)`` without bias) and ``experts``
    (``E`` × :class:`~llmcore.ffn.GatedFeedForward` with ``gate_proj``/``up_proj``/``down_proj``).
    After every forward, ``last_routing`` holds a :class:`Routing` record for viewers and losses.

    Tokens are dispatched by index: each expert runs only on the rows routed to it, and its output
    is scaled by the routing weight and added back at those rows, so the work is ``k/E`` of running
    all experts densely. The router runs in float32 (as Mixtral's reference code does) because
    rounding a logit in bfloat16 can flip which experts are chosen.

    Shapes: ``x [..., d_model] → [..., d_model]``.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        n_experts: int,
        top_k: int = 2,
        activation: str = "silu",
        routing: str = "mixtral",
        renormalize: bool = False,
    ) -> None:
        super().__init__()
        if n_experts <= 0:
            raise ValueError(f"MixtureOfExperts.n_experts must be positive, got {n_experts}")
        if not 0 < top_k <= n_experts:
            raise ValueError(f"MixtureOfExperts.top_k={top_k} must be in 1..n_experts={n_experts}")
        if routing not in ROUTINGS:
            raise ValueError(f"MixtureOfExperts.routing={routing!r} is not one of {list(ROUTINGS)}")
        if renormalize and routing != "switch":
            raise ValueError("MixtureOfExperts.renormalize applies to routing='switch' only (mixtral weights already sum to 1)")
        self.n_experts = n_experts
        self.top_k = top_k
        self.routing = routing
        self.renormalize = renormalize
        self.gate = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(GatedFeedForward(d_model, d_ff, activation=activation) for _ in range(n_experts))
        self.last_routing: Routing | None = None

    def extra_repr(self) -> str:
        return f"n_experts={self.n_experts}, top_k={self.top_k}, routing={self.routing!r}, renormalize={self.renormalize}"

    def route(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Router logits ``[T, E]`` → mixing weights ``[T, k]`` and expert indices ``[T, k]``."""
        if self.routing == "mixtral":
            top_logits, indices = logits.topk(self.top_k, dim=-1)
            return F.softmax(top_logits, dim=-1), indices
        weights, indices = F.softmax(logits, dim=-1).topk(self.top_k, dim=-1)
        if self.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, indices

    def dispatch(self, tokens: Tensor, weights: Tensor, indices: Tensor) -> Tensor:
        """``Σ_j weights[t, j] · expert_{indices[t, j]}(tokens[t])`` for every token, ``[T, d] → [T, d]``."""
        flat_experts = indices.flatten()
        # Sorting the T·k assignments by expert groups each expert's rows together; assignment
        # a belongs to token a // k because the flattening is row-major.
        order = flat_experts.argsort(stable=True)
        rows = order // self.top_k
        row_weights = weights.flatten()[order]
        counts = torch.bincount(flat_experts, minlength=self.n_experts).tolist()
        output = torch.zeros_like(tokens)
        for expert, expert_rows, expert_weights in zip(self.experts, rows.split(counts), row_weights.split(counts)):
            if expert_rows.numel():
                contribution = expert(tokens[expert_rows]) * expert_weights[:, None]
                output.index_add_(0, expert_rows, contribution.to(output.dtype))
        return output

    def forward(self, x: Tensor) -> Tensor:
        leading = x.shape[:-1]
        tokens = x.reshape(-1, x.shape[-1])
        logits = self.gate(tokens).float()
        weights, indices = self.route(logits)
        output = self.dispatch(tokens, weights, indices)
        self.last_routing = Routing(
            logits=logits.view(*leading, self.n_experts),
            top_k_indices=indices.view(*leading, self.top_k),
            top_k_weights=weights.view(*leading, self.top_k),
            load_balancing_loss=load_balancing_loss(logits, indices),
            z_loss=router_z_loss(logits),
        )
        return output.view(x.shape)


@dataclass
class RouterLosses:
    """Auxiliary losses of a whole model's last forward pass (float32 scalars)."""

    load_balancing: Tensor
    z_loss: Tensor


def _moe_layers(model: nn.Module) -> list[MixtureOfExperts]:
    return [module for module in model.modules() if isinstance(module, MixtureOfExperts)]


def router_losses(model: nn.Module, attention_mask: Tensor | None = None) -> RouterLosses:
    """The auxiliary losses over every MoE layer of ``model``'s last forward pass.

    The tokens of all layers are pooled before ``f`` and ``P`` are formed, exactly as transformers'
    Mixtral ``load_balancing_loss_func`` does; this is not the mean of the per-layer losses
    (``Routing.load_balancing_loss``), since imbalances of different layers can cancel in the pool.
    For the z-loss pooling and averaging agree. ``attention_mask [B, L]`` (1 = real token) leaves
    padding out of both; it must match the leading shape of the layers' inputs.

    Typical use: ``loss = lm_loss + 0.02 * losses.load_balancing + 0.001 * losses.z_loss``.
    """
    routings = [layer.last_routing for layer in _moe_layers(model) if layer.last_routing is not None]
    if not routings:
        raise ValueError("router_losses: the model has no MixtureOfExperts layer that has run a forward pass")
    logits = torch.cat([routing.logits for routing in routings])
    indices = torch.cat([routing.top_k_indices for routing in routings])
    keep = None
    if attention_mask is not None:
        expected = tuple(routings[0].logits.shape[:-1])
        if tuple(attention_mask.shape) != expected:
            raise ValueError(f"router_losses: attention_mask has shape {tuple(attention_mask.shape)}, expected {expected}")
        keep = attention_mask.bool().repeat(len(routings), *([1] * (attention_mask.dim() - 1)))
    return RouterLosses(load_balancing_loss(logits, indices, keep), router_z_loss(logits, keep))


def active_parameters(model: nn.Module) -> int:
    """Parameters that touch one token: all of them, but only ``top_k`` of each layer's ``E`` experts.

    Mixtral 8x7B: 46.7B in total, 12.9B active (the router and attention are always used).
    Tied parameters count once.
    """
    total = sum(parameter.numel() for parameter in {id(p): p for p in model.parameters()}.values())
    for layer in _moe_layers(model):
        per_expert = sum(parameter.numel() for parameter in layer.experts[0].parameters())
        total -= (layer.n_experts - layer.top_k) * per_expert
    return total
