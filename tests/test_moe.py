"""The mixture-of-experts layer (llmcore.moe) against a naive per-token loop and hand-computed losses.

Oracle: for every token separately, rank the router logits, pick the top-k experts, form the
mixing weights with plain exp/sum arithmetic and add the weighted expert outputs, each expert
written out as ``W2 (silu(W1 x) ⊙ W3 x)`` (Shazeer et al. 2017; Switch; Mixtral). The losses are
checked on a 4-token example whose softmax values are exact fractions, and the Switch (top-1)
losses against transformers' SwitchTransformers functions.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmcore.models import build
from llmcore.moe import MixtureOfExperts, active_parameters, load_balancing_loss, router_losses, router_z_loss
from zoo_helpers import assert_parity, randomize_

D_MODEL, D_FF, N_EXPERTS = 16, 24, 4


def make_layer(*, top_k: int = 2, routing: str = "mixtral", renormalize: bool = False, seed: int = 0) -> MixtureOfExperts:
    torch.manual_seed(seed)
    layer = MixtureOfExperts(D_MODEL, D_FF, n_experts=N_EXPERTS, top_k=top_k, routing=routing, renormalize=renormalize)
    return randomize_(layer, seed=seed)


def naive_moe(layer: MixtureOfExperts, x: torch.Tensor) -> torch.Tensor:
    """One token at a time: rank the logits, weigh the chosen experts, sum their outputs."""
    tokens = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(tokens)
    for t, token in enumerate(tokens):
        logits = [float(layer.gate.weight[e] @ token) for e in range(layer.n_experts)]
        chosen = sorted(range(layer.n_experts), key=lambda e: -logits[e])[: layer.top_k]
        if layer.routing == "mixtral":
            weights = [math.exp(logits[e]) / sum(math.exp(logits[j]) for j in chosen) for e in chosen]
        else:
            weights = [math.exp(logits[e]) / sum(math.exp(z) for z in logits) for e in chosen]
            if layer.renormalize:
                weights = [w / sum(weights) for w in weights]
        for e, w in zip(chosen, weights):
            expert = layer.experts[e]
            hidden = F.silu(expert.gate_proj.weight @ token) * (expert.up_proj.weight @ token)
            out[t] += w * (expert.down_proj.weight @ hidden)
    return out.view(x.shape)


@pytest.mark.parametrize(
    "routing, renormalize, top_k",
    [("mixtral", False, 2), ("mixtral", False, 1), ("switch", False, 1), ("switch", False, 2), ("switch", True, 2)],
    ids=["mixtral-top2", "mixtral-top1", "switch-top1", "switch-top2", "switch-top2-renormalised"],
)
def test_layer_matches_a_naive_per_token_loop(routing, renormalize, top_k):
    layer = make_layer(top_k=top_k, routing=routing, renormalize=renormalize)
    x = torch.randn(2, 5, D_MODEL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        name = f"moe layer ({routing}, k={top_k}{', renorm' if renormalize else ''})"
        assert_parity(name, "naive per-token loop", layer(x), naive_moe(layer, x))
    routing_record = layer.last_routing
    assert routing_record.logits.shape == (2, 5, N_EXPERTS)
    assert routing_record.top_k_indices.shape == routing_record.top_k_weights.shape == (2, 5, top_k)


def test_mixtral_routing_is_switch_routing_renormalised():
    mixtral = make_layer(routing="mixtral")
    switch = make_layer(routing="switch", renormalize=True)
    x = torch.randn(7, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(mixtral(x), switch(x), rtol=1e-5, atol=1e-6)


def test_each_expert_runs_only_on_the_tokens_routed_to_it():
    layer = make_layer()
    with torch.no_grad():
        layer.gate.weight[3] = -100.0  # with positive inputs expert 3 loses every comparison
    rows: dict[int, int] = {}
    for e, expert in enumerate(layer.experts):
        expert.register_forward_hook(lambda module, args, out, e=e: rows.__setitem__(e, args[0].shape[0]))
    x = torch.randn(3, 6, D_MODEL, generator=torch.Generator().manual_seed(2)).abs()
    layer(x)
    chosen = layer.last_routing.top_k_indices
    assert 3 not in rows
    assert rows == {e: int((chosen == e).sum()) for e in range(N_EXPERTS) if (chosen == e).any()}
    assert sum(rows.values()) == 18 * layer.top_k


def test_gradients_reach_the_router_through_the_weights_and_the_losses():
    layer = make_layer()
    x = torch.randn(4, 3, D_MODEL)
    layer(x).square().sum().backward()
    assert layer.gate.weight.grad is not None and layer.gate.weight.grad.abs().sum() > 0
    layer.zero_grad(set_to_none=True)
    layer(x)
    routing = layer.last_routing
    (routing.load_balancing_loss + routing.z_loss).backward()
    assert layer.gate.weight.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in layer.experts.parameters())


def four_token_layer(routing: str, renormalize: bool = False) -> MixtureOfExperts:
    """d_model = E = 4 and an identity router, so the input rows *are* the router logits."""
    layer = MixtureOfExperts(4, 8, n_experts=4, top_k=2, routing=routing, renormalize=renormalize)
    with torch.no_grad():
        layer.gate.weight.copy_(torch.eye(4))
    return layer


# Softmaxes: tokens 0-2 → [1/2, 1/4, 1/8, 1/8]; token 3 → [1/16, 1/16, 1/8, 3/4].
FOUR_TOKENS = torch.log(torch.tensor([[4.0, 2, 1, 1], [4, 2, 1, 1], [4, 2, 1, 1], [1, 1, 2, 12]]))


def test_losses_equal_hand_computed_values_on_four_tokens():
    layer = four_token_layer("mixtral")
    layer(FOUR_TOKENS)
    routing = layer.last_routing
    assert routing.top_k_indices.tolist() == [[0, 1], [0, 1], [0, 1], [3, 2]]
    # Assignments: experts 0, 1 get 3 each, experts 2, 3 get 1 each → f = [3/4, 3/4, 1/4, 1/4].
    # Mean probabilities P = [25/64, 13/64, 8/64, 18/64]; E·Σ f·P = 4 · 35/64 = 2.1875.
    assert routing.load_balancing_loss.item() == pytest.approx(4 * (3 * 25 + 3 * 13 + 8 + 18) / (4 * 64))
    assert routing.load_balancing_loss.item() == pytest.approx(2.1875)
    # logsumexp = ln 8 for tokens 0-2 and ln 16 for token 3: ((3 ln2)²·3 + (4 ln2)²) / 4.
    assert routing.z_loss.item() == pytest.approx(43 / 4 * math.log(2) ** 2)
    # Without the last token: f = [1, 1, 0, 0], P = [1/2, 1/4, 1/8, 1/8] → 4 · 3/4 = 3; z = (3 ln 2)².
    keep = torch.tensor([True, True, True, False])
    assert load_balancing_loss(routing.logits, routing.top_k_indices, keep).item() == pytest.approx(3.0)
    assert router_z_loss(routing.logits, keep).item() == pytest.approx(9 * math.log(2) ** 2)


@pytest.mark.parametrize(
    "routing, renormalize, first, last",
    [
        ("mixtral", False, [2 / 3, 1 / 3], [6 / 7, 1 / 7]),
        ("switch", False, [1 / 2, 1 / 4], [3 / 4, 1 / 8]),
        ("switch", True, [2 / 3, 1 / 3], [6 / 7, 1 / 7]),
    ],
)
def test_mixing_weights_equal_hand_computed_values(routing, renormalize, first, last):
    layer = four_token_layer(routing, renormalize)
    layer(FOUR_TOKENS)
    weights = layer.last_routing.top_k_weights
    assert weights[0].tolist() == pytest.approx(first)
    assert weights[3].tolist() == pytest.approx(last)


def test_switch_losses_match_transformers_switch_transformers():
    """Top-1 routing, one group: Switch's loss E²·mean(f·P) is our E·Σ f·P."""
    switch = pytest.importorskip("transformers.models.switch_transformers.modeling_switch_transformers")
    logits = torch.randn(1, 40, 8, generator=torch.Generator().manual_seed(3)) * 2
    indices = logits.argmax(dim=-1, keepdim=True)
    expected = switch.load_balancing_loss_func(logits.softmax(dim=-1), indices.squeeze(-1))
    torch.testing.assert_close(load_balancing_loss(logits, indices), expected)
    torch.testing.assert_close(router_z_loss(logits), switch.router_z_loss_func(logits))


def test_router_losses_pool_all_layers_and_leave_out_padding():
    model = build("tiny-mixtral")
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 5:] = 0
    with pytest.raises(ValueError, match="has run a forward pass"):
        router_losses(model)
    model(ids, mask)
    routings = [layer.ffn.last_routing for layer in model.layers]
    losses = router_losses(model, mask)
    keep = mask.bool()
    pooled_logits = torch.cat([r.logits[keep] for r in routings])
    pooled_indices = torch.cat([r.top_k_indices[keep] for r in routings])
    torch.testing.assert_close(losses.load_balancing, load_balancing_loss(pooled_logits, pooled_indices))
    torch.testing.assert_close(losses.z_loss, torch.stack([router_z_loss(r.logits, keep) for r in routings]).mean())
    torch.testing.assert_close(router_losses(model).z_loss, torch.stack([r.z_loss for r in routings]).mean())
    with pytest.raises(ValueError, match="attention_mask has shape"):
        router_losses(model, mask[:, :4])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_experts=4, top_k=5), "top_k"),
        (dict(n_experts=0, top_k=1), "n_experts"),
        (dict(n_experts=4, routing="expert-choice"), "routing"),
        (dict(n_experts=4, renormalize=True), "renormalize"),
    ],
)
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"MixtureOfExperts.{field}"):
        MixtureOfExperts(8, 16, **kwargs)


def test_active_parameters_count_top_k_of_the_experts():
    model = build("tiny-mixtral")  # 4 experts, top-2
    expert = 3 * 64 * 96
    total = sum(p.numel() for p in model.parameters())
    assert active_parameters(model) == total - model.config.n_layers * 2 * expert
