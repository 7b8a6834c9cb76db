"""Checks for notebook 02_building_blocks: embeddings, positions, LayerNorm, FFN, encoder and decoder blocks.

Every check compares the learner's code with llmcore on fixed seeds and names the known mistake that
reproduces a wrong answer; each mistake is "the reference with one knob turned". Module exercises are
built with the skeleton's constructor arguments and get llmcore's weights by name
(``load_reference_weights``). For ``TokenEmbedding`` and ``LayerNorm`` the parameters are also passed
in as inputs (``torch.func.functional_call``), so that their gradients are compared too.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

import llmcore
from llmcore import blocks as reference_blocks
from llmcore import norms as reference_norms
from llmcore import positions as reference_positions

from ..framework import Case, CheckFailure, Mistake, check_function, load_reference_weights

__all__ = [
    "check_token_embedding",
    "check_sinusoidal_position_encoding",
    "check_layer_norm",
    "check_add_and_norm",
    "check_feed_forward",
    "check_encoder_block",
    "check_decoder_block",
]


def _require_class(exercise: str, cls: object) -> None:
    if not isinstance(cls, type):
        raise CheckFailure(f"✘ {exercise}: expected the class itself, got {type(cls).__name__}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# Token embedding (T01)
# --------------------------------------------------------------------------------------------------


def _embedding_variant(ids: Tensor, weight: Tensor, *, scale: str = "sqrt_d") -> Tensor:
    """The reference with one knob turned: how the looked-up rows are scaled."""
    d_model = weight.shape[1]
    factor = {"sqrt_d": math.sqrt(d_model), "none": 1.0, "d": float(d_model), "inv_sqrt_d": 1 / math.sqrt(d_model)}
    return weight[ids] * factor[scale]


def _embedding_reference(ids: Tensor, weight: Tensor) -> Tensor:
    vocab_size, d_model = weight.shape
    return functional_call(llmcore.TokenEmbedding(vocab_size, d_model), {"weight": weight}, (ids,))


EMBEDDING_MISTAKES = [
    Mistake(
        "the embeddings are not multiplied by √d_model",
        "the paper multiplies the looked-up vectors by √d_model (section 3.4): return self.weight[ids] * math.sqrt(d_model).",
        output=lambda ids, weight: _embedding_variant(ids, weight, scale="none"),
    ),
    Mistake(
        "the embeddings are multiplied by d_model instead of √d_model",
        "the factor is the square root: math.sqrt(d_model).",
        output=lambda ids, weight: _embedding_variant(ids, weight, scale="d"),
    ),
    Mistake(
        "the embeddings are divided by √d_model instead of multiplied",
        "the embedding table starts small (std 1/√d_model); multiplying by √d_model brings its entries to about 1, "
        "the size of the position encoding added next.",
        output=lambda ids, weight: _embedding_variant(ids, weight, scale="inv_sqrt_d"),
    ),
    Mistake(
        "the ids index the wrong axis of the table (weight[:, ids])",
        "weight is [vocab_size, d_model]: one row per token. Select rows: self.weight[ids].",
        output=lambda ids, weight: weight[:, ids] * math.sqrt(weight.shape[1]),
    ),
]


def _embedding_cases(seed: int, hidden: bool) -> list[Case]:
    generator = _generator(seed)

    def table(vocab_size: int, d_model: int, dtype: torch.dtype) -> Tensor:
        return torch.randn(vocab_size, d_model, generator=generator, dtype=dtype) / math.sqrt(d_model)

    def ids(vocab_size: int, shape: tuple) -> Tensor:
        return torch.randint(0, vocab_size, shape, generator=generator)

    cases = [
        Case("vocab_size=10, d_model=16, ids [B=2, L=5], float32", (ids(10, (2, 5)), table(10, 16, torch.float32))),
        Case(
            "vocab_size=7, d_model=9, ids [B=3, L=4] with repeated tokens, float64, gradient of the table (input 0) checked",
            (torch.tensor([[1, 1, 2, 6], [0, 1, 1, 1], [6, 5, 4, 3]]), table(7, 9, torch.float64)),
            check_gradients=True,
        ),
        Case(
            "vocab_size=50, d_model=12, ids [L=8] (no batch dim) including the first and last ids 0 and 49, float32",
            (torch.tensor([0, 49, 3, 3, 17, 0, 49, 8]), table(50, 12, torch.float32)),
        ),
    ]
    if hidden:
        cases += [
            Case("vocab_size=37, d_model=512, ids [B=2, L=3], float64, gradients",
                 (ids(37, (2, 3)), table(37, 512, torch.float64)), check_gradients=True),
            Case("vocab_size=100, d_model=64, ids [B=1, L=1], float32", (ids(100, (1, 1)), table(100, 64, torch.float32))),
            Case("vocab_size=5, d_model=6, ids [B=2, H=2, L=3] (extra leading dims), float64",
                 (ids(5, (2, 2, 3)), table(5, 6, torch.float64))),
        ]
    return cases


def check_token_embedding(cls: type, *, hidden: bool = False) -> None:
    """Check ``cls(vocab_size, d_model)`` with parameter ``weight [vocab_size, d_model]`` and
    ``forward(ids [...]) -> [..., d_model]`` against llmcore.TokenEmbedding (SYLLABUS T01).

    The table is passed in with ``torch.func.functional_call`` so that its gradient is compared too.
    """
    _require_class("TokenEmbedding", cls)

    def run_learner(ids: Tensor, weight: Tensor) -> Tensor:
        vocab_size, d_model = weight.shape
        module = cls(vocab_size, d_model)
        load_reference_weights("TokenEmbedding", module, llmcore.TokenEmbedding(vocab_size, d_model))
        return functional_call(module, {"weight": weight}, (ids,))

    return check_function(
        "TokenEmbedding",
        run_learner,
        _embedding_reference,
        _embedding_cases(seed=61 if hidden else 60, hidden=hidden),
        mistakes=EMBEDDING_MISTAKES,
        forbidden={
            llmcore.TokenEmbedding: "llmcore.TokenEmbedding",
            nn.Embedding: "torch.nn.Embedding",
            F.embedding: "torch.nn.functional.embedding",
            torch.embedding: "torch.embedding",
        },
        output_names=("embeddings",),
        fallback_hint="look up the rows with self.weight[ids] and multiply them by math.sqrt(d_model).",
    )


# --------------------------------------------------------------------------------------------------
# Sinusoidal position encoding (T05)
# --------------------------------------------------------------------------------------------------


def _pe_reference(n_positions: int, d_model: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return reference_positions.sinusoidal_position_encoding(n_positions, d_model, dtype=dtype)


def _pe_variant(
    n_positions: int,
    d_model: int,
    dtype: torch.dtype = torch.float32,
    *,
    base: float = 10000.0,
    exponent: str = "2i",
    layout: str = "interleaved",
    swap_sin_cos: bool = False,
    swap_pos_and_2i: bool = False,
) -> Tensor:
    """The reference with one knob turned, computed in float64 like the reference."""
    position = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # [n, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)                # [d/2]: 0, 2, 4, …
    if exponent == "i":  # the pair index i = 0, 1, 2, … where the paper has 2i
        two_i = two_i / 2
    if swap_pos_and_2i:
        angles = two_i / base ** (position / d_model)
    else:
        angles = position / base ** (two_i / d_model)
    first, second = (torch.cos(angles), torch.sin(angles)) if swap_sin_cos else (torch.sin(angles), torch.cos(angles))
    if exponent == "own_index":  # every dimension j uses j/d, so the cos of pair i gets (2i+1)/d
        second = torch.cos(position / base ** ((two_i + 1) / d_model))
    encoding = torch.empty(n_positions, d_model, dtype=torch.float64)
    if layout == "half":
        encoding[:, : d_model // 2], encoding[:, d_model // 2 :] = first, second
    else:
        encoding[:, 0::2], encoding[:, 1::2] = first, second
    return encoding.to(dtype)


def _other_base(got: object, expected: object) -> bool:
    """Right layout, wrong base: fit the base from PE[1, 2] = sin(base^(-2/d)) and compare with it."""
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)) or got.shape != expected.shape:
        return False
    n_positions, d_model = expected.shape
    if n_positions < 2 or d_model < 4 or not got.is_floating_point():
        return False
    frequency = torch.asin(got[1, 2].double().clamp(-1, 1)).item()  # = base^(-2/d_model)
    if not 0 < frequency < 1:
        return False
    base = frequency ** (-d_model / 2)
    if abs(base / 10000.0 - 1) < 1e-3:
        return False
    fitted = _pe_variant(n_positions, d_model, torch.float64, base=base)
    return torch.allclose(got.detach().double(), fitted, atol=1e-4, rtol=1e-3)


PE_MISTAKES = [
    Mistake(
        "sin and cos are swapped",
        "even dimensions 2i get the sine, odd dimensions 2i+1 the cosine: PE[:, 0::2] = sin(…), PE[:, 1::2] = cos(…).",
        output=lambda n, d, dtype=torch.float32: _pe_variant(n, d, dtype, swap_sin_cos=True),
    ),
    Mistake(
        "the sines fill the first half and the cosines the second half (the layout of some later libraries, e.g. Marian)",
        "the paper interleaves them: sine in the even dimensions (PE[:, 0::2]), cosine in the odd ones (PE[:, 1::2]). "
        "The two layouts are permutations of each other, but a model trained with one cannot read the other.",
        output=lambda n, d, dtype=torch.float32: _pe_variant(n, d, dtype, layout="half"),
    ),
    Mistake(
        "the exponent is i/d_model with the pair index i instead of 2i/d_model",
        "with i counting pairs 0, 1, 2, …, the exponent is 2i/d_model, i.e. torch.arange(0, d_model, 2) / d_model: "
        "the wavelengths must go all the way from 2π to 10000·2π.",
        output=lambda n, d, dtype=torch.float32: _pe_variant(n, d, dtype, exponent="i"),
    ),
    Mistake(
        "each dimension j uses its own exponent j/d_model, so the cosine of pair i gets (2i+1)/d_model",
        "a sine and its cosine share one frequency: PE[pos, 2i] and PE[pos, 2i+1] both use pos / 10000^(2i/d_model).",
        output=lambda n, d, dtype=torch.float32: _pe_variant(n, d, dtype, exponent="own_index"),
    ),
    Mistake(
        "the wavelengths use a base other than 10000",
        "divide pos by 10000^(2i/d_model): with the paper's base 10000 the longest wavelength is 10000·2π positions.",
        detect=_other_base,
    ),
    Mistake(
        "the position and the dimension index are swapped in the formula (2i / 10000^(pos/d_model))",
        "the position pos is the numerator and the dimension index 2i goes into the exponent: pos / 10000^(2i/d_model).",
        output=lambda n, d, dtype=torch.float32: _pe_variant(n, d, dtype, swap_pos_and_2i=True),
    ),
    Mistake(
        "the result is transposed: [d_model, n_positions]",
        "one row per position: positions as a column [n, 1], frequencies as a row [d_model/2], angles [n, d_model/2].",
        output=lambda n, d, dtype=torch.float32: _pe_reference(n, d, dtype).T,
    ),
]


def _pe_cases(hidden: bool) -> list[Case]:
    # args: (n_positions, d_model), kwargs: dtype. Float32 cases stay below ~100 positions, where a float32
    # computation is accurate to the tolerance; long ranges are checked in float64.
    if not hidden:
        return [
            Case("n_positions=10, d_model=16, default dtype (float32)", (10, 16)),
            Case("n_positions=50, d_model=64, dtype=torch.float64", (50, 64), {"dtype": torch.float64}),
            Case("n_positions=7, d_model=2 (a single sin/cos pair), dtype=torch.float32", (7, 2), {"dtype": torch.float32}),
            Case("n_positions=20, d_model=20, dtype=torch.float64", (20, 20), {"dtype": torch.float64}),
        ]
    return [
        Case("n_positions=1000, d_model=512 (the base model), dtype=torch.float64", (1000, 512), {"dtype": torch.float64}),
        Case("n_positions=1, d_model=8, default dtype", (1, 8)),
        Case("n_positions=64, d_model=6, dtype=torch.float32", (64, 6), {"dtype": torch.float32}),
        Case("n_positions=3, d_model=128, dtype=torch.float64", (3, 128), {"dtype": torch.float64}),
    ]


def check_sinusoidal_position_encoding(fn: Callable[..., Tensor], *, hidden: bool = False) -> None:
    """Check ``fn(n_positions, d_model, dtype=torch.float32) -> [n_positions, d_model]`` against
    llmcore.sinusoidal_position_encoding (SYLLABUS T05)."""
    return check_function(
        "sinusoidal_position_encoding",
        fn,
        _pe_reference,
        _pe_cases(hidden),
        mistakes=PE_MISTAKES,
        forbidden={
            reference_positions.sinusoidal_position_encoding: "llmcore.sinusoidal_position_encoding",
            llmcore.SinusoidalPositionalEncoding: "llmcore.SinusoidalPositionalEncoding",
        },
        output_names=("encoding",),
        fallback_hint="angles = pos / 10000^(2i/d_model) with pos as a column [n, 1] and 2i = arange(0, d_model, 2) "
        "as a row; PE[:, 0::2] = sin(angles), PE[:, 1::2] = cos(angles). Build every tensor in the requested dtype "
        "(float64 cases are compared to 1e-9, which a float32 computation cannot reach).",
    )


# --------------------------------------------------------------------------------------------------
# LayerNorm (T06)
# --------------------------------------------------------------------------------------------------


def _layer_norm_reference(x: Tensor, weight: Tensor, bias: Tensor, *, eps: float | None = None) -> Tensor:
    return reference_norms.layer_norm(x, weight, bias, 1e-5 if eps is None else eps)


def _layer_norm_variant(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    *,
    eps: float | None = None,
    eps_outside_root: bool = False,
    unbiased: bool = False,
    dim: int | None = -1,
    use_weight: bool = True,
    use_bias: bool = True,
) -> Tensor:
    """The reference with one knob turned (``dim=None``: statistics over every element at once)."""
    eps = 1e-5 if eps is None else eps
    dims = tuple(range(x.dim())) if dim is None else (dim,)
    mean = x.mean(dim=dims, keepdim=True)
    variance = x.var(dim=dims, keepdim=True, correction=1 if unbiased else 0)
    if eps_outside_root:
        normalised = (x - mean) / (variance.sqrt() + eps)
    else:
        normalised = (x - mean) / torch.sqrt(variance + eps)
    if use_weight:
        normalised = normalised * weight
    if use_bias:
        normalised = normalised + bias
    return normalised


def _layer_norm_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda x, weight, bias, **case_kwargs: _layer_norm_variant(x, weight, bias, **{**case_kwargs, **knobs})


LAYER_NORM_MISTAKES = [
    Mistake(
        "eps is missing: a token whose features are all equal divides 0 by 0",
        "add eps to the variance inside the square root: (x − mean) / torch.sqrt(var + self.eps).",
        output=_layer_norm_mistake(eps=0.0),
    ),
    Mistake(
        "eps is added outside the square root (√var + eps)",
        "the formula is (x − mean) / √(var + eps): add eps to the variance, then take the root.",
        output=_layer_norm_mistake(eps_outside_root=True),
    ),
    Mistake(
        "the variance is unbiased (divided by d − 1)",
        "LayerNorm uses the biased variance, the plain mean of the squared deviations: x.var(dim=-1, unbiased=False) "
        "or ((x − mean)²).mean(dim=-1). torch.var and torch.std divide by d − 1 by default.",
        output=_layer_norm_mistake(unbiased=True),
    ),
    Mistake(
        "unbiased standard deviation with eps outside the root ((x − mean) / (x.std(-1) + eps), as in some tutorials)",
        "x.std divides by d − 1, and eps belongs inside the root: (x − mean) / torch.sqrt(x.var(-1, unbiased=False) + eps).",
        output=_layer_norm_mistake(unbiased=True, eps_outside_root=True),
    ),
    Mistake(
        "the statistics are computed over the batch dimension (dim 0)",
        "LayerNorm normalises each token on its own, over its d_model features: mean and variance over dim=-1 "
        "with keepdim=True. (Normalising each feature over the batch is BatchNorm.)",
        output=_layer_norm_mistake(dim=0),
    ),
    Mistake(
        "the statistics are computed over the sequence dimension (dim -2)",
        "LayerNorm normalises each token on its own, over its d_model features: mean and variance over dim=-1.",
        output=_layer_norm_mistake(dim=-2),
    ),
    Mistake(
        "the statistics are computed over the whole tensor at once",
        "take the mean and variance per token: x.mean(dim=-1, keepdim=True), not x.mean().",
        output=_layer_norm_mistake(dim=None),
    ),
    Mistake(
        "the learned scale (weight) and shift (bias) are not applied",
        "finish with normalised * self.weight + self.bias: they let the model undo the normalisation where it helps.",
        output=_layer_norm_mistake(use_weight=False, use_bias=False),
    ),
    Mistake(
        "the learned scale (weight) is not applied",
        "multiply the normalised values by self.weight before adding self.bias.",
        output=_layer_norm_mistake(use_weight=False),
    ),
    Mistake(
        "the learned shift (bias) is not added",
        "add self.bias after multiplying by self.weight.",
        output=_layer_norm_mistake(use_bias=False),
    ),
]


def _layer_norm_cases(seed: int, hidden: bool) -> list[Case]:
    generator = _generator(seed)

    def tensors(shape: tuple, dtype: torch.dtype, spread: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        d_model = shape[-1]
        x = torch.randn(shape, generator=generator, dtype=dtype) * spread + 0.5
        weight = 1 + 0.5 * torch.randn(d_model, generator=generator, dtype=dtype)
        bias = 0.5 * torch.randn(d_model, generator=generator, dtype=dtype)
        return x, weight, bias

    constant_row = tensors((2, 3, 8), torch.float64)
    constant_row[0][1, 2] = 3.0  # batch row 1, token 2: all features equal, variance 0
    # Float64 first: there even eps's place is visible, so mistakes that differ only there are told apart.
    cases = [
        Case("x [B=2, L=5, d=4], float64, gradients of x, weight and bias (inputs 0, 1, 2)",
             tensors((2, 5, 4), torch.float64), check_gradients=True),
        Case("x [B=2, L=3, d=8], float32, random weight and bias", tensors((2, 3, 8), torch.float32)),
        Case("x [B=3, L=2, d=16] of small spread (std 0.003, variance close to eps), float64",
             tensors((3, 2, 16), torch.float64, spread=0.003)),
        Case("x [B=2, L=3, d=8], float64, one token whose features are all equal (variance 0)", constant_row),
        Case("x [B=1, L=4, d=32], float32, constructed with eps=0.1",
             tensors((1, 4, 32), torch.float32), {"eps": 0.1}),
    ]
    if hidden:
        cases += [
            Case("x [B=4, L=7, d=64], float64, gradients", tensors((4, 7, 64), torch.float64), check_gradients=True),
            Case("x [N=5, d=3] (no sequence dim), float32", tensors((5, 3), torch.float32)),
            Case("x [B=2, H=2, L=3, d=10] (4 dims), float64, eps=1e-3, gradients",
                 tensors((2, 2, 3, 10), torch.float64, spread=0.05), {"eps": 1e-3}, check_gradients=True),
            Case("x [B=1, L=1, d=512], float32", tensors((1, 1, 512), torch.float32)),
        ]
    return cases


def check_layer_norm(cls: type, *, hidden: bool = False) -> None:
    """Check ``cls(d_model, eps=1e-5)`` with parameters ``weight``, ``bias`` and ``forward(x [..., d]) -> [..., d]``
    against llmcore.layer_norm (SYLLABUS T06). Weight and bias are random and passed in as inputs
    (``torch.func.functional_call``), so their gradients are compared too."""
    _require_class("LayerNorm", cls)

    def run_learner(x: Tensor, weight: Tensor, bias: Tensor, *, eps: float | None = None) -> Tensor:
        d_model = x.shape[-1]
        module = cls(d_model) if eps is None else cls(d_model, eps=eps)
        load_reference_weights("LayerNorm", module, llmcore.LayerNorm(d_model))
        return functional_call(module, {"weight": weight, "bias": bias}, (x,))

    return check_function(
        "LayerNorm",
        run_learner,
        _layer_norm_reference,
        _layer_norm_cases(seed=71 if hidden else 70, hidden=hidden),
        mistakes=LAYER_NORM_MISTAKES,
        forbidden={
            llmcore.LayerNorm: "llmcore.LayerNorm",
            reference_norms.layer_norm: "llmcore.layer_norm",
            nn.LayerNorm: "torch.nn.LayerNorm",
            F.layer_norm: "torch.nn.functional.layer_norm",
            torch.layer_norm: "torch.layer_norm",
            torch.native_layer_norm: "torch.native_layer_norm",
        },
        output_names=("normalised",),
        fallback_hint="mean and biased variance over the last dim (keepdim=True); "
        "(x − mean) / sqrt(var + eps) * weight + bias.",
    )


# --------------------------------------------------------------------------------------------------
# Add & Norm (T06)
# --------------------------------------------------------------------------------------------------


def _add_and_norm_reference(x: Tensor, sublayer_output: Tensor, norm: nn.Module) -> Tensor:
    return norm(x + sublayer_output)


ADD_AND_NORM_MISTAKES = [
    Mistake(
        "pre-norm instead of post-norm: x + norm(sublayer_output)",
        "the 2017 Transformer adds first and normalises the sum: norm(x + sublayer_output). (Pre-norm, used from GPT-2 "
        "on, normalises the sublayer's *input*, which this function does not see.)",
        output=lambda x, sublayer_output, norm: x + norm(sublayer_output),
    ),
    Mistake(
        "the residual connection is missing: norm(sublayer_output)",
        "add the sublayer's input back before normalising: norm(x + sublayer_output).",
        output=lambda x, sublayer_output, norm: norm(sublayer_output),
    ),
    Mistake(
        "the norm is not applied: x + sublayer_output",
        "\"Add & Norm\" does both: return norm(x + sublayer_output).",
        output=lambda x, sublayer_output, norm: x + sublayer_output,
    ),
    Mistake(
        "only x is normalised before the sum: norm(x) + sublayer_output",
        "normalise the sum of the two: norm(x + sublayer_output).",
        output=lambda x, sublayer_output, norm: norm(x) + sublayer_output,
    ),
]


def _random_layer_norm(d_model: int, generator: torch.Generator, dtype: torch.dtype) -> llmcore.LayerNorm:
    """llmcore's LayerNorm with a random weight and bias, so that where the norm sits changes the result."""
    norm = llmcore.LayerNorm(d_model).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(d_model, generator=generator, dtype=dtype))
        norm.bias.copy_(0.5 * torch.randn(d_model, generator=generator, dtype=dtype))
    return norm


def _add_and_norm_cases(seed: int, hidden: bool) -> list[Case]:
    generator = _generator(seed)

    def inputs(shape: tuple, dtype: torch.dtype) -> tuple[Tensor, Tensor, nn.Module]:
        x = torch.randn(shape, generator=generator, dtype=dtype)
        sublayer_output = 2 * torch.randn(shape, generator=generator, dtype=dtype)
        return x, sublayer_output, _random_layer_norm(shape[-1], generator, dtype)

    cases = [
        Case("x and sublayer_output [B=2, L=3, d=8], float32, llmcore.LayerNorm with random weight and bias",
             inputs((2, 3, 8), torch.float32)),
        Case("[B=1, L=5, d=16], float64, gradients of x and sublayer_output", inputs((1, 5, 16), torch.float64),
             check_gradients=True),
        Case("[B=3, L=2, d=4], float64", inputs((3, 2, 4), torch.float64)),
    ]
    if hidden:
        cases += [
            Case("[B=2, L=7, d=64], float64, gradients", inputs((2, 7, 64), torch.float64), check_gradients=True),
            Case("[B=1, L=1, d=32], float32", inputs((1, 1, 32), torch.float32)),
        ]
    return cases


def check_add_and_norm(fn: Callable[[Tensor, Tensor, nn.Module], Tensor], *, hidden: bool = False) -> None:
    """Check ``fn(x, sublayer_output, norm) -> norm(x + sublayer_output)``, the post-norm residual (T06)."""
    return check_function(
        "add_and_norm",
        fn,
        _add_and_norm_reference,
        _add_and_norm_cases(seed=81 if hidden else 80, hidden=hidden),
        mistakes=ADD_AND_NORM_MISTAKES,
        forbidden={reference_blocks.residual: "llmcore.residual"},
        output_names=("output",),
        fallback_hint="return norm(x + sublayer_output).",
    )


# --------------------------------------------------------------------------------------------------
# Position-wise feed-forward network (T07)
# --------------------------------------------------------------------------------------------------


def _reference_ffn(d_model: int, d_ff: int, seed: int, dtype: torch.dtype) -> llmcore.FeedForward:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = llmcore.FeedForward(d_model, d_ff)
    return module.to(dtype)


def _ffn_reference(x: Tensor, *, d_ff: int, seed: int) -> Tensor:
    return _reference_ffn(x.shape[-1], d_ff, seed, x.dtype)(x)


def _ffn_variant(x: Tensor, *, d_ff: int, seed: int, hidden_act=F.relu, output_act=None) -> Tensor:
    module = _reference_ffn(x.shape[-1], d_ff, seed, x.dtype)
    hidden = module.up_proj(x)
    if hidden_act is not None:
        hidden = hidden_act(hidden)
    out = module.down_proj(hidden)
    return out if output_act is None else output_act(out)


FFN_MISTAKES = [
    Mistake(
        "the ReLU is missing",
        "apply torch.relu to the output of up_proj: without a non-linearity the two layers collapse into one linear map.",
        output=lambda x, **kw: _ffn_variant(x, **kw, hidden_act=None),
    ),
    Mistake(
        "a ReLU is also applied after the second layer",
        "the output of down_proj is returned as it is (it goes into the residual sum, where negative values are needed): "
        "down_proj(relu(up_proj(x))).",
        output=lambda x, **kw: _ffn_variant(x, **kw, output_act=F.relu),
    ),
    Mistake(
        "the ReLU is applied after the second layer instead of the first",
        "the non-linearity sits between the two layers: down_proj(relu(up_proj(x))).",
        output=lambda x, **kw: _ffn_variant(x, **kw, hidden_act=None, output_act=F.relu),
    ),
    Mistake(
        "GELU is used instead of ReLU",
        "the 2017 model uses ReLU, max(0, x); GELU came with GPT-1 and BERT (2018).",
        output=lambda x, **kw: _ffn_variant(x, **kw, hidden_act=F.gelu),
    ),
]


def _ffn_cases(seed: int, hidden: bool) -> list[Case]:
    generator = _generator(seed)

    def x(shape: tuple, dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

    def config(d_ff: int, offset: int) -> dict:
        return dict(d_ff=d_ff, seed=seed * 100 + offset)

    cases = [
        Case("x [B=2, L=3, d_model=8], d_ff=32, float32", (x((2, 3, 8), torch.float32),), config(32, 1)),
        Case("x [B=1, L=5, d_model=16], d_ff=64, float64, gradients", (x((1, 5, 16), torch.float64),), config(64, 2),
             check_gradients=True),
        Case("x [N=6, d_model=4] (no sequence dim), d_ff=16, float32", (x((6, 4), torch.float32),), config(16, 3)),
    ]
    if hidden:
        cases += [
            Case("x [B=2, L=7, d_model=64], d_ff=256, float64, gradients", (x((2, 7, 64), torch.float64),),
                 config(256, 4), check_gradients=True),
            Case("x [B=2, H=2, L=3, d_model=6] (4 dims), d_ff=10, float32", (x((2, 2, 3, 6), torch.float32),),
                 config(10, 5)),
            Case("x [B=1, L=1, d_model=12], d_ff=12 (d_ff = d_model), float64", (x((1, 1, 12), torch.float64),),
                 config(12, 6)),
        ]
    return cases


def check_feed_forward(cls: type, *, hidden: bool = False) -> None:
    """Check ``cls(d_model, d_ff)`` with ``up_proj``, ``down_proj`` and ``forward(x [..., d_model]) -> [..., d_model]``
    against llmcore.FeedForward (SYLLABUS T07)."""
    _require_class("FeedForward", cls)

    def run_learner(x: Tensor, *, d_ff: int, seed: int) -> Tensor:
        d_model = x.shape[-1]
        module = cls(d_model, d_ff)
        load_reference_weights("FeedForward", module, _reference_ffn(d_model, d_ff, seed, torch.float32))
        return module.to(x.dtype).eval()(x)

    return check_function(
        "FeedForward",
        run_learner,
        _ffn_reference,
        _ffn_cases(seed=91 if hidden else 90, hidden=hidden),
        mistakes=FFN_MISTAKES,
        forbidden={llmcore.FeedForward: "llmcore.FeedForward"},
        output_names=("output",),
        fallback_hint="self.down_proj(torch.relu(self.up_proj(x))), with up_proj = nn.Linear(d_model, d_ff) and "
        "down_proj = nn.Linear(d_ff, d_model).",
    )


# --------------------------------------------------------------------------------------------------
# Encoder and decoder blocks (T08)
# --------------------------------------------------------------------------------------------------


def _randomise_norms(block: nn.Module) -> None:
    """Random LayerNorm weights and biases, so that a norm in the wrong place changes the output."""
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, llmcore.LayerNorm):
                module.weight.copy_(1 + 0.3 * torch.randn_like(module.weight))
                module.bias.copy_(0.3 * torch.randn_like(module.bias))


def _reference_block(kind: type, d_model: int, n_heads: int, d_ff: int, seed: int, dtype: torch.dtype) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = kind(d_model, n_heads, d_ff)
        _randomise_norms(block)
    return block.to(dtype)


def _sublayer(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module, *, norm_first: bool, residual: bool) -> Tensor:
    """Post-norm ``norm(x + sublayer(x))`` or pre-norm ``x + sublayer(norm(x))``, with or without the residual."""
    if norm_first:
        out = sublayer(norm(x))
        return x + out if residual else out
    out = sublayer(x)
    return norm(x + out if residual else out)


def _encoder_reference(x: Tensor, mask: Tensor | None, *, d_model: int, n_heads: int, d_ff: int, seed: int) -> Tensor:
    return _reference_block(llmcore.EncoderBlock, d_model, n_heads, d_ff, seed, x.dtype)(x, mask)


def _encoder_variant(
    x: Tensor,
    mask: Tensor | None,
    *,
    d_model: int,
    n_heads: int,
    d_ff: int,
    seed: int,
    norm_first: bool = False,
    no_residual: tuple[str, ...] = (),
    use_mask: bool = True,
    order: tuple[str, ...] = ("self_attn", "ffn"),
    swap_norms: bool = False,
) -> Tensor:
    """The reference with one knob turned, computed with the reference block's weights."""
    block = _reference_block(llmcore.EncoderBlock, d_model, n_heads, d_ff, seed, x.dtype)
    attention_mask = mask if use_mask else None
    norms = {"self_attn": block.self_attn_norm, "ffn": block.ffn_norm}
    if swap_norms:
        norms = {"self_attn": block.ffn_norm, "ffn": block.self_attn_norm}
    sublayers = {"self_attn": lambda h: block.self_attn(h, mask=attention_mask), "ffn": block.ffn}
    for name in order:
        x = _sublayer(x, sublayers[name], norms[name], norm_first=norm_first, residual=name not in no_residual)
    return x


def _encoder_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda x, mask, **config: _encoder_variant(x, mask, **config, **knobs)


ENCODER_MISTAKES = [
    Mistake(
        "pre-norm wiring: x + sublayer(norm(x))",
        "the 2017 block is post-norm: x = self.self_attn_norm(x + self.self_attn(x, mask=mask)), then "
        "x = self.ffn_norm(x + self.ffn(x)). Pre-norm came later (GPT-2).",
        output=_encoder_mistake(norm_first=True),
    ),
    Mistake(
        "the residual connection around self-attention is missing",
        "add the attention's input back before the norm: self.self_attn_norm(x + self.self_attn(x, mask=mask)).",
        output=_encoder_mistake(no_residual=("self_attn",)),
    ),
    Mistake(
        "the residual connection around the feed-forward network is missing",
        "add the FFN's input back before the norm: self.ffn_norm(x + self.ffn(x)).",
        output=_encoder_mistake(no_residual=("ffn",)),
    ),
    Mistake(
        "the mask is not passed to self-attention",
        "call self.self_attn(x, mask=mask): without it every token attends to the padding.",
        output=_encoder_mistake(use_mask=False),
    ),
    Mistake(
        "the feed-forward network comes before self-attention",
        "the order is self-attention (with its Add & Norm), then the FFN (with its Add & Norm).",
        output=_encoder_mistake(order=("ffn", "self_attn")),
    ),
    Mistake(
        "the two norms are swapped (ffn_norm after attention, self_attn_norm after the FFN)",
        "each sublayer has its own norm: self_attn_norm after self-attention, ffn_norm after the FFN.",
        output=_encoder_mistake(swap_norms=True),
    ),
]


def _lengths_mask(lengths: list[int], length: int) -> Tensor:
    """Padding mask ``[B, 1, 1, S]``: True at the first ``lengths[b]`` positions of row b."""
    return (torch.arange(length) < torch.tensor(lengths).view(-1, 1)).view(len(lengths), 1, 1, length)


def _causal(length: int) -> Tensor:
    return torch.ones(length, length, dtype=torch.bool).tril()


def _block_config(seed: int, offset: int, d_model: int, n_heads: int, d_ff: int) -> dict:
    return dict(d_model=d_model, n_heads=n_heads, d_ff=d_ff, seed=seed * 100 + offset)


def _encoder_cases(seed: int, hidden: bool) -> list[Case]:
    generator = _generator(seed)

    def x(shape: tuple, dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

    cases = [
        Case("x [B=2, S=5, d_model=16], n_heads=4, d_ff=32, float32, padding mask [B, 1, 1, S] with lengths 5 and 3",
             (x((2, 5, 16), torch.float32), _lengths_mask([5, 3], 5)), _block_config(seed, 1, 16, 4, 32)),
        Case("x [B=1, S=6, d_model=24], n_heads=3, d_ff=48, float64, no mask, gradients",
             (x((1, 6, 24), torch.float64), None), _block_config(seed, 2, 24, 3, 48), check_gradients=True),
        Case("x [B=3, S=4, d_model=8], n_heads=2, d_ff=16, float64, padding lengths 4, 1 and 2, gradients",
             (x((3, 4, 8), torch.float64), _lengths_mask([4, 1, 2], 4)), _block_config(seed, 3, 8, 2, 16),
             check_gradients=True),
    ]
    if hidden:
        cases += [
            Case("x [B=2, S=9, d_model=64], n_heads=8, d_ff=256, float32, padding lengths 9 and 6",
                 (x((2, 9, 64), torch.float32), _lengths_mask([9, 6], 9)), _block_config(seed, 4, 64, 8, 256)),
            Case("x [B=2, S=1, d_model=12], n_heads=1, d_ff=24, float64, gradients",
                 (x((2, 1, 12), torch.float64), None), _block_config(seed, 5, 12, 1, 24), check_gradients=True),
            Case("x [B=1, S=5, d_model=20], n_heads=5, d_ff=40, float64, a causal mask [S, S]",
                 (x((1, 5, 20), torch.float64), _causal(5)), _block_config(seed, 6, 20, 5, 40)),
        ]
    return cases


def check_encoder_block(cls: type, *, hidden: bool = False) -> None:
    """Check ``cls(d_model, n_heads, d_ff)`` with ``self_attn, self_attn_norm, ffn, ffn_norm`` and
    ``forward(x [B, S, d_model], mask=None) -> [B, S, d_model]`` against llmcore.EncoderBlock (T08).

    The module gets llmcore's weights (LayerNorms with random weight and bias), is cast to the case's
    dtype, put in eval mode and called as ``module(x, mask=mask)``.
    """
    _require_class("EncoderBlock", cls)

    def run_learner(x: Tensor, mask: Tensor | None, *, d_model: int, n_heads: int, d_ff: int, seed: int) -> Tensor:
        module = cls(d_model, n_heads, d_ff)
        reference = _reference_block(llmcore.EncoderBlock, d_model, n_heads, d_ff, seed, torch.float32)
        load_reference_weights("EncoderBlock", module, reference)
        return module.to(x.dtype).eval()(x, mask=mask)

    return check_function(
        "EncoderBlock",
        run_learner,
        _encoder_reference,
        _encoder_cases(seed=101 if hidden else 100, hidden=hidden),
        mistakes=ENCODER_MISTAKES,
        forbidden={
            llmcore.EncoderBlock: "llmcore.EncoderBlock",
            nn.TransformerEncoderLayer: "torch.nn.TransformerEncoderLayer",
            nn.TransformerEncoder: "torch.nn.TransformerEncoder",
        },
        output_names=("output",),
        fallback_hint="x = self.self_attn_norm(x + self.self_attn(x, mask=mask)); return self.ffn_norm(x + self.ffn(x)).",
    )


def _decoder_reference(
    x: Tensor, memory: Tensor, self_mask: Tensor | None, cross_mask: Tensor | None, *, d_model: int, n_heads: int,
    d_ff: int, seed: int,
) -> Tensor:
    block = _reference_block(llmcore.DecoderBlock, d_model, n_heads, d_ff, seed, x.dtype)
    return block(x, memory, self_mask, cross_mask)


def _decoder_variant(
    x: Tensor,
    memory: Tensor,
    self_mask: Tensor | None,
    cross_mask: Tensor | None,
    *,
    d_model: int,
    n_heads: int,
    d_ff: int,
    seed: int,
    norm_first: bool = False,
    no_residual: tuple[str, ...] = (),
    order: tuple[str, ...] = ("self_attn", "cross_attn", "ffn"),
    cross_source: str = "memory",
    swap_masks: bool = False,
    use_self_mask: bool = True,
) -> Tensor:
    """The reference with one knob turned, computed with the reference block's weights.

    ``cross_source``: "memory" (right), "x" (keys and values from the decoder stream), or "queries_from_memory"
    (the arguments of cross-attention swapped).
    """
    block = _reference_block(llmcore.DecoderBlock, d_model, n_heads, d_ff, seed, x.dtype)
    if swap_masks:
        self_mask, cross_mask = cross_mask, self_mask
    if not use_self_mask:
        self_mask = None
    cross = {
        "memory": lambda h: block.cross_attn(h, memory, mask=cross_mask),
        "x": lambda h: block.cross_attn(h, mask=cross_mask),
        "queries_from_memory": lambda h: block.cross_attn(memory, h, mask=cross_mask),
    }[cross_source]
    sublayers = {
        "self_attn": (lambda h: block.self_attn(h, mask=self_mask), block.self_attn_norm),
        "cross_attn": (cross, block.cross_attn_norm),
        "ffn": (block.ffn, block.ffn_norm),
    }
    for name in order:
        sublayer, norm = sublayers[name]
        x = _sublayer(x, sublayer, norm, norm_first=norm_first, residual=name not in no_residual)
    return x


def _decoder_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda x, memory, self_mask, cross_mask, **config: _decoder_variant(
        x, memory, self_mask, cross_mask, **config, **knobs
    )


DECODER_MISTAKES = [
    Mistake(
        "pre-norm wiring: x + sublayer(norm(x))",
        "the 2017 block is post-norm: each sublayer is followed by its norm of the sum, "
        "x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask)), and likewise for cross-attention and the FFN.",
        output=_decoder_mistake(norm_first=True),
    ),
    Mistake(
        "the residual connection around self-attention is missing",
        "self.self_attn_norm(x + self.self_attn(x, mask=self_mask)): add the input back before the norm.",
        output=_decoder_mistake(no_residual=("self_attn",)),
    ),
    Mistake(
        "the residual connection around cross-attention is missing",
        "self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask)): add the input back before the norm.",
        output=_decoder_mistake(no_residual=("cross_attn",)),
    ),
    Mistake(
        "the residual connection around the feed-forward network is missing",
        "self.ffn_norm(x + self.ffn(x)): add the input back before the norm.",
        output=_decoder_mistake(no_residual=("ffn",)),
    ),
    Mistake(
        "cross-attention is skipped: the block never reads the encoder output",
        "between self-attention and the FFN, x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask)).",
        output=_decoder_mistake(order=("self_attn", "ffn")),
    ),
    Mistake(
        "cross-attention takes its keys and values from x instead of memory",
        "pass the encoder output as the context: self.cross_attn(x, memory, mask=cross_mask). "
        "Queries come from the decoder, keys and values from the source sentence.",
        output=_decoder_mistake(cross_source="x"),
    ),
    Mistake(
        "cross-attention takes its queries from memory and its keys from x (arguments swapped)",
        "the decoder asks, the source answers: self.cross_attn(x, memory, mask=cross_mask), queries from x.",
        output=_decoder_mistake(cross_source="queries_from_memory"),
    ),
    Mistake(
        "the masks are swapped: self_mask goes to cross-attention and cross_mask to self-attention",
        "self-attention over the target uses self_mask (causal AND target padding); cross-attention uses cross_mask "
        "(source padding).",
        output=_decoder_mistake(swap_masks=True),
    ),
    Mistake(
        "the causal self_mask is not used: the decoder sees future target tokens",
        "call self.self_attn(x, mask=self_mask); without the causal mask, training would let each position copy the "
        "token it has to predict.",
        output=_decoder_mistake(use_self_mask=False),
    ),
    Mistake(
        "the feed-forward network comes before cross-attention",
        "the order is self-attention, cross-attention, FFN, each followed by its Add & Norm.",
        output=_decoder_mistake(order=("self_attn", "ffn", "cross_attn")),
    ),
    Mistake(
        "cross-attention comes before self-attention",
        "the order is self-attention, cross-attention, FFN, each followed by its Add & Norm.",
        output=_decoder_mistake(order=("cross_attn", "self_attn", "ffn")),
    ),
]


def _decoder_cases(seed: int, hidden: bool) -> list[Case]:
    generator = _generator(seed)

    def x(shape: tuple, dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

    def decoder_mask(lengths: list[int], length: int) -> Tensor:
        return _causal(length) & _lengths_mask(lengths, length)  # [B, 1, T, T]

    # The first case has as many target as source positions, so that code attending to the wrong sequence or
    # with the masks swapped still runs, and the mistake is named instead of a shape error.
    cases = [
        Case("x [B=2, T=5, d_model=16], memory [B, S=5, d_model], n_heads=4, d_ff=32, float32; "
             "self_mask = causal AND target padding (lengths 5, 3) [B, 1, T, T]; cross_mask = source padding "
             "(lengths 5, 2) [B, 1, 1, S]",
             (x((2, 5, 16), torch.float32), x((2, 5, 16), torch.float32), decoder_mask([5, 3], 5),
              _lengths_mask([5, 2], 5)),
             _block_config(seed, 1, 16, 4, 32)),
        Case("x [B=2, T=4], memory [B, S=7], d_model=8, n_heads=2, d_ff=16, float64; self_mask = causal AND padding "
             "(lengths 4, 2); cross_mask = source padding (lengths 7, 3); gradients of x and memory",
             (x((2, 4, 8), torch.float64), x((2, 7, 8), torch.float64), decoder_mask([4, 2], 4),
              _lengths_mask([7, 3], 7)),
             _block_config(seed, 2, 8, 2, 16), check_gradients=True),
        Case("x [B=1, T=6], memory [B, S=3], d_model=24, n_heads=3, d_ff=48, float64; self_mask = causal [T, T]; "
             "cross_mask = None; gradients",
             (x((1, 6, 24), torch.float64), x((1, 3, 24), torch.float64), _causal(6), None),
             _block_config(seed, 3, 24, 3, 48), check_gradients=True),
    ]
    if hidden:
        left_padded = _causal(4) & (torch.arange(4) >= torch.tensor([0, 2]).view(2, 1)).view(2, 1, 1, 4)
        cases += [
            Case("x [B=2, T=1] (one decoding step), memory [B, S=9], d_model=64, n_heads=8, d_ff=256, float32; "
                 "self_mask [1, 1]; cross_mask: source lengths 9 and 4",
                 (x((2, 1, 64), torch.float32), x((2, 9, 64), torch.float32), _causal(1), _lengths_mask([9, 4], 9)),
                 _block_config(seed, 4, 64, 8, 256)),
            Case("x [B=2, T=4] left-padded (row 1 starts with 2 pads, whose queries see no key), memory [B, S=6], "
                 "d_model=12, n_heads=2, d_ff=24, float64; cross_mask: lengths 6 and 5; gradients",
                 (x((2, 4, 12), torch.float64), x((2, 6, 12), torch.float64), left_padded, _lengths_mask([6, 5], 6)),
                 _block_config(seed, 5, 12, 2, 24), check_gradients=True),
            Case("x [B=3, T=5], memory [B, S=5], d_model=20, n_heads=5, d_ff=40, float64; causal self_mask [T, T]; "
                 "cross_mask: lengths 5, 1, 3",
                 (x((3, 5, 20), torch.float64), x((3, 5, 20), torch.float64), _causal(5), _lengths_mask([5, 1, 3], 5)),
                 _block_config(seed, 6, 20, 5, 40)),
        ]
    return cases


def check_decoder_block(cls: type, *, hidden: bool = False) -> None:
    """Check ``cls(d_model, n_heads, d_ff)`` with ``self_attn, self_attn_norm, cross_attn, cross_attn_norm, ffn,
    ffn_norm`` and ``forward(x [B, T, d], memory [B, S, d], self_mask=None, cross_mask=None) -> [B, T, d]``
    against llmcore.DecoderBlock (T08).

    The module gets llmcore's weights (LayerNorms with random weight and bias), is cast to the case's
    dtype, put in eval mode and called as ``module(x, memory, self_mask=self_mask, cross_mask=cross_mask)``.
    """
    _require_class("DecoderBlock", cls)

    def run_learner(
        x: Tensor, memory: Tensor, self_mask: Tensor | None, cross_mask: Tensor | None, *, d_model: int,
        n_heads: int, d_ff: int, seed: int,
    ) -> Tensor:
        module = cls(d_model, n_heads, d_ff)
        reference = _reference_block(llmcore.DecoderBlock, d_model, n_heads, d_ff, seed, torch.float32)
        load_reference_weights("DecoderBlock", module, reference)
        return module.to(x.dtype).eval()(x, memory, self_mask=self_mask, cross_mask=cross_mask)

    return check_function(
        "DecoderBlock",
        run_learner,
        _decoder_reference,
        _decoder_cases(seed=111 if hidden else 110, hidden=hidden),
        mistakes=DECODER_MISTAKES,
        forbidden={
            llmcore.DecoderBlock: "llmcore.DecoderBlock",
            nn.TransformerDecoderLayer: "torch.nn.TransformerDecoderLayer",
            nn.TransformerDecoder: "torch.nn.TransformerDecoder",
        },
        output_names=("output",),
        fallback_hint="three post-norm sublayers in order: self-attention with self_mask, cross-attention to memory "
        "with cross_mask, the FFN; each as norm(x + sublayer(x)).",
    )
