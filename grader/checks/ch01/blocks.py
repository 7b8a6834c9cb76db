"""Exercises of notebook 02_building_blocks: embeddings, positions, LayerNorm, Add & Norm, FFN, encoder and decoder blocks.

Each exercise is declared once (:mod:`grader.checks.spec`) and registered; ``check_<name>`` is its
``check``. Every mistake is "the reference with one knob turned" (a ``*_variant`` function below) or
a symptom recognised in the output. Module exercises are built with the skeleton's constructor
arguments (``Case.init``) and get llmcore's weights by name; ``TokenEmbedding`` and ``LayerNorm``
receive their parameters as inputs (``Case.params``, through ``torch.func.functional_call``), so
that the gradients of the parameters are compared too.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from llmcore import blocks as reference_blocks
from llmcore import norms as reference_norms
from llmcore import positions as reference_positions

from ..cases import CaseRandom, causal, left_lengths_mask, lengths_mask
from ..framework import Case, Mistake, tolerances
from ..spec import Exercise, ModuleExercise, register

__all__ = [
    "TOKEN_EMBEDDING",
    "SINUSOIDAL_POSITION_ENCODING",
    "LAYER_NORM",
    "ADD_AND_NORM",
    "FEED_FORWARD",
    "ENCODER_BLOCK",
    "DECODER_BLOCK",
    "check_token_embedding",
    "check_sinusoidal_position_encoding",
    "check_layer_norm",
    "check_add_and_norm",
    "check_feed_forward",
    "check_encoder_block",
    "check_decoder_block",
]


def _random_norm_parameters(random: CaseRandom, d_model: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """A LayerNorm weight around 1 and bias around 0, so that where a norm sits changes the result."""
    return random.tensor((d_model,), dtype, scale=0.5, shift=1.0), random.tensor((d_model,), dtype, scale=0.5)


# --------------------------------------------------------------------------------------------------
# Token embedding (SYLLABUS T01)
# --------------------------------------------------------------------------------------------------


def _embedding_variant(module: nn.Module, ids: Tensor, *, scale: str = "sqrt_d") -> Tensor:
    """The reference with one knob turned: how the looked-up rows are scaled."""
    weight = module.weight
    vocab_size, d_model = weight.shape
    factor = {"sqrt_d": math.sqrt(d_model), "none": 1.0, "d": float(d_model), "inv_sqrt_d": 1 / math.sqrt(d_model),
              "sqrt_vocab": math.sqrt(vocab_size), "half_d": d_model / 2}
    return weight[ids] * factor[scale]


def _embedding_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda build, ids: _embedding_variant(build(), ids, **knobs)


def _embedding_columns(build: Callable[[], nn.Module], ids: Tensor) -> Tensor:
    weight = build().weight
    return weight[:, ids] * math.sqrt(weight.shape[1])


EMBEDDING_MISTAKES = [
    Mistake(
        "no_scale",
        "the embeddings are not multiplied by √d_model",
        "the paper scales the looked-up vectors up by the square root of d_model (section 3.4), so that they are "
        "about as large as the position encoding added to them.",
        "the paper multiplies the looked-up vectors by √d_model (section 3.4): return self.weight[ids] * math.sqrt(d_model).",
        output=_embedding_mistake(scale="none"),
    ),
    Mistake(
        "times_d_model",
        "the embeddings are multiplied by d_model instead of √d_model",
        "the scale brings entries of standard deviation 1/√d_model to about 1, which takes the square root of "
        "d_model, not d_model itself.",
        "the factor is the square root: math.sqrt(d_model).",
        output=_embedding_mistake(scale="d"),
    ),
    Mistake(
        "divided_by_sqrt",
        "the embeddings are divided by √d_model instead of multiplied",
        "the table starts small, so the scale has to enlarge the looked-up vectors, not shrink them further.",
        "the embedding table starts small (std 1/√d_model); multiplying by √d_model brings its entries to about 1, "
        "the size of the position encoding added next.",
        output=_embedding_mistake(scale="inv_sqrt_d"),
    ),
    Mistake(
        "wrong_axis",
        "the ids index the wrong axis of the table (weight[:, ids])",
        "the table holds one row per token, so a token id selects a row, and the result gains d_model as its last "
        "dimension.",
        "weight is [vocab_size, d_model]: one row per token. Select rows: self.weight[ids].",
        output=_embedding_columns,
    ),
    Mistake(
        "sqrt_vocab_size",
        "the embeddings are multiplied by √vocab_size instead of √d_model",
        "the factor depends on the width of the vectors, d_model (the table's second dimension), not on how many "
        "tokens the vocabulary has.",
        "multiply by math.sqrt(d_model), the length of each row; vocab_size is the number of rows.",
        output=_embedding_mistake(scale="sqrt_vocab"),
    ),
    Mistake(
        "power_precedence",
        "the factor is d_model ** 1/2, which Python reads as (d_model ** 1) / 2 = d_model / 2",
        "** binds tighter than /, so an exponent written as a fraction needs parentheses.",
        "write math.sqrt(d_model), d_model ** 0.5 or d_model ** (1 / 2): d_model ** 1/2 is d_model / 2.",
        output=_embedding_mistake(scale="half_d"),
    ),
]


def _embedding_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, ids: Tensor, vocab_size: int, d_model: int, dtype: torch.dtype,
             gradients: bool = False) -> Case:
        table = random.tensor((vocab_size, d_model), dtype, scale=1 / math.sqrt(d_model))
        return Case(description, (ids,), init={"vocab_size": vocab_size, "d_model": d_model},
                    params={"weight": table}, dtype=dtype, check_gradients=gradients)

    cases = [
        case("vocab_size=10, d_model=16, ids [B=2, L=5], float32", random.ids(10, (2, 5)), 10, 16, torch.float32),
        case("vocab_size=7, d_model=9, ids [B=3, L=4] with repeated tokens, float64, gradient of the table "
             "(the parameter weight) checked",
             torch.tensor([[1, 1, 2, 6], [0, 1, 1, 1], [6, 5, 4, 3]]), 7, 9, torch.float64, gradients=True),
        case("vocab_size=50, d_model=12, ids [L=8] (no batch dim) including the first and last ids 0 and 49, float32",
             torch.tensor([0, 49, 3, 3, 17, 0, 49, 8]), 50, 12, torch.float32),
    ]
    if hidden:
        cases += [
            case("vocab_size=37, d_model=512, ids [B=2, L=3], float64, gradients", random.ids(37, (2, 3)), 37, 512,
                 torch.float64, gradients=True),
            case("vocab_size=100, d_model=64, ids [B=1, L=1], float32", random.ids(100, (1, 1)), 100, 64, torch.float32),
            case("vocab_size=5, d_model=6, ids [B=2, H=2, L=3] (extra leading dims), float64", random.ids(5, (2, 2, 3)),
                 5, 6, torch.float64),
        ]
    return cases


# cls(vocab_size, d_model) with parameter weight [vocab_size, d_model] and forward(ids [...]) -> [..., d_model].
TOKEN_EMBEDDING = register(ModuleExercise(
    id="token_embedding",
    title="TokenEmbedding",
    syllabus=("T01",),
    reference=llmcore.TokenEmbedding,
    cases=_embedding_cases,
    mistakes=EMBEDDING_MISTAKES,
    forbidden={
        llmcore.TokenEmbedding: "llmcore.TokenEmbedding",
        nn.Embedding: "torch.nn.Embedding",
        F.embedding: "torch.nn.functional.embedding",
        torch.embedding: "torch.embedding",
    },
    forbidden_ops={
        "embedding": "PyTorch's embedding lookup (aten::embedding)",
        "embedding_dense_backward": "PyTorch's embedding lookup (aten::embedding_dense_backward)",
    },
    delegation=llmcore.TokenEmbedding,
    output_names=("embeddings",),
    fallback_hint="look up the rows with self.weight[ids] and multiply them by math.sqrt(d_model).",
))
check_token_embedding = TOKEN_EMBEDDING.check


# --------------------------------------------------------------------------------------------------
# Sinusoidal position encoding (SYLLABUS T05)
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
    first_position: int = 0,
    multiply: bool = False,
    no_parentheses: bool = False,
) -> Tensor:
    """The reference with one knob turned, computed in float64 like the reference.

    ``exponent``: "2i" (right), "i" (the pair index), "4i" (2i doubled once more), "own_index" (j/d_model for
    every dimension j); ``multiply``: pos · base^(2i/d) instead of pos / base^(2i/d); ``no_parentheses``:
    pos / base^(2i) / d_model.
    """
    position = torch.arange(first_position, first_position + n_positions, dtype=torch.float64).unsqueeze(1)  # [n, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)                # [d/2]: 0, 2, 4, …
    if exponent == "i":  # the pair index i = 0, 1, 2, … where the paper has 2i
        two_i = two_i / 2
    elif exponent == "4i":  # 2 * torch.arange(0, d_model, 2): the 2 of 2i counted twice
        two_i = two_i * 2
    if swap_pos_and_2i:
        angles = two_i / base ** (position / d_model)
    elif multiply:
        angles = position * base ** (two_i / d_model)
    elif no_parentheses:
        angles = position / base ** two_i / d_model
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


def _pe_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda n, d, dtype=torch.float32: _pe_variant(n, d, dtype, **knobs)


def _other_base(got: object, expected: object) -> bool:
    """Right layout, wrong base: fit the base from PE[1, 2] = sin(base^(-2/d)) and compare with it."""
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)) or got.shape != expected.shape:
        return False
    n_positions, d_model = expected.shape
    if n_positions < 2 or d_model < 4 or not got.is_floating_point():
        return False
    frequency = torch.asin(got[1, 2].detach().double().clamp(-1, 1)).item()  # = base^(-2/d_model)
    if not 0 < frequency < 1:
        return False
    base = frequency ** (-d_model / 2)
    if abs(base / 10000.0 - 1) < 1e-3:
        return False
    fitted = _pe_variant(n_positions, d_model, torch.float64, base=base)
    return torch.allclose(got.detach().double(), fitted, atol=1e-4, rtol=1e-3)


def _frequencies_inverted(got: object, expected: object) -> bool:
    """pos · 10000^(2i/d_model) instead of pos / 10000^(2i/d_model). The angles reach tens of thousands, where a
    float32 computation differs from the float64 variant by about 1e-3, so float32 results are compared loosely."""
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)) or got.shape != expected.shape:
        return False
    if expected.dim() != 2 or not got.is_floating_point():
        return False
    n_positions, d_model = expected.shape
    inverted = _pe_variant(n_positions, d_model, torch.float64, multiply=True)
    atol = 1e-6 if got.dtype == torch.float64 else 3e-2
    return torch.allclose(got.detach().double(), inverted, atol=atol, rtol=0)


def _float32_precision(got: object, expected: object) -> bool:
    """A float64 result that is right to float32 precision only: computed in float32, then cast."""
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)) or got.shape != expected.shape:
        return False
    if expected.dtype != torch.float64 or got.dtype != torch.float64 or expected.numel() == 0:
        return False
    got, expected = got.detach(), expected.detach()
    atol, rtol = tolerances(torch.float64)
    error = (got - expected).abs().max().item()
    return error < 1e-3 and not torch.allclose(got, expected, atol=atol, rtol=rtol)


PE_MISTAKES = [
    Mistake(
        "sin_cos_swapped",
        "sin and cos are swapped",
        "in the paper the sine goes into the even dimensions and the cosine into the odd ones.",
        "even dimensions 2i get the sine, odd dimensions 2i+1 the cosine: PE[:, 0::2] = sin(…), PE[:, 1::2] = cos(…).",
        output=_pe_mistake(swap_sin_cos=True),
    ),
    Mistake(
        "halves_layout",
        "the sines fill the first half and the cosines the second half (the layout of some later libraries, e.g. Marian)",
        "the paper interleaves the two: every pair of neighbouring dimensions holds a sine and the cosine of the same "
        "angle.",
        "the paper interleaves them: sine in the even dimensions (PE[:, 0::2]), cosine in the odd ones (PE[:, 1::2]). "
        "The two layouts are permutations of each other, but a model trained with one cannot read the other.",
        output=_pe_mistake(layout="half"),
    ),
    Mistake(
        "exponent_pair_index",
        "the exponent is i/d_model with the pair index i instead of 2i/d_model",
        "the exponent runs from 0 up to (almost) 1 across the dimensions, so that the wavelengths span 2π to 10000·2π.",
        "with i counting pairs 0, 1, 2, …, the exponent is 2i/d_model, i.e. torch.arange(0, d_model, 2) / d_model: "
        "the wavelengths must go all the way from 2π to 10000·2π.",
        output=_pe_mistake(exponent="i"),
    ),
    Mistake(
        "exponent_own_index",
        "each dimension j uses its own exponent j/d_model, so the cosine of pair i gets (2i+1)/d_model",
        "a sine and the cosine next to it share one frequency: the pair, not the single dimension, sets the exponent.",
        "a sine and its cosine share one frequency: PE[pos, 2i] and PE[pos, 2i+1] both use pos / 10000^(2i/d_model).",
        output=_pe_mistake(exponent="own_index"),
    ),
    Mistake(
        "positions_from_one",
        "the positions are counted from 1 instead of 0",
        "the first token sits at position 0, so the first row of the encoding is sin(0) = 0 and cos(0) = 1.",
        "positions are torch.arange(n_positions) (0, 1, …, n−1), not torch.arange(1, n_positions + 1).",
        output=_pe_mistake(first_position=1),
    ),
    Mistake(
        "swapped_pos_and_2i",
        "the position and the dimension index are swapped in the formula (2i / 10000^(pos/d_model))",
        "the angle grows linearly with the position, at a rate that the dimension index sets.",
        "the position pos is the numerator and the dimension index 2i goes into the exponent: pos / 10000^(2i/d_model).",
        output=_pe_mistake(swap_pos_and_2i=True),
    ),
    Mistake(
        "transposed",
        "the result is transposed: [d_model, n_positions]",
        "the encoding has one row per position, to be added to the embedding of the token at that position.",
        "one row per position: positions as a column [n, 1], frequencies as a row [d_model/2], angles [n, d_model/2].",
        output=lambda n, d, dtype=torch.float32: _pe_reference(n, d, dtype).T,
    ),
    Mistake(
        "exponent_doubled",
        "the exponent is 4i/d_model: torch.arange(0, d_model, 2), which already counts 2i, is doubled once more",
        "torch.arange(0, d_model, 2) runs 0, 2, 4, …: it is 2i itself, so it is divided by d_model as it is.",
        "torch.arange(0, d_model, 2) is already 2i: 10000 ** (torch.arange(0, d_model, 2) / d_model), not "
        "10000 ** (2 * torch.arange(0, d_model, 2) / d_model).",
        output=_pe_mistake(exponent="4i"),
    ),
    Mistake(
        "frequencies_inverted",
        "the position is multiplied by 10000^(2i/d_model) instead of divided by it (in the exp form: the minus "
        "sign of exp(−2i·ln(10000)/d_model) is missing)",
        "the frequencies 10000^(−2i/d_model) fall from 1 to about 1/10000, so the wavelengths grow from 2π to "
        "10000·2π; multiplying makes them grow instead, and the angles explode.",
        "angles = pos / 10000 ** (two_i / d_model), or pos * torch.exp(two_i * (-math.log(10000.0) / d_model)) "
        "with the minus sign.",
        detect=_frequencies_inverted,
    ),
    Mistake(
        "exponent_without_parentheses",
        "the exponent has no parentheses: pos / 10000 ** two_i / d_model computes (pos / 10000^(2i)) / d_model",
        "** binds tighter than /, so the whole fraction 2i/d_model must be put in parentheses to be the exponent.",
        "10000 ** (two_i / d_model), with the parentheses.",
        output=_pe_mistake(no_parentheses=True),
    ),
    Mistake(
        "other_base",
        "the wavelengths use a base other than 10000",
        "the paper's base is 10000, which makes the longest wavelength 10000·2π positions.",
        "divide pos by 10000^(2i/d_model): with the paper's base 10000 the longest wavelength is 10000·2π positions.",
        detect=_other_base,
    ),
    Mistake(
        "computed_in_float32",
        "the encoding is computed in float32 and only then converted to the requested dtype",
        "float64 is compared to about 1e-9, which a float32 computation cannot reach; the whole computation has to "
        "run in the requested dtype.",
        "build every tensor in the requested dtype: torch.arange(n_positions, dtype=dtype), "
        "torch.arange(0, d_model, 2, dtype=dtype), torch.zeros(n_positions, d_model, dtype=dtype).",
        detect=_float32_precision,
    ),
]


def _pe_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # args: (n_positions, d_model), kwargs: dtype. Float32 cases stay below ~100 positions, where a float32
    # computation is accurate to the tolerance; long ranges are checked in float64. Nothing is random here.
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


def _pe_delegation(n_positions: int, d_model: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return llmcore.sinusoidal_position_encoding(n_positions, d_model, dtype=dtype)


# fn(n_positions, d_model, dtype=torch.float32) -> [n_positions, d_model]
SINUSOIDAL_POSITION_ENCODING = register(Exercise(
    id="sinusoidal_position_encoding",
    syllabus=("T05",),
    reference=_pe_reference,
    cases=_pe_cases,
    mistakes=PE_MISTAKES,
    forbidden={
        reference_positions.sinusoidal_position_encoding: "llmcore.sinusoidal_position_encoding",
        llmcore.SinusoidalPositionalEncoding: "llmcore.SinusoidalPositionalEncoding",
    },
    delegation=_pe_delegation,
    output_names=("encoding",),
    fallback_hint="angles = pos / 10000^(2i/d_model) with pos as a column [n, 1] and 2i = arange(0, d_model, 2) "
    "as a row; PE[:, 0::2] = sin(angles), PE[:, 1::2] = cos(angles). Build every tensor in the requested dtype "
    "(float64 cases are compared to 1e-9, which a float32 computation cannot reach).",
))
check_sinusoidal_position_encoding = SINUSOIDAL_POSITION_ENCODING.check


# --------------------------------------------------------------------------------------------------
# LayerNorm (SYLLABUS T06)
# --------------------------------------------------------------------------------------------------


def _layer_norm_variant(
    module: nn.Module,
    x: Tensor,
    *,
    eps: float | None = None,
    eps_outside_root: bool = False,
    unbiased: bool = False,
    dim: int | None = -1,
    use_weight: bool = True,
    use_bias: bool = True,
    keepdim: bool = True,
) -> Tensor:
    """The reference with one knob turned, with the module's weight, bias and eps (``dim=None``: statistics
    over every element at once; ``keepdim=False``: the statistics lose their reduced dimension, so broadcasting
    against x fails or lines them up with the wrong dimension)."""
    eps = module.eps if eps is None else eps
    dims = tuple(range(x.dim())) if dim is None else (dim,)
    mean = x.mean(dim=dims, keepdim=keepdim)
    variance = x.var(dim=dims, keepdim=keepdim, correction=1 if unbiased else 0)
    if eps_outside_root:
        normalised = (x - mean) / (variance.sqrt() + eps)
    else:
        normalised = (x - mean) / torch.sqrt(variance + eps)
    if use_weight:
        normalised = normalised * module.weight
    if use_bias:
        normalised = normalised + module.bias
    return normalised


def _layer_norm_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda build, x: _layer_norm_variant(build(), x, **knobs)


LAYER_NORM_MISTAKES = [
    # Before no_eps: on the case built with eps=0.1 (float32), a fixed 1e-5 and no eps at all look alike.
    Mistake(
        "eps_argument_ignored",
        "the eps given to the constructor is not used: a fixed 1e-5 is added instead",
        "LayerNorm(d_model, eps) keeps the eps it is given and adds that one; the check also builds it with other "
        "values, such as eps=0.1.",
        "store it in __init__ (self.eps = eps) and use it in forward: torch.sqrt(variance + self.eps).",
        output=_layer_norm_mistake(eps=1e-5),
    ),
    Mistake(
        "no_eps",
        "eps is missing: a token whose features are all equal divides 0 by 0",
        "a small eps added to the variance keeps the division finite when a token's variance is 0.",
        "add eps to the variance inside the square root: (x − mean) / torch.sqrt(var + self.eps).",
        output=_layer_norm_mistake(eps=0.0),
    ),
    Mistake(
        "eps_outside_root",
        "eps is added outside the square root (√var + eps)",
        "eps is part of the variance: it is added before the square root is taken.",
        "the formula is (x − mean) / √(var + eps): add eps to the variance, then take the root.",
        output=_layer_norm_mistake(eps_outside_root=True),
    ),
    Mistake(
        "unbiased_variance",
        "the variance is unbiased (divided by d − 1)",
        "LayerNorm uses the plain (biased) variance, the mean of the squared deviations over the d features.",
        "LayerNorm uses the biased variance, the plain mean of the squared deviations: x.var(dim=-1, unbiased=False) "
        "or ((x − mean)²).mean(dim=-1). torch.var and torch.std divide by d − 1 by default.",
        output=_layer_norm_mistake(unbiased=True),
    ),
    Mistake(
        "unbiased_std_eps_outside",
        "unbiased standard deviation with eps outside the root ((x − mean) / (x.std(-1) + eps), as in some tutorials)",
        "two changes bring this tutorial formula to LayerNorm's: the biased variance, and eps added before the root.",
        "x.std divides by d − 1, and eps belongs inside the root: (x − mean) / torch.sqrt(x.var(-1, unbiased=False) + eps).",
        output=_layer_norm_mistake(unbiased=True, eps_outside_root=True),
    ),
    Mistake(
        "over_batch",
        "the statistics are computed over the batch dimension (dim 0)",
        "LayerNorm normalises each token on its own, over its own features (normalising each feature over the batch "
        "is BatchNorm).",
        "LayerNorm normalises each token on its own, over its d_model features: mean and variance over dim=-1 "
        "with keepdim=True. (Normalising each feature over the batch is BatchNorm.)",
        output=_layer_norm_mistake(dim=0),
    ),
    Mistake(
        "over_sequence",
        "the statistics are computed over the sequence dimension (dim -2)",
        "LayerNorm normalises each token on its own, over its own features, never across the tokens of a sequence.",
        "LayerNorm normalises each token on its own, over its d_model features: mean and variance over dim=-1.",
        output=_layer_norm_mistake(dim=-2),
    ),
    Mistake(
        "over_whole_tensor",
        "the statistics are computed over the whole tensor at once",
        "every token gets its own mean and variance, taken over its features only.",
        "take the mean and variance per token: x.mean(dim=-1, keepdim=True), not x.mean().",
        output=_layer_norm_mistake(dim=None),
    ),
    Mistake(
        "no_affine",
        "the learned scale (weight) and shift (bias) are not applied",
        "after normalising, LayerNorm scales and shifts every feature with learned parameters, so the model can undo "
        "the normalisation where it helps.",
        "finish with normalised * self.weight + self.bias: they let the model undo the normalisation where it helps.",
        output=_layer_norm_mistake(use_weight=False, use_bias=False),
    ),
    Mistake(
        "no_weight",
        "the learned scale (weight) is not applied",
        "the normalised values are scaled by the learned weight before the shift is added.",
        "multiply the normalised values by self.weight before adding self.bias.",
        output=_layer_norm_mistake(use_weight=False),
    ),
    Mistake(
        "no_bias",
        "the learned shift (bias) is not added",
        "after the learned scale comes the learned shift.",
        "add self.bias after multiplying by self.weight.",
        output=_layer_norm_mistake(use_bias=False),
    ),
    Mistake(
        "no_keepdim",
        "the mean or the variance is taken without keepdim=True, so it no longer lines up with x",
        "a statistic per token has shape [..., 1], so that it broadcasts over the token's d features; without "
        "keepdim it has shape [...], which broadcasting lines up with the wrong dimension (or cannot line up at all).",
        "x.mean(dim=-1, keepdim=True) and x.var(dim=-1, keepdim=True, unbiased=False): both keep a last dimension "
        "of size 1.",
        output=_layer_norm_mistake(keepdim=False),
    ),
]


def _layer_norm_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, shape: tuple, dtype: torch.dtype, *, spread: float = 1.0, eps: float | None = None,
             gradients: bool = False, constant_token: tuple | None = None) -> Case:
        d_model = shape[-1]
        x = random.tensor(shape, dtype, scale=spread, shift=0.5)
        if constant_token is not None:
            x[constant_token] = 3.0  # all features equal: variance 0
        weight, bias = _random_norm_parameters(random, d_model, dtype)
        init = {"d_model": d_model} if eps is None else {"d_model": d_model, "eps": eps}
        return Case(description, (x,), init=init, params={"weight": weight, "bias": bias},
                    check_gradients=gradients)

    # Float64 first: there even eps's place is visible, so mistakes that differ only there are told apart.
    cases = [
        case("x [B=2, L=5, d=4], float64, gradients of x, weight and bias", (2, 5, 4), torch.float64, gradients=True),
        case("x [B=2, L=3, d=8], float32, random weight and bias", (2, 3, 8), torch.float32),
        case("x [B=3, L=2, d=16] of small spread (std 0.003, variance close to eps), float64", (3, 2, 16),
             torch.float64, spread=0.003),
        case("x [B=2, L=3, d=8], float64, one token whose features are all equal (variance 0)", (2, 3, 8),
             torch.float64, constant_token=(1, 2)),
        case("x [B=1, L=4, d=32], float32, constructed with eps=0.1", (1, 4, 32), torch.float32, eps=0.1),
    ]
    if hidden:
        cases += [
            case("x [B=4, L=7, d=64], float64, gradients", (4, 7, 64), torch.float64, gradients=True),
            case("x [N=5, d=3] (no sequence dim), float32", (5, 3), torch.float32),
            case("x [B=2, H=2, L=3, d=10] (4 dims), float64, eps=1e-3, gradients", (2, 2, 3, 10), torch.float64,
                 spread=0.05, eps=1e-3, gradients=True),
            case("x [B=1, L=1, d=512], float32", (1, 1, 512), torch.float32),
        ]
    return cases


# cls(d_model, eps=1e-5) with parameters weight, bias [d_model] and forward(x [..., d]) -> [..., d].
LAYER_NORM = register(ModuleExercise(
    id="layer_norm",
    title="LayerNorm",
    syllabus=("T06",),
    reference=llmcore.LayerNorm,
    cases=_layer_norm_cases,
    mistakes=LAYER_NORM_MISTAKES,
    forbidden={
        llmcore.LayerNorm: "llmcore.LayerNorm",
        reference_norms.layer_norm: "llmcore.layer_norm",
        nn.LayerNorm: "torch.nn.LayerNorm",
        F.layer_norm: "torch.nn.functional.layer_norm",
        torch.layer_norm: "torch.layer_norm",
        torch.native_layer_norm: "torch.native_layer_norm",
    },
    forbidden_ops={
        "native_layer_norm": "PyTorch's layer-norm kernel (aten::native_layer_norm)",
        "native_layer_norm_backward": "PyTorch's layer-norm kernel (aten::native_layer_norm_backward)",
    },
    delegation=llmcore.LayerNorm,
    output_names=("normalised",),
    fallback_hint="mean and biased variance over the last dim (keepdim=True); "
    "(x − mean) / sqrt(var + eps) * weight + bias.",
))
check_layer_norm = LAYER_NORM.check


# --------------------------------------------------------------------------------------------------
# Add & Norm (SYLLABUS T06)
# --------------------------------------------------------------------------------------------------


def _add_and_norm_reference(x: Tensor, sublayer_output: Tensor, norm: nn.Module) -> Tensor:
    return norm(x + sublayer_output)


ADD_AND_NORM_MISTAKES = [
    Mistake(
        "pre_norm",
        "pre-norm instead of post-norm: x + norm(sublayer_output)",
        "the 2017 Transformer adds first and normalises the sum; pre-norm (GPT-2 on) normalises the sublayer's input, "
        "which this function never sees.",
        "the 2017 Transformer adds first and normalises the sum: norm(x + sublayer_output). (Pre-norm, used from GPT-2 "
        "on, normalises the sublayer's *input*, which this function does not see.)",
        output=lambda x, sublayer_output, norm: x + norm(sublayer_output),
    ),
    Mistake(
        "no_residual",
        "the residual connection is missing: norm(sublayer_output)",
        "the residual connection carries the sublayer's input around it, so the input is part of what is normalised.",
        "add the sublayer's input back before normalising: norm(x + sublayer_output).",
        output=lambda x, sublayer_output, norm: norm(sublayer_output),
    ),
    Mistake(
        "no_norm",
        "the norm is not applied: x + sublayer_output",
        "\"Add & Norm\" is two steps: the residual sum, then the normalisation of that sum.",
        "\"Add & Norm\" does both: return norm(x + sublayer_output).",
        output=lambda x, sublayer_output, norm: x + sublayer_output,
    ),
    Mistake(
        "norm_x_only",
        "only x is normalised before the sum: norm(x) + sublayer_output",
        "the norm applies to the sum of the two inputs, after they are added.",
        "normalise the sum of the two: norm(x + sublayer_output).",
        output=lambda x, sublayer_output, norm: norm(x) + sublayer_output,
    ),
    Mistake(
        "norm_argument_unused",
        "a new LayerNorm is used instead of the `norm` passed in, so its learned weight and bias are lost",
        "the function receives the block's own LayerNorm, with its learned weight and bias: call that module rather "
        "than building or computing another normalisation.",
        "call the module you are given: norm(x + sublayer_output). An nn.LayerNorm(...) (or F.layer_norm) made inside "
        "the function starts from weight 1 and bias 0 every time and is never trained.",
        output=lambda x, sublayer_output, norm: F.layer_norm(x + sublayer_output, x.shape[-1:], eps=norm.eps),
    ),
    Mistake(
        "residual_added_twice",
        "x is added again after the norm: x + norm(x + sublayer_output)",
        "the residual sum happens once, before the norm; the normalised sum is the output.",
        "return norm(x + sublayer_output), with nothing added after the norm.",
        output=lambda x, sublayer_output, norm: x + norm(x + sublayer_output),
    ),
]


def _random_layer_norm(random: CaseRandom, d_model: int, dtype: torch.dtype) -> llmcore.LayerNorm:
    """llmcore's LayerNorm with a random weight and bias, so that where the norm sits changes the result."""
    norm = llmcore.LayerNorm(d_model).to(dtype)
    weight, bias = _random_norm_parameters(random, d_model, dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(bias)
    return norm


def _add_and_norm_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def inputs(shape: tuple, dtype: torch.dtype) -> tuple[Tensor, Tensor, nn.Module]:
        x = random.tensor(shape, dtype)
        sublayer_output = random.tensor(shape, dtype, scale=2.0)
        return x, sublayer_output, _random_layer_norm(random, shape[-1], dtype)

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


def _add_and_norm_delegation(x: Tensor, sublayer_output: Tensor, norm: nn.Module) -> Tensor:
    return llmcore.residual(x, lambda h: sublayer_output, norm, nn.Identity(), norm_first=False)


# fn(x, sublayer_output, norm) -> norm(x + sublayer_output), the post-norm residual. The norm is llmcore's
# LayerNorm (an earlier exercise), so native_layer_norm is not forbidden here.
ADD_AND_NORM = register(Exercise(
    id="add_and_norm",
    syllabus=("T06",),
    reference=_add_and_norm_reference,
    cases=_add_and_norm_cases,
    mistakes=ADD_AND_NORM_MISTAKES,
    forbidden={reference_blocks.residual: "llmcore.residual"},
    delegation=_add_and_norm_delegation,
    output_names=("output",),
    fallback_hint="return norm(x + sublayer_output).",
))
check_add_and_norm = ADD_AND_NORM.check


# --------------------------------------------------------------------------------------------------
# Position-wise feed-forward network (SYLLABUS T07)
# --------------------------------------------------------------------------------------------------


def _ffn_variant(module: nn.Module, x: Tensor, *, hidden_act=F.relu, output_act=None) -> Tensor:
    """The reference with one knob turned, computed with the reference module's weights."""
    hidden = module.up_proj(x)
    if hidden_act is not None:
        hidden = hidden_act(hidden)
    out = module.down_proj(hidden)
    return out if output_act is None else output_act(out)


def _ffn_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda build, x: _ffn_variant(build(), x, **knobs)


FFN_MISTAKES = [
    Mistake(
        "no_activation",
        "the ReLU is missing",
        "without a non-linearity between them, the two linear layers collapse into a single linear map.",
        "apply torch.relu to the output of up_proj: without a non-linearity the two layers collapse into one linear map.",
        output=_ffn_mistake(hidden_act=None),
    ),
    Mistake(
        "relu_twice",
        "a ReLU is also applied after the second layer",
        "the output of the second layer goes into the residual sum as it is, negative values included.",
        "the output of down_proj is returned as it is (it goes into the residual sum, where negative values are needed): "
        "down_proj(relu(up_proj(x))).",
        output=_ffn_mistake(output_act=F.relu),
    ),
    Mistake(
        "relu_at_the_end",
        "the ReLU is applied after the second layer instead of the first",
        "the non-linearity sits between the two layers, on the wide d_ff hidden vector.",
        "the non-linearity sits between the two layers: down_proj(relu(up_proj(x))).",
        output=_ffn_mistake(hidden_act=None, output_act=F.relu),
    ),
    Mistake(
        "gelu",
        "GELU is used instead of ReLU",
        "the 2017 model uses ReLU, max(0, x); GELU came a year later with GPT-1 and BERT.",
        "the 2017 model uses ReLU, max(0, x); GELU came with GPT-1 and BERT (2018).",
        output=_ffn_mistake(hidden_act=F.gelu),
    ),
    Mistake(
        "python_max",
        "Python's built-in max(0, h) is applied to a whole tensor",
        "the max(0, ·) of the formula is taken element by element; Python's max compares whole objects, and a tensor "
        "of many values has no single truth value.",
        "use an element-wise maximum: torch.relu(h), h.clamp(min=0) or torch.maximum(h, torch.zeros_like(h)).",
        output=_ffn_mistake(hidden_act=lambda hidden: max(0, hidden)),
    ),
    Mistake(
        "residual_inside",
        "the input is added to the output (x + FFN(x)), but the residual belongs to the block, not to the FFN",
        "the block's Add & Norm adds x around the FFN; the FFN itself returns down_proj(relu(up_proj(x))) only, or x "
        "would be added twice.",
        "return self.down_proj(torch.relu(self.up_proj(x))) without + x: the encoder and decoder blocks add x in "
        "their Add & Norm.",
        output=lambda build, x: x + _ffn_variant(build(), x),
    ),
]


def _ffn_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, shape: tuple, d_ff: int, dtype: torch.dtype, gradients: bool = False) -> Case:
        return Case(description, (random.tensor(shape, dtype),), init={"d_model": shape[-1], "d_ff": d_ff},
                    check_gradients=gradients)

    cases = [
        case("x [B=2, L=3, d_model=8], d_ff=32, float32", (2, 3, 8), 32, torch.float32),
        case("x [B=1, L=5, d_model=16], d_ff=64, float64, gradients", (1, 5, 16), 64, torch.float64, gradients=True),
        case("x [N=6, d_model=4] (no sequence dim), d_ff=16, float32", (6, 4), 16, torch.float32),
    ]
    if hidden:
        cases += [
            case("x [B=2, L=7, d_model=64], d_ff=256, float64, gradients", (2, 7, 64), 256, torch.float64,
                 gradients=True),
            case("x [B=2, H=2, L=3, d_model=6] (4 dims), d_ff=10, float32", (2, 2, 3, 6), 10, torch.float32),
            case("x [B=1, L=1, d_model=12], d_ff=12 (d_ff = d_model), float64", (1, 1, 12), 12, torch.float64),
        ]
    return cases


# cls(d_model, d_ff) with up_proj, down_proj (biases included) and forward(x [..., d_model]) -> [..., d_model].
FEED_FORWARD = register(ModuleExercise(
    id="feed_forward",
    title="FeedForward",
    syllabus=("T07",),
    reference=llmcore.FeedForward,
    cases=_ffn_cases,
    mistakes=FFN_MISTAKES,
    forbidden={llmcore.FeedForward: "llmcore.FeedForward"},
    delegation=llmcore.FeedForward,
    output_names=("output",),
    fallback_hint="self.down_proj(torch.relu(self.up_proj(x))), with up_proj = nn.Linear(d_model, d_ff) and "
    "down_proj = nn.Linear(d_ff, d_model).",
))
check_feed_forward = FEED_FORWARD.check


# --------------------------------------------------------------------------------------------------
# Encoder and decoder blocks (SYLLABUS T08)
# --------------------------------------------------------------------------------------------------


def _randomise_norms(block: nn.Module) -> None:
    """Random LayerNorm weights and biases (drawn from the seeded global generator the spec sets up while it
    builds the reference), so that a norm in the wrong place changes the output."""
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, llmcore.LayerNorm):
                module.weight.copy_(1 + 0.3 * torch.randn_like(module.weight))
                module.bias.copy_(0.3 * torch.randn_like(module.bias))


def _sublayer(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module, *, norm_first: bool, residual: bool,
              norm_output: bool = False) -> Tensor:
    """Post-norm ``norm(x + sublayer(x))`` or pre-norm ``x + sublayer(norm(x))``, with or without the residual;
    ``norm_output``: ``x + norm(sublayer(x))``, the norm on the sublayer's output alone."""
    if norm_output:
        return x + norm(sublayer(x))
    if norm_first:
        out = sublayer(norm(x))
        return x + out if residual else out
    out = sublayer(x)
    return norm(x + out if residual else out)


def _block_init(d_model: int, n_heads: int, d_ff: int) -> dict:
    return {"d_model": d_model, "n_heads": n_heads, "d_ff": d_ff}


def _encoder_variant(
    block: nn.Module,
    x: Tensor,
    mask: Tensor | None,
    *,
    norm_first: bool = False,
    no_residual: tuple[str, ...] = (),
    use_mask: bool = True,
    order: tuple[str, ...] = ("self_attn", "ffn"),
    swap_norms: bool = False,
    invert_mask: bool = False,
    mask_positional: bool = False,
    norm_output: bool = False,
    one_norm: bool = False,
    ffn_residual_from_block_input: bool = False,
) -> Tensor:
    """The reference with one knob turned, computed with the reference block's weights.

    ``mask_positional``: the mask passed as ``self_attn(x, mask)``, where attention takes it for the context;
    ``one_norm``: self_attn_norm after both sublayers; ``ffn_residual_from_block_input``: the FFN's residual adds
    the block's input instead of the FFN's.
    """
    attention_mask = mask if use_mask else None
    if invert_mask and attention_mask is not None:
        attention_mask = ~attention_mask
    norms = {"self_attn": block.self_attn_norm, "ffn": block.ffn_norm}
    if swap_norms:
        norms = {"self_attn": block.ffn_norm, "ffn": block.self_attn_norm}
    if one_norm:
        norms = {"self_attn": block.self_attn_norm, "ffn": block.self_attn_norm}
    if mask_positional:
        attention = lambda h: block.self_attn(h, attention_mask)  # noqa: E731 - the slip itself
    else:
        attention = lambda h: block.self_attn(h, mask=attention_mask)  # noqa: E731
    sublayers = {"self_attn": attention, "ffn": block.ffn}
    block_input = x
    for name in order:
        if ffn_residual_from_block_input and name == "ffn":
            x = norms[name](block_input + block.ffn(x))
            continue
        x = _sublayer(x, sublayers[name], norms[name], norm_first=norm_first, residual=name not in no_residual,
                      norm_output=norm_output)
    return x


def _encoder_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda build, x, mask=None: _encoder_variant(build(), x, mask, **knobs)


ENCODER_MISTAKES = [
    Mistake(
        "pre_norm",
        "pre-norm wiring: x + sublayer(norm(x))",
        "the 2017 block is post-norm: each sublayer's output is added to its input, and the sum is normalised; "
        "pre-norm came later (GPT-2).",
        "the 2017 block is post-norm: x = self.self_attn_norm(x + self.self_attn(x, mask=mask)), then "
        "x = self.ffn_norm(x + self.ffn(x)). Pre-norm came later (GPT-2).",
        output=_encoder_mistake(norm_first=True),
    ),
    Mistake(
        "no_attention_residual",
        "the residual connection around self-attention is missing",
        "every sublayer, self-attention included, has its input added back to its output before the norm.",
        "add the attention's input back before the norm: self.self_attn_norm(x + self.self_attn(x, mask=mask)).",
        output=_encoder_mistake(no_residual=("self_attn",)),
    ),
    Mistake(
        "no_ffn_residual",
        "the residual connection around the feed-forward network is missing",
        "every sublayer, the feed-forward network included, has its input added back to its output before the norm.",
        "add the FFN's input back before the norm: self.ffn_norm(x + self.ffn(x)).",
        output=_encoder_mistake(no_residual=("ffn",)),
    ),
    Mistake(
        "mask_unused",
        "the mask is not passed to self-attention",
        "the padding mask has to reach self-attention, or every token attends to the padding too.",
        "call self.self_attn(x, mask=mask): without it every token attends to the padding.",
        output=_encoder_mistake(use_mask=False),
    ),
    Mistake(
        "ffn_first",
        "the feed-forward network comes before self-attention",
        "tokens first exchange information through self-attention; the feed-forward network then processes each "
        "position.",
        "the order is self-attention (with its Add & Norm), then the FFN (with its Add & Norm).",
        output=_encoder_mistake(order=("ffn", "self_attn")),
    ),
    Mistake(
        "norms_swapped",
        "the two norms are swapped (ffn_norm after attention, self_attn_norm after the FFN)",
        "each sublayer has a norm of its own with its own learned weights, named after the sublayer it follows.",
        "each sublayer has its own norm: self_attn_norm after self-attention, ffn_norm after the FFN.",
        output=_encoder_mistake(swap_norms=True),
    ),
    Mistake(
        "mask_inverted",
        "the mask is inverted (~mask), as if True meant padding (the convention of torch.nn.MultiheadAttention's "
        "key_padding_mask)",
        "in this course True means 'may attend': the mask marks the real tokens, and it reaches attention as it is.",
        "pass the mask unchanged: self.self_attn(x, mask=mask). PyTorch's key_padding_mask marks padding with True; "
        "llmcore's masks mark the keys that may be attended to.",
        output=_encoder_mistake(invert_mask=True),
    ),
    Mistake(
        "mask_passed_as_context",
        "the mask is passed positionally, self.self_attn(x, mask), so attention takes it as the context (the "
        "keys and values of cross-attention)",
        "MultiHeadAttention's second positional argument is the context that cross-attention reads; the mask is "
        "passed by name.",
        "attention's signature is forward(x, context=None, mask=None): call self.self_attn(x, mask=mask).",
        output=_encoder_mistake(mask_positional=True),
    ),
    Mistake(
        "norm_on_sublayer_output",
        "the norm is applied to the sublayer's output before the residual sum: x + norm(sublayer(x))",
        "post-norm normalises the sum: the sublayer's output is added to its input first, then the sum goes through "
        "the norm.",
        "x = self.self_attn_norm(x + self.self_attn(x, mask=mask)); return self.ffn_norm(x + self.ffn(x)).",
        output=_encoder_mistake(norm_output=True),
    ),
    Mistake(
        "one_norm_twice",
        "self_attn_norm is used after both sublayers; ffn_norm is never used",
        "each sublayer has a norm of its own, with its own learned weights: self_attn_norm after self-attention, "
        "ffn_norm after the FFN.",
        "the second Add & Norm uses the FFN's own norm: return self.ffn_norm(x + self.ffn(x)).",
        output=_encoder_mistake(one_norm=True),
    ),
    Mistake(
        "ffn_residual_from_block_input",
        "the FFN's residual adds the block's input x instead of the FFN's own input (the output of the first "
        "Add & Norm)",
        "each residual carries its own sublayer's input around it; after the first Add & Norm that input is the "
        "normalised sum, not the block's original x.",
        "keep one running variable: x = self.self_attn_norm(x + self.self_attn(x, mask=mask)), then "
        "return self.ffn_norm(x + self.ffn(x)), so that the FFN's input is also what is added back.",
        output=_encoder_mistake(ffn_residual_from_block_input=True),
    ),
]


def _encoder_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, shape: tuple, n_heads: int, d_ff: int, dtype: torch.dtype, mask: Tensor | None,
             gradients: bool = False) -> Case:
        return Case(description, (random.tensor(shape, dtype),), {"mask": mask},
                    init=_block_init(shape[-1], n_heads, d_ff), check_gradients=gradients)

    cases = [
        case("x [B=2, S=5, d_model=16], n_heads=4, d_ff=32, float32, padding mask [B, 1, 1, S] with lengths 5 and 3",
             (2, 5, 16), 4, 32, torch.float32, lengths_mask([5, 3], 5)),
        case("x [B=1, S=6, d_model=24], n_heads=3, d_ff=48, float64, no mask, gradients",
             (1, 6, 24), 3, 48, torch.float64, None, gradients=True),
        case("x [B=3, S=4, d_model=8], n_heads=2, d_ff=16, float64, padding lengths 4, 1 and 2, gradients",
             (3, 4, 8), 2, 16, torch.float64, lengths_mask([4, 1, 2], 4), gradients=True),
    ]
    if hidden:
        cases += [
            case("x [B=2, S=9, d_model=64], n_heads=8, d_ff=256, float32, padding lengths 9 and 6",
                 (2, 9, 64), 8, 256, torch.float32, lengths_mask([9, 6], 9)),
            case("x [B=2, S=1, d_model=12], n_heads=1, d_ff=24, float64, gradients",
                 (2, 1, 12), 1, 24, torch.float64, None, gradients=True),
            case("x [B=1, S=5, d_model=20], n_heads=5, d_ff=40, float64, a causal mask [S, S]",
                 (1, 5, 20), 5, 40, torch.float64, causal(5)),
        ]
    return cases


# cls(d_model, n_heads, d_ff) with self_attn, self_attn_norm, ffn, ffn_norm and forward(x [B, S, d_model], mask=None).
# Called as module(x, mask=mask) in eval mode; LayerNorms get random weights and biases. The block is built from
# earlier exercises (llmcore.MultiHeadAttention, LayerNorm, FeedForward are allowed), so no operator is forbidden.
ENCODER_BLOCK = register(ModuleExercise(
    id="encoder_block",
    title="EncoderBlock",
    syllabus=("T08",),
    reference=llmcore.EncoderBlock,
    prepare=_randomise_norms,
    cases=_encoder_cases,
    mistakes=ENCODER_MISTAKES,
    forbidden={
        llmcore.EncoderBlock: "llmcore.EncoderBlock",
        nn.TransformerEncoderLayer: "torch.nn.TransformerEncoderLayer",
        nn.TransformerEncoder: "torch.nn.TransformerEncoder",
    },
    delegation=llmcore.EncoderBlock,
    output_names=("output",),
    fallback_hint="x = self.self_attn_norm(x + self.self_attn(x, mask=mask)); return self.ffn_norm(x + self.ffn(x)).",
))
check_encoder_block = ENCODER_BLOCK.check


def _decoder_variant(
    block: nn.Module,
    x: Tensor,
    memory: Tensor,
    self_mask: Tensor | None,
    cross_mask: Tensor | None,
    *,
    norm_first: bool = False,
    no_residual: tuple[str, ...] = (),
    order: tuple[str, ...] = ("self_attn", "cross_attn", "ffn"),
    cross_source: str = "memory",
    swap_masks: bool = False,
    use_self_mask: bool = True,
    use_cross_mask: bool = True,
) -> Tensor:
    """The reference with one knob turned, computed with the reference block's weights.

    ``cross_source``: "memory" (right), "x" (keys and values from the decoder stream), or "queries_from_memory"
    (the arguments of cross-attention swapped).
    """
    if swap_masks:
        self_mask, cross_mask = cross_mask, self_mask
    if not use_self_mask:
        self_mask = None
    if not use_cross_mask:
        cross_mask = None
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
    return lambda build, x, memory, self_mask=None, cross_mask=None: _decoder_variant(
        build(), x, memory, self_mask, cross_mask, **knobs
    )


DECODER_MISTAKES = [
    Mistake(
        "pre_norm",
        "pre-norm wiring: x + sublayer(norm(x))",
        "the 2017 block is post-norm: each of the three sublayers' outputs is added to its input, and the sum is "
        "normalised.",
        "the 2017 block is post-norm: each sublayer is followed by its norm of the sum, "
        "x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask)), and likewise for cross-attention and the FFN.",
        output=_decoder_mistake(norm_first=True),
    ),
    Mistake(
        "no_self_attention_residual",
        "the residual connection around self-attention is missing",
        "every sublayer, self-attention included, has its input added back to its output before the norm.",
        "self.self_attn_norm(x + self.self_attn(x, mask=self_mask)): add the input back before the norm.",
        output=_decoder_mistake(no_residual=("self_attn",)),
    ),
    Mistake(
        "no_cross_attention_residual",
        "the residual connection around cross-attention is missing",
        "every sublayer, cross-attention included, has its input added back to its output before the norm.",
        "self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask)): add the input back before the norm.",
        output=_decoder_mistake(no_residual=("cross_attn",)),
    ),
    Mistake(
        "no_ffn_residual",
        "the residual connection around the feed-forward network is missing",
        "every sublayer, the feed-forward network included, has its input added back to its output before the norm.",
        "self.ffn_norm(x + self.ffn(x)): add the input back before the norm.",
        output=_decoder_mistake(no_residual=("ffn",)),
    ),
    Mistake(
        "no_cross_attention",
        "cross-attention is skipped: the block never reads the encoder output",
        "the decoder block has three sublayers; the middle one, cross-attention, is where the target reads the source.",
        "between self-attention and the FFN, x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask)).",
        output=_decoder_mistake(order=("self_attn", "ffn")),
    ),
    Mistake(
        "cross_keys_from_x",
        "cross-attention takes its keys and values from x instead of memory",
        "in cross-attention the queries come from the decoder and the keys and values from the encoder output.",
        "pass the encoder output as the context: self.cross_attn(x, memory, mask=cross_mask). "
        "Queries come from the decoder, keys and values from the source sentence.",
        output=_decoder_mistake(cross_source="x"),
    ),
    Mistake(
        "cross_arguments_swapped",
        "cross-attention takes its queries from memory and its keys from x (arguments swapped)",
        "the decoder asks and the source answers: queries from the target stream, keys and values from the encoder.",
        "the decoder asks, the source answers: self.cross_attn(x, memory, mask=cross_mask), queries from x.",
        output=_decoder_mistake(cross_source="queries_from_memory"),
    ),
    Mistake(
        "masks_swapped",
        "the masks are swapped: self_mask goes to cross-attention and cross_mask to self-attention",
        "each attention gets the mask over its own keys: self-attention the target's, cross-attention the source's.",
        "self-attention over the target uses self_mask (causal AND target padding); cross-attention uses cross_mask "
        "(source padding).",
        output=_decoder_mistake(swap_masks=True),
    ),
    Mistake(
        "self_mask_unused",
        "the causal self_mask is not used: the decoder sees future target tokens",
        "the causal mask keeps each target position from seeing the tokens it is trained to predict.",
        "call self.self_attn(x, mask=self_mask); without the causal mask, training would let each position copy the "
        "token it has to predict.",
        output=_decoder_mistake(use_self_mask=False),
    ),
    Mistake(
        "cross_mask_unused",
        "the cross_mask is not passed to cross-attention: the target attends to the source's padding",
        "cross-attention's keys are the source tokens, padding included; cross_mask hides the padded ones.",
        "call self.cross_attn(x, memory, mask=cross_mask).",
        output=_decoder_mistake(use_cross_mask=False),
    ),
    Mistake(
        "ffn_before_cross_attention",
        "the feed-forward network comes before cross-attention",
        "the sublayers run in the order self-attention, cross-attention, feed-forward network.",
        "the order is self-attention, cross-attention, FFN, each followed by its Add & Norm.",
        output=_decoder_mistake(order=("self_attn", "ffn", "cross_attn")),
    ),
    Mistake(
        "cross_before_self_attention",
        "cross-attention comes before self-attention",
        "the sublayers run in the order self-attention, cross-attention, feed-forward network.",
        "the order is self-attention, cross-attention, FFN, each followed by its Add & Norm.",
        output=_decoder_mistake(order=("cross_attn", "self_attn", "ffn")),
    ),
]


def _decoder_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def case(description: str, x_shape: tuple, source_length: int, n_heads: int, d_ff: int, dtype: torch.dtype,
             self_mask: Tensor | None, cross_mask: Tensor | None, gradients: bool = False) -> Case:
        batch, _, d_model = x_shape
        x, memory = random.tensor(x_shape, dtype), random.tensor((batch, source_length, d_model), dtype)
        return Case(description, (x, memory), {"self_mask": self_mask, "cross_mask": cross_mask},
                    init=_block_init(d_model, n_heads, d_ff), check_gradients=gradients)

    def decoder_mask(lengths: list[int], length: int) -> Tensor:
        return causal(length) & lengths_mask(lengths, length)  # [B, 1, T, T]

    # The first case has as many target as source positions, so that code attending to the wrong sequence or
    # with the masks swapped still runs, and the mistake is named instead of a shape error.
    cases = [
        case("x [B=2, T=5, d_model=16], memory [B, S=5, d_model], n_heads=4, d_ff=32, float32; "
             "self_mask = causal AND target padding (lengths 5, 3) [B, 1, T, T]; cross_mask = source padding "
             "(lengths 5, 2) [B, 1, 1, S]",
             (2, 5, 16), 5, 4, 32, torch.float32, decoder_mask([5, 3], 5), lengths_mask([5, 2], 5)),
        case("x [B=2, T=4], memory [B, S=7], d_model=8, n_heads=2, d_ff=16, float64; self_mask = causal AND padding "
             "(lengths 4, 2); cross_mask = source padding (lengths 7, 3); gradients of x and memory",
             (2, 4, 8), 7, 2, 16, torch.float64, decoder_mask([4, 2], 4), lengths_mask([7, 3], 7), gradients=True),
        case("x [B=1, T=6], memory [B, S=3], d_model=24, n_heads=3, d_ff=48, float64; self_mask = causal [T, T]; "
             "cross_mask = None; gradients",
             (1, 6, 24), 3, 3, 48, torch.float64, causal(6), None, gradients=True),
    ]
    if hidden:
        cases += [
            case("x [B=2, T=1] (one decoding step), memory [B, S=9], d_model=64, n_heads=8, d_ff=256, float32; "
                 "self_mask [1, 1]; cross_mask: source lengths 9 and 4",
                 (2, 1, 64), 9, 8, 256, torch.float32, causal(1), lengths_mask([9, 4], 9)),
            case("x [B=2, T=4] left-padded (row 1 starts with 2 pads, whose queries see no key), memory [B, S=6], "
                 "d_model=12, n_heads=2, d_ff=24, float64; cross_mask: lengths 6 and 5; gradients",
                 (2, 4, 12), 6, 2, 24, torch.float64, causal(4) & left_lengths_mask([4, 2], 4),
                 lengths_mask([6, 5], 6), gradients=True),
            case("x [B=3, T=5], memory [B, S=5], d_model=20, n_heads=5, d_ff=40, float64; causal self_mask [T, T]; "
                 "cross_mask: lengths 5, 1, 3",
                 (3, 5, 20), 5, 5, 40, torch.float64, causal(5), lengths_mask([5, 1, 3], 5)),
        ]
    return cases


# cls(d_model, n_heads, d_ff) with self_attn, self_attn_norm, cross_attn, cross_attn_norm, ffn, ffn_norm and
# forward(x [B, T, d], memory [B, S, d], self_mask=None, cross_mask=None) -> [B, T, d]. Called as
# module(x, memory, self_mask=self_mask, cross_mask=cross_mask) in eval mode; LayerNorms get random weights.
DECODER_BLOCK = register(ModuleExercise(
    id="decoder_block",
    title="DecoderBlock",
    syllabus=("T08",),
    reference=llmcore.DecoderBlock,
    prepare=_randomise_norms,
    cases=_decoder_cases,
    mistakes=DECODER_MISTAKES,
    forbidden={
        llmcore.DecoderBlock: "llmcore.DecoderBlock",
        nn.TransformerDecoderLayer: "torch.nn.TransformerDecoderLayer",
        nn.TransformerDecoder: "torch.nn.TransformerDecoder",
    },
    delegation=llmcore.DecoderBlock,
    output_names=("output",),
    fallback_hint="three post-norm sublayers in order: self-attention with self_mask, cross-attention to memory "
    "with cross_mask, the FFN; each as norm(x + sublayer(x)).",
))
check_decoder_block = DECODER_BLOCK.check
