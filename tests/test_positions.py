"""llmcore.positions against independent oracles: the sinusoidal encoding against its closed form written one
element at a time in float64 (values, dtype, large positions, custom base, shift-as-rotation), the sinusoidal
module adding exactly that table, and learned positional embeddings adding table rows from an offset.
"""
import math

import pytest
import torch

from llmcore.positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_position_encoding

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def closed_form_sinusoid(n_positions, d_model, base=10000.0):
    """PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(pos / base^(2i/d)), one element at a time."""
    rows = []
    for pos in range(n_positions):
        row = []
        for i in range(d_model // 2):
            angle = pos / base ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(n_positions, d_model)


@pytest.mark.parametrize("n_positions, d_model", [(1, 2), (7, 4), (50, 16), (3, 64), (0, 8)])
def test_sinusoid_matches_closed_form_in_float64(n_positions, d_model):
    encoding = sinusoidal_position_encoding(n_positions, d_model, dtype=torch.float64)
    assert encoding.dtype == torch.float64
    torch.testing.assert_close(encoding, closed_form_sinusoid(n_positions, d_model), atol=1e-12, rtol=0)


def test_sinusoid_default_dtype_is_float32_and_matches_closed_form():
    encoding = sinusoidal_position_encoding(20, 12)
    assert encoding.dtype == torch.float32
    torch.testing.assert_close(encoding, closed_form_sinusoid(20, 12).float(), atol=1e-6, rtol=0)


def test_sinusoid_first_values_written_out():
    encoding = sinusoidal_position_encoding(2, 4, dtype=torch.float64)
    # pos 0: sin 0, cos 0 on every pair; pos 1: angles 1 and 1/100 (10000^(2/4) = 100).
    expected = [[0.0, 1.0, 0.0, 1.0], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]]
    assert encoding.tolist() == [pytest.approx(row, abs=1e-15) for row in expected]


def test_sinusoid_large_positions_stay_accurate_in_float32():
    # Angles computed in float32 would be off by ~1e-3 at position 20000.
    encoding = sinusoidal_position_encoding(20001, 8)
    torch.testing.assert_close(encoding[20000], closed_form_sinusoid(20001, 8)[20000].float(), atol=1e-6, rtol=0)


def test_sinusoid_custom_base():
    encoding = sinusoidal_position_encoding(5, 6, base=100.0, dtype=torch.float64)
    torch.testing.assert_close(encoding, closed_form_sinusoid(5, 6, base=100.0), atol=1e-12, rtol=0)


@pytest.mark.parametrize("offset", [1, 3, 17])
def test_sinusoid_shift_by_k_is_a_fixed_rotation(offset):
    d_model = 8
    encoding = sinusoidal_position_encoding(40, d_model, dtype=torch.float64)
    # Block-diagonal rotation built from the frequencies only: [sin(a+b), cos(a+b)] = R(b) [sin a, cos a].
    rotation = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i in range(d_model // 2):
        b = offset / 10000 ** (2 * i / d_model)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor(
            [[math.cos(b), math.sin(b)], [-math.sin(b), math.cos(b)]], dtype=torch.float64
        )
    shifted = encoding[:-offset] @ rotation.T
    torch.testing.assert_close(shifted, encoding[offset:], atol=1e-12, rtol=0)


def test_sinusoid_rejects_odd_width_and_negative_positions():
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_position_encoding(4, 5)
    with pytest.raises(ValueError, match="n_positions"):
        sinusoidal_position_encoding(-1, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 3])
def test_sinusoidal_module_adds_the_closed_form(dtype, offset):
    module = SinusoidalPositionalEncoding(16, 8).to(dtype)
    x = randn(2, 5, 8, dtype=dtype)
    expected = x + closed_form_sinusoid(16, 8)[offset : offset + 5].to(dtype)
    out = module(x, offset=offset)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])


def test_sinusoidal_module_in_float64_is_exact_even_after_double():
    x = torch.zeros(1, 300, 16, dtype=torch.float64)
    out = SinusoidalPositionalEncoding(300, 16).double()(x)
    torch.testing.assert_close(out[0], closed_form_sinusoid(300, 16), atol=1e-13, rtol=0)


def test_sinusoidal_module_has_no_parameters_and_no_state():
    module = SinusoidalPositionalEncoding(10, 4)
    assert list(module.parameters()) == []
    assert module.state_dict() == {}


def test_sinusoidal_module_rejects_sequences_past_max_positions():
    module = SinusoidalPositionalEncoding(6, 4)
    module(torch.zeros(1, 6, 4))  # exactly max_positions is fine
    module(torch.zeros(1, 2, 4), offset=4)
    with pytest.raises(ValueError, match="max_positions=6"):
        module(torch.zeros(1, 7, 4))
    with pytest.raises(ValueError, match="max_positions=6"):
        module(torch.zeros(1, 3, 4), offset=4)


def test_learned_positions_add_table_rows_from_offset():
    module = LearnedPositionalEmbedding(10, 4)
    assert module.weight.shape == (10, 4)
    x = randn(2, 3, 4)
    torch.testing.assert_close(module(x, offset=2), x + module.weight.detach()[2:5])
    with pytest.raises(ValueError, match="max_positions=10"):
        module(randn(1, 4, 4), offset=7)
