"""llmcore.ffn against closed forms and transformers: the gated (SwiGLU) feed-forward against
silu(x·W_gate) ⊙ (x·W_up) · W_down and against transformers' LlamaMLP and GemmaMLP, its hidden-size rule against
the published LLaMA and Baichuan 2 widths, and the plain FeedForward against activation(x·W1 + b1)·W2 + b2 with
each activation written out element-wise (relu, gelu, gelu_tanh, silu).
"""
from __future__ import annotations

import math

import pytest
import torch

from llmcore.ffn import FeedForward, GatedFeedForward, gated_hidden_size, get_activation

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Gated feed-forward (SwiGLU) and its hidden-size rule
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d, expected", [(4096, 11008), (5120, 13824), (6656, 17920), (8192, 22016)])
def test_swiglu_width_rule_gives_llama_sizes(d, expected):
    assert gated_hidden_size(d) == expected


def test_llama3_width_uses_multiplier_and_multiple():
    assert gated_hidden_size(4096, multiple_of=1024, multiplier=1.3) == 14336
    assert gated_hidden_size(8192, multiple_of=4096, multiplier=1.3) == 28672


def test_gated_ffn_computes_silu_gate_times_up():
    ffn = GatedFeedForward(6, 10)
    x = torch.randn(2, 6)
    gate, up = x @ ffn.gate_proj.weight.T, x @ ffn.up_proj.weight.T
    expected = (gate * torch.sigmoid(gate) * up) @ ffn.down_proj.weight.T
    torch.testing.assert_close(ffn(x), expected)


# --------------------------------------------------------------------------------------------------
# Feed-forward
# --------------------------------------------------------------------------------------------------


EXPLICIT_ACTIVATIONS = {
    "relu": lambda h: torch.where(h > 0, h, torch.zeros_like(h)),
    "gelu": lambda h: 0.5 * h * (1 + torch.erf(h / math.sqrt(2))),
    "gelu_tanh": lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3))),
    "silu": lambda h: h / (1 + torch.exp(-h)),
}


@pytest.mark.parametrize("activation", sorted(EXPLICIT_ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_feed_forward_matches_explicit_formula(activation, dtype):
    torch.manual_seed(0)
    ffn = FeedForward(6, 10, activation=activation).to(dtype)
    x = randn(2, 3, 6, dtype=dtype)
    w1, b1 = ffn.up_proj.weight.detach(), ffn.up_proj.bias.detach()
    w2, b2 = ffn.down_proj.weight.detach(), ffn.down_proj.bias.detach()
    expected = EXPLICIT_ACTIVATIONS[activation](x @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(ffn(x), expected, **TOLERANCE[dtype])


def test_feed_forward_shapes_and_no_bias():
    ffn = FeedForward(4, 16, bias=False)
    assert ffn.up_proj.weight.shape == (16, 4) and ffn.down_proj.weight.shape == (4, 16)
    assert ffn.up_proj.bias is None and ffn.down_proj.bias is None
    x = randn(5, 4)
    torch.testing.assert_close(ffn(x), torch.relu(x @ ffn.up_proj.weight.T) @ ffn.down_proj.weight.T)


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"'swish'.*relu"):
        FeedForward(4, 8, activation="swish")
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("tanh")


@pytest.mark.parametrize("d, multiple_of, expected", [(4096, 128, 11008), (5120, 128, 13696)])
def test_baichuan2_widths_round_to_128(d, multiple_of, expected):
    """Baichuan 2 7B and 13B (their released configs: intermediate_size 11008 and 13696)."""
    assert gated_hidden_size(d, multiple_of=multiple_of) == expected


@pytest.mark.parametrize("family, activation, hf_activation", [("llama", "silu", "silu"),
                                                                ("gemma", "gelu_tanh", "gelu_pytorch_tanh")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gated_ffn_matches_transformers_mlp(family, activation, hf_activation, dtype):
    """Oracle: transformers' LlamaMLP (SwiGLU) and GemmaMLP (GeGLU) with the same three matrices."""
    transformers = pytest.importorskip("transformers")
    config_class, module_name, mlp_name = {
        "llama": ("LlamaConfig", "transformers.models.llama.modeling_llama", "LlamaMLP"),
        "gemma": ("GemmaConfig", "transformers.models.gemma.modeling_gemma", "GemmaMLP"),
    }[family]
    # The attention fields only satisfy the config's validation: the MLP reads the first three.
    config = getattr(transformers, config_class)(hidden_size=24, intermediate_size=40, hidden_act=hf_activation,
                                                 num_attention_heads=4, num_key_value_heads=2, head_dim=6)
    torch.manual_seed(0)
    oracle = getattr(pytest.importorskip(module_name), mlp_name)(config).to(dtype)
    ours = GatedFeedForward(24, 40, activation=activation).to(dtype)
    ours.load_state_dict(oracle.state_dict())
    x = randn(2, 5, 24, dtype=dtype, seed=5) * 2
    with torch.no_grad():
        torch.testing.assert_close(ours(x), oracle(x), **TOLERANCE[dtype])
