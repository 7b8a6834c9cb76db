"""W01 · The attention-mask explorer (注意力掩码): every mask of the history, drawn from ``llmcore.masks``.

A mask says which key each query may look at (row = query, column = key, dark = may attend). The
patterns here are built *only* from the mask_mods of :mod:`llmcore.masks` and evaluated with
:func:`llmcore.masks.dense_mask`, so the picture is exactly the tensor the models attend with.

What the explorer teaches:

* **density** (密度): the fraction of query–key pairs a pattern keeps, i.e. how much of the
  quadratic cost of full attention it pays;
* **receptive field** (感受野): stacking layers lets information hop. After ``N`` layers a query
  has drawn on every position reachable in ``N`` hops of the mask - a boolean matrix power. A
  sliding window of ``W`` (滑动窗口注意力, Mistral) sees only ``W`` keys per layer but reaches
  ``N·(W−1)`` positions back after ``N`` layers (``N`` counts layers, as in the 2017 paper;
  ``L`` is the query length everywhere in the course); the Sparse Transformer's strided and fixed patterns
  (稀疏注意力) connect any two positions in two hops;
* per-layer patterns: Qwen2 slides its window only in the upper layers, GPT-3 alternates dense and
  sparse layers (交替的稠密与稀疏注意力层); the receptive field multiplies the layers' own masks.

Plain functions return a matplotlib Figure (:func:`plot_mask`, :func:`mask_figure`,
:func:`plot_mask_comparison`, :func:`plot_receptive_field`); :func:`mask_explorer` is the widget.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Sequence, Union

import torch
from torch import Tensor

from .. import masks
from ..masks import MaskMod
from ._common import (
    DIFF_COLOR,
    MISSING_COLOR,
    BlitScene,
    DROP_COLOR,
    KEEP_COLOR,
    Explorer,
    call_with_accepted,
    dropdown,
    int_slider,
    new_figure,
    numpy,
    require,
    rows_of,
    set_position_ticks,
    squeeze_to_matrix,
    to_numpy,
)

__all__ = [
    "MASK_PATTERNS",
    "MaskPattern",
    "MaskExplorer",
    "compare_masks",
    "evaluate_mask",
    "mask_density",
    "mask_explorer",
    "mask_figure",
    "pattern_masks",
    "plot_mask",
    "plot_mask_comparison",
    "plot_receptive_field",
    "reach_by_layer",
    "receptive_field",
]


# ------------------------------------------------------------------------------------------------
# Pure tensor functions (torch only)
# ------------------------------------------------------------------------------------------------


def _boolean_matrix(mask: Tensor, function: str, what: str = "mask") -> Tensor:
    matrix = squeeze_to_matrix(mask, function, what)
    if matrix.dtype != torch.bool:
        raise TypeError(f"{function}: {what} must be a boolean tensor (True = may attend), got dtype {matrix.dtype}")
    return matrix


def mask_density(mask: Tensor) -> float:
    """Fraction of query–key pairs a mask keeps (密度): 1.0 for full attention, about 1/2 for causal.

    Args:
        mask: boolean tensor of any shape (``[Q, KV]`` or ``[B, H, Q, KV]``), ``True`` = may attend.
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"mask_density: mask must be a boolean tensor, got {got}")
    if mask.numel() == 0:
        raise ValueError(f"mask_density: mask is empty (shape {tuple(mask.shape)})")
    return int(mask.sum()) / mask.numel()


def _layer_matrices(mask: Tensor | Sequence[Tensor], n_layers: int | None, function: str) -> list[Tensor]:
    if isinstance(n_layers, bool) or (n_layers is not None and (not isinstance(n_layers, int) or n_layers < 0)):
        raise ValueError(f"{function}: n_layers must be an int >= 0, got {n_layers!r}")
    if isinstance(mask, Tensor):
        if n_layers is None:
            raise ValueError(f"{function}: pass n_layers with a single mask (the same mask in every layer)")
        layers = [mask] * n_layers
    else:
        layers = list(mask)
        if not layers:
            raise ValueError(f"{function}: the list of per-layer masks is empty")
        if n_layers is not None:
            if n_layers > len(layers):
                raise ValueError(f"{function}: n_layers={n_layers} but only {len(layers)} per-layer masks were given")
            layers = layers[:n_layers]
    matrices = [_boolean_matrix(m, function, f"the mask of layer {i}") for i, m in enumerate(layers)]
    for i, matrix in enumerate(matrices):
        if matrix.shape[0] != matrix.shape[1] or matrix.shape != matrices[0].shape:
            raise ValueError(
                f"{function}: stacked self-attention needs square masks of one size, layer {i} has shape "
                f"{tuple(matrix.shape)} (layer 0: {tuple(matrices[0].shape)})"
            )
    return matrices


def _reach_steps(matrices: list[Tensor], residual: bool) -> list[Tensor]:
    """Reachability after 1, 2, … layers: ``R_l = M_l · R_{l−1}`` in boolean arithmetic.

    The product counts paths in int32 (exact: a count never exceeds S), which for small masks is
    also far quicker than a float matmul that wakes BLAS threads.
    """
    steps: list[Tensor] = []
    reach: Tensor | None = None
    eye = torch.eye(matrices[0].shape[0], dtype=torch.bool, device=matrices[0].device) if matrices else None
    for matrix in matrices:
        hop = matrix | eye if residual else matrix
        reach = hop if reach is None else (hop.to(torch.int32) @ reach.to(torch.int32)) > 0
        steps.append(reach)
    return steps


def receptive_field(mask: Tensor | Sequence[Tensor], n_layers: int | None = None, *, residual: bool = True) -> Tensor:
    """Which positions each query has drawn information from after ``n_layers`` stacked layers (感受野).

    Layer ``l`` lets query ``q`` read the keys ``k`` with ``M_l[q, k]``, whose states already hold
    what *they* reached below, so the reach after ``N`` layers is the boolean matrix product
    ``R = M_N · … · M_2 · M_1`` (``(A·B)[q, j] = OR_k A[q, k] AND B[k, j]``), a boolean matrix power
    when every layer has the same mask. A sliding window of ``W`` (滑动窗口注意力) reaches
    ``N·(W−1)`` positions back: Mistral 7B's 32 layers × window 4096 span about 131K tokens.

    Args:
        mask: one square boolean ``[S, S]`` mask used by every layer, or a sequence of per-layer masks
            (layer 0 first) for patterns that differ by layer (Qwen2's windows, GPT-3's alternation).
        n_layers: number of stacked layers; required with a single mask, optional with a sequence
            (then the first ``n_layers`` are used). ``0`` gives the identity.
        residual: the residual stream (残差连接) carries each position's own state upwards, so a
            position always reaches itself even where its mask row hides it (padding queries).

    Returns:
        ``[S, S]`` boolean, ``True`` where query ``q`` (row) has drawn on position ``j`` (column).
    """
    matrices = _layer_matrices(mask, n_layers, "receptive_field")
    if n_layers == 0 or not matrices:
        size = squeeze_to_matrix(mask if isinstance(mask, Tensor) else list(mask)[0], "receptive_field").shape[0]
        return torch.eye(size, dtype=torch.bool)
    return _reach_steps(matrices, residual)[-1]


def reach_by_layer(
    mask: Tensor | Sequence[Tensor], n_layers: int | None = None, *, query: int, residual: bool = True
) -> Tensor:
    """Row ``query`` of the receptive field after 1, 2, …, ``n_layers`` layers: ``[n_layers, S]`` boolean.

    Row ``l − 1`` equals ``receptive_field(mask, l)[query]``: how far the query's view has grown.
    """
    matrices = _layer_matrices(mask, n_layers, "reach_by_layer")
    if not matrices:
        raise ValueError("reach_by_layer: needs at least one layer")
    size = matrices[0].shape[0]
    if isinstance(query, bool) or not isinstance(query, int) or not 0 <= query < size:
        raise ValueError(f"reach_by_layer: query must be a position in 0..{size - 1}, got {query!r}")
    return torch.stack([step[query] for step in _reach_steps(matrices, residual)])


def compare_masks(reference: Tensor, learner: Tensor) -> Tensor:
    """The cells where two masks disagree: ``reference XOR learner`` (``[Q, KV]`` boolean)."""
    reference = _boolean_matrix(reference, "compare_masks", "the reference mask")
    learner = _boolean_matrix(learner, "compare_masks", "the learner's mask")
    if learner.shape != reference.shape:
        raise ValueError(
            f"compare_masks: the learner's mask has shape {tuple(learner.shape)}, the reference {tuple(reference.shape)}"
        )
    return reference ^ learner


def _is_mask_mod(function: Callable[..., Any]) -> bool:
    """A mask_mod takes exactly four required positional arguments (b, h, q_idx, kv_idx).

    A function whose first parameter is named ``q_len`` is the other form, whatever its arity
    (``def mine(q_len, kv_len, block, summary)`` also has four).
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    if parameters and parameters[0].name == "q_len":
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 4


def evaluate_mask(function: Callable[..., Any], q_len: int, kv_len: int, **params: Any) -> Tensor:
    """Turn a learner's mask into a ``[q_len, kv_len]`` boolean tensor.

    ``function`` is either a mask_mod ``(b, h, q_idx, kv_idx) -> bool tensor`` (evaluated with
    :func:`llmcore.masks.dense_mask`) or a function ``(q_len, kv_len, **params) -> bool tensor``
    that receives those of ``params`` it declares (``window``, ``prefix``, ``stride``, ``block`` …,
    the explorer's slider names; all of them with ``**kwargs``). A function with exactly four
    required positional parameters counts as a mask_mod unless the first is named ``q_len``.
    """
    if not callable(function):
        raise TypeError(f"learner mask must be a mask_mod or a function (q_len, kv_len, **params), got {type(function).__name__}")
    name = getattr(function, "__name__", "the learner's mask")
    if _is_mask_mod(function):
        result = masks.dense_mask(function, 1, 1, q_len, kv_len)
    else:
        result = call_with_accepted(function, q_len, kv_len, **params)
    if not isinstance(result, Tensor):
        raise TypeError(f"{name} returned {type(result).__name__}, expected a boolean torch.Tensor")
    if result.dtype != torch.bool:
        raise TypeError(f"{name} returned dtype {result.dtype}, expected torch.bool (True = may attend)")
    if result.dim() < 2 or any(size != 1 for size in result.shape[:-2]) or tuple(result.shape[-2:]) != (q_len, kv_len):
        raise ValueError(f"{name} returned shape {tuple(result.shape)}, expected ({q_len}, {kv_len}) for length {q_len}")
    return result.reshape(q_len, kv_len)


# ------------------------------------------------------------------------------------------------
# The registry of patterns
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A pattern parameter, shown as an IntSlider named ``name`` in the explorer."""

    name: str
    description: str
    default: Callable[[int, int], int]  # (length, layers) -> value
    low: int
    high: Callable[[int, int, dict], int]  # (length, layers, current values) -> max


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("real", "real tokens", lambda n, layers: max(1, (3 * n) // 4), 1, lambda n, layers, v: n),
        Parameter("prefix", "prefix length", lambda n, layers: n // 2, 0, lambda n, layers, v: n),
        Parameter("part_a", "Part A length", lambda n, layers: n // 2, 0, lambda n, layers, v: n),
        Parameter("window", "window W", lambda n, layers: min(4, n), 1, lambda n, layers, v: n),
        Parameter("stride", "stride", lambda n, layers: min(4, n), 1, lambda n, layers, v: n),
        Parameter("block", "block", lambda n, layers: min(4, n), 1, lambda n, layers, v: n),
        Parameter("summary", "summary keys c", lambda n, layers: 1, 1, lambda n, layers, v: max(1, v.get("block", 1))),
        Parameter("local", "local blocks", lambda n, layers: 2, 1, lambda n, layers, v: n),
        Parameter("vertical", "vertical stride", lambda n, layers: 2, 1, lambda n, layers, v: n),
        Parameter("full_layers", "full-attention layers", lambda n, layers: min(1, layers), 0, lambda n, layers, v: layers),
    )
}


@dataclass(frozen=True)
class MaskPattern:
    """One entry of :data:`MASK_PATTERNS`.

    ``build(n_layers, **params)`` returns one mask_mod per layer, made only of :mod:`llmcore.masks`
    pieces; ``per_layer`` is True when the layers differ.
    """

    name: str
    label: str
    teaches: str
    params: tuple[str, ...]
    build: Callable[..., list[MaskMod]]
    per_layer: bool = False

    def mask_mods(self, n_layers: int = 1, **params: int) -> list[MaskMod]:
        """One mask_mod per layer (layer 0 first)."""
        return self.build(n_layers, **params)

    def masks(self, length: int, n_layers: int = 1, **params: int) -> list[Tensor]:
        """One ``[length, length]`` boolean mask per layer, from :func:`llmcore.masks.dense_mask`."""
        return pattern_masks(self.name, length, n_layers, **params)


def _uniform(make: Callable[..., MaskMod]) -> Callable[..., list[MaskMod]]:
    def every_layer(n_layers: int, **params: int) -> list[MaskMod]:
        mask_mod = make(**params)
        return [mask_mod] * n_layers

    return every_layer


def _qwen_layers(n_layers: int, *, window: int, full_layers: int) -> list[MaskMod]:
    # Qwen2 (llmcore.models.families.qwen): layers i >= max_window_layers slide, the lower ones see all.
    kinds = ["full" if i < full_layers else "sliding" for i in range(n_layers)]
    return [masks.layer_kind_mask(kind, window=window) for kind in kinds]


def _alternating_layers(n_layers: int, *, stride: int) -> list[MaskMod]:
    # GPT-3: the zoo's own layer pattern and mask rule, dense, sparse, dense, sparse, …
    from ..models.families.gpt import alternating_layer_kinds

    return [masks.layer_kind_mask(kind, block=stride) for kind in alternating_layer_kinds(n_layers)]


MASK_PATTERNS: dict[str, MaskPattern] = {
    pattern.name: pattern
    for pattern in (
        MaskPattern(
            "bidirectional", "bidirectional (BERT, encoder)",
            "双向注意力: every token sees every token, density 1 - the encoder of 2017 and BERT.",
            (), _uniform(lambda: masks.full_mask),
        ),
        MaskPattern(
            "padding", "padding (encoder batch)",
            "填充掩码: pad keys are hidden from every query; the pad queries' own rows still see the real tokens.",
            ("real",), _uniform(lambda real: masks.padding_mask(torch.tensor([real]))),
        ),
        MaskPattern(
            "causal", "causal (GPT, decoder)",
            "因果掩码: a query sees itself and the past, never the future; density (S+1)/2S.",
            (), _uniform(lambda: masks.causal_mask),
        ),
        MaskPattern(
            "prefix_lm", "prefix-LM (UniLM, T5 prefix)",
            "前缀语言模型: bidirectional over the prefix, causal after it.",
            ("prefix",), _uniform(lambda prefix: masks.prefix_lm_mask(prefix)),
        ),
        MaskPattern(
            "glm", "GLM blank infilling (Part A / Part B)",
            "自回归空白填充: Part A (corrupted text) is read bidirectionally; Part B (the spans) is written "
            "left to right, seeing all of Part A and the spans before it.",
            ("part_a",), _uniform(lambda part_a: masks.glm_blank_infilling_mask(part_a)),
        ),
        MaskPattern(
            "sliding_window", "sliding window (Mistral)",
            "滑动窗口注意力: W keys per query (itself and W−1 before); the receptive field grows by W−1 per layer.",
            ("window",), _uniform(lambda window: masks.sliding_window_mask(window)),
        ),
        MaskPattern(
            "strided", "strided sparse (Sparse Transformer, GPT-3)",
            "稀疏注意力 (strided): the last `stride` keys plus every stride-th key back; two hops connect any pair.",
            ("stride",), _uniform(lambda stride: masks.strided_mask(stride)),
        ),
        MaskPattern(
            "fixed", "fixed sparse (Sparse Transformer, GPT-3)",
            "稀疏注意力 (fixed): causal inside a block plus the last c 'summary' keys of every block.",
            ("block", "summary"), _uniform(lambda block, summary: masks.fixed_mask(block, summary)),
        ),
        MaskPattern(
            "block_sparse", "block-sparse (Phi-3-small)",
            "块稀疏注意力: the query's block and local−1 blocks before it, plus every vertical-stride-th block.",
            ("block", "local", "vertical"),
            _uniform(lambda block, local, vertical: masks.block_sparse_mask(block, local, vertical)),
        ),
        MaskPattern(
            "qwen_layerwise", "layer-wise windows (Qwen2)",
            "逐层滑动窗口: the lowest `full-attention layers` see everything, the layers above slide a window.",
            ("window", "full_layers"), _qwen_layers, per_layer=True,
        ),
        MaskPattern(
            "alternating", "dense / sparse alternation (GPT-3)",
            "交替的稠密与稀疏注意力层: even layers causal-dense, odd layers strided-sparse.",
            ("stride",), _alternating_layers, per_layer=True,
        ),
    )
}


def _pattern(name: str) -> MaskPattern:
    if name not in MASK_PATTERNS:
        raise ValueError(f"unknown mask pattern {name!r}; known: {sorted(MASK_PATTERNS)}")
    return MASK_PATTERNS[name]


def _check_size(function: str, argument: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{function}: {argument} must be an int >= {low}, got {value!r}")
    return value


def pattern_params(name: str, length: int, n_layers: int = 1, **params: int) -> dict[str, int]:
    """The parameters of pattern ``name``: the given ones, the defaults for the others; unknown names are errors."""
    pattern = _pattern(name)
    unknown = sorted(set(params) - set(pattern.params))
    if unknown:
        takes = ", ".join(pattern.params) or "no parameters"
        raise ValueError(f"mask pattern {name!r} takes {takes}; got {', '.join(unknown)}")
    return {p: params[p] if p in params else PARAMETERS[p].default(length, n_layers) for p in pattern.params}


def pattern_masks(name: str, length: int, n_layers: int = 1, **params: int) -> list[Tensor]:
    """One ``[length, length]`` boolean mask per layer of pattern ``name`` (see :data:`MASK_PATTERNS`).

    Example: ``pattern_masks("sliding_window", 16, window=4)[0]`` is
    ``dense_mask(sliding_window_mask(4), 1, 1, 16, 16)[0, 0]``.
    """
    _check_size("pattern_masks", "length", length)
    _check_size("pattern_masks", "n_layers", n_layers)
    values = pattern_params(name, length, n_layers, **params)
    mask_mods = _pattern(name).build(n_layers, **values)
    dense: dict[int, Tensor] = {}
    for mask_mod in mask_mods:
        if id(mask_mod) not in dense:
            dense[id(mask_mod)] = masks.dense_mask(mask_mod, 1, 1, length, length)[0, 0]
    return [dense[id(mask_mod)] for mask_mod in mask_mods]


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _mask_colormap() -> Any:
    colors = require("matplotlib.colors", "llmcore.viz")
    return colors.ListedColormap([DROP_COLOR, KEEP_COLOR])


def _cell_grid(ax: Any, rows: int, columns: int, *, vertical: bool = True) -> Any:
    """White lines between the cells of a small image (a LineCollection: cheap to draw again when blitting)."""
    collections = require("matplotlib.collections", "llmcore.viz")
    segments = [((x - 0.5, -0.5), (x - 0.5, rows - 0.5)) for x in range(1, columns)] if vertical else []
    segments += [((-0.5, y - 0.5), (columns - 0.5, y - 0.5)) for y in range(1, rows)]
    return ax.add_collection(collections.LineCollection(segments, colors="white", linewidths=0.6, zorder=2),
                             autolim=False)


def _overlay(highlight: Tensor, learner: Tensor | None = None) -> Any:
    """RGBA cells: opaque exactly where ``highlight``; with ``learner``, red where the learner keeps a
    cell the reference hides (one key too many) and amber where it hides one the reference keeps."""
    np = numpy()
    overlay = np.zeros((*highlight.shape, 4))
    if learner is None:
        overlay[to_numpy(highlight)] = DIFF_COLOR
    else:
        overlay[to_numpy(highlight & learner)] = DIFF_COLOR
        overlay[to_numpy(highlight & ~learner)] = MISSING_COLOR
    return overlay


def _draw_mask(ax: Any, matrix: Tensor, *, title: str | None, highlight: Tensor | None, tokens: Sequence[str] | None,
               query: int | None = None, compared: bool = False) -> dict[str, Any]:
    """Draw ``matrix`` into ``ax``; returns the artists a redraw changes (image, overlay, grid, query box, title)."""
    q_len, kv_len = matrix.shape
    handles: dict[str, Any] = {}
    handles["image"] = ax.imshow(to_numpy(matrix), cmap=_mask_colormap(), vmin=0, vmax=1, interpolation="nearest",
                                 aspect="equal")
    if highlight is not None:
        overlay = _overlay(highlight, matrix if compared else None)
        handles["overlay"] = ax.imshow(overlay, interpolation="nearest", aspect="equal")
    if max(q_len, kv_len) <= 32:
        handles["grid"] = _cell_grid(ax, q_len, kv_len)
    set_position_ticks(ax, "x", kv_len, tokens if tokens is not None and len(tokens) == kv_len else None)
    set_position_ticks(ax, "y", q_len, tokens if tokens is not None and len(tokens) == q_len else None)
    if query is not None:
        patches = require("matplotlib.patches", "llmcore.viz")
        handles["query"] = ax.add_patch(
            patches.Rectangle((-0.5, query - 0.5), kv_len, 1, fill=False, edgecolor="#f28e00", linewidth=2, zorder=3)
        )
    ax.set_xlabel("key position (kv)")
    ax.set_ylabel("query position (q)")
    if title is None:
        title = f"{q_len}×{kv_len}, density {mask_density(matrix):.2f}"
    handles["title"] = ax.set_title(title, fontsize=10)
    return handles


def plot_mask(
    mask: Tensor,
    *,
    title: str | None = None,
    highlight: Tensor | None = None,
    ax: Any = None,
    tokens: Sequence[str] | None = None,
    query: int | None = None,
) -> Any:
    """Draw a boolean mask (row = query, column = key, dark = may attend) and return the Figure.

    ``fig.axes[0].images[0].get_array()`` is the mask itself. ``highlight`` (boolean, same shape)
    paints cells red on a second image (the cells where a learner's mask differs); ``query`` outlines
    one row; ``tokens`` labels both axes. With ``ax`` the mask is drawn into that Axes.
    For a mask_mod use :func:`mask_figure`.
    """
    if callable(mask) and not isinstance(mask, Tensor):
        raise TypeError("plot_mask: got a function; for a mask_mod use mask_figure(mask_mod, q_len, kv_len)")
    matrix = _boolean_matrix(mask, "plot_mask")
    if highlight is not None:
        highlight = _boolean_matrix(highlight, "plot_mask", "highlight")
        if highlight.shape != matrix.shape:
            raise ValueError(f"plot_mask: highlight has shape {tuple(highlight.shape)}, the mask {tuple(matrix.shape)}")
    if query is not None and not 0 <= query < matrix.shape[0]:
        raise ValueError(f"plot_mask: query must be in 0..{matrix.shape[0] - 1}, got {query}")
    if ax is None:
        size = min(6.0, 2.5 + 0.12 * max(matrix.shape))
        figure = new_figure(size, size)
        ax = figure.add_subplot()
    _draw_mask(ax, matrix, title=title, highlight=highlight, tokens=tokens, query=query)
    return ax.figure


def mask_figure(
    mask_mod: MaskMod,
    q_len: int,
    kv_len: int | None = None,
    *,
    q_offset: int = 0,
    title: str | None = None,
    highlight: Tensor | None = None,
    tokens: Sequence[str] | None = None,
) -> Any:
    """:func:`plot_mask` of ``dense_mask(mask_mod, 1, 1, q_len, kv_len, q_offset=q_offset)``."""
    if not callable(mask_mod):
        raise TypeError(f"mask_figure: mask_mod must be a function (b, h, q_idx, kv_idx), got {type(mask_mod).__name__}")
    _check_size("mask_figure", "q_len", q_len)
    kv_len = q_len if kv_len is None else _check_size("mask_figure", "kv_len", kv_len)
    mask = masks.dense_mask(mask_mod, 1, 1, q_len, kv_len, q_offset=q_offset)[0, 0]
    return plot_mask(mask, title=title, highlight=highlight, tokens=tokens)


def plot_mask_comparison(
    reference: Tensor,
    learner: Tensor,
    *,
    titles: tuple[str, str] = ("llmcore", "yours"),
    tokens: Sequence[str] | None = None,
) -> Any:
    """Reference beside a learner's mask, the differing cells painted on the learner's side.

    Red: the learner keeps a cell the reference hides (e.g. one key too many in a window); amber:
    the learner hides a cell the reference keeps. ``fig.axes[0].images[0]`` is the reference,
    ``fig.axes[1].images[0]`` the learner's mask and ``fig.axes[1].images[1]`` the overlay, opaque
    exactly at :func:`compare_masks`.
    """
    difference = compare_masks(reference, learner)
    reference, learner = squeeze_to_matrix(reference, "plot_mask_comparison"), squeeze_to_matrix(learner, "plot_mask_comparison")
    figure = new_figure(8.0, 4.2)
    left, right = figure.subplots(1, 2)
    _draw_mask(left, reference, title=titles[0], highlight=None, tokens=tokens)
    count = int(difference.sum())
    _draw_mask(right, learner, title=f"{titles[1]}: {count} cell{'s' if count != 1 else ''} differ", highlight=difference,
               tokens=tokens, compared=True)
    return figure


def _draw_reach(ax: Any, reach: Tensor, query: int) -> dict[str, Any]:
    n_layers, size = reach.shape
    handles: dict[str, Any] = {}
    handles["image"] = ax.imshow(to_numpy(reach), cmap=_mask_colormap(), vmin=0, vmax=1, interpolation="nearest",
                                 aspect="auto")
    handles["grid"] = _cell_grid(ax, n_layers, size, vertical=size <= 32)
    set_position_ticks(ax, "x", size)
    ax.set_yticks(range(n_layers), [str(layer + 1) for layer in range(n_layers)])
    handles["query"] = ax.axvline(query, color="#f28e00", linewidth=1.5, zorder=3)
    ax.set_xlabel("position")
    ax.set_ylabel("after layer")
    handles["title"] = ax.set_title(f"receptive field of query {query}", fontsize=10)
    return handles


def plot_receptive_field(
    mask: Tensor | Sequence[Tensor], n_layers: int | None = None, *, query: int, residual: bool = True
) -> Any:
    """Rows = layers 1 … N, dark = positions query ``query`` has drawn on so far (:func:`reach_by_layer`)."""
    reach = reach_by_layer(mask, n_layers, query=query, residual=residual)
    figure = new_figure(5.0, 1.4 + 0.3 * reach.shape[0])
    _draw_reach(figure.add_subplot(), reach, query)
    return figure


# ------------------------------------------------------------------------------------------------
# The widget
# ------------------------------------------------------------------------------------------------

MAX_LENGTH = 64
MAX_LAYERS = 8
# a mask_mod, a function (q_len, kv_len, **params) -> bool tensor, or {pattern name: either}
LearnerMask = Union[Callable[..., Any], Dict[str, Callable[..., Any]]]
_GLOBAL = ("length", "layers", "layer", "query")


class MaskExplorer(Explorer):
    """The W01 widget; see :func:`mask_explorer`.

    ``controls``: ``"pattern"`` (Dropdown), ``"length"``, ``"layers"`` (N for the receptive field),
    ``"layer"`` (which layer's mask to show, per-layer patterns only), ``"query"``, and one IntSlider
    per pattern parameter (:data:`PARAMETERS`: ``"window"``, ``"prefix"``, ``"part_a"``,
    ``"stride"``, ``"block"``, ``"summary"``, ``"local"``, ``"vertical"``, ``"real"``,
    ``"full_layers"``), shown only for the patterns that use them.

    After every redraw: ``last_mask`` (``[S, S]``, the mask drawn), ``last_layer_masks``,
    ``last_density``, ``last_receptive_field`` (``[S, S]`` after N layers), ``last_reach``
    (``[N, S]``, the chosen query's row after each layer), ``last_learner_mask``,
    ``last_difference`` and ``last_learner_error`` (with a learner's mask), ``last_figure`` and
    ``last_png`` (what ``output`` shows).
    """

    def __init__(self, length: int = 16, learner_mask: LearnerMask | None = None, *,
                 pattern: str = "sliding_window", layers: int = 2, query: int | None = None, **params: int) -> None:
        _check_size("mask_explorer", "length", length, low=2)
        _check_size("mask_explorer", "layers", layers)
        for name, candidate in (learner_mask.items() if isinstance(learner_mask, dict) else [(None, learner_mask)]):
            if name is not None and name not in MASK_PATTERNS:
                raise ValueError(f"mask_explorer: learner_mask has a mask for unknown pattern {name!r}; known: {sorted(MASK_PATTERNS)}")
            if candidate is not None and not callable(candidate):
                raise TypeError(
                    f"mask_explorer: learner_mask must be a mask_mod or a function (q_len, kv_len, **params), "
                    f"or a dict from pattern name to one, got {type(candidate).__name__}"
                )
        values = pattern_params(pattern, length, layers, **params)
        super().__init__()
        self.learner_mask = learner_mask
        self.last_mask: Tensor | None = None
        self.last_layer_masks: list[Tensor] = []
        self.last_density: float | None = None
        self.last_receptive_field: Tensor | None = None
        self.last_reach: Tensor | None = None
        self.last_learner_mask: Tensor | None = None
        self.last_difference: Tensor | None = None
        self.last_learner_error: BaseException | None = None
        self._scene: BlitScene | None = None
        self._handles: list[dict[str, Any]] = []

        max_length = max(MAX_LENGTH, length)
        max_layers = max(MAX_LAYERS, layers)
        options = [(p.label, p.name) for p in MASK_PATTERNS.values()]
        self.controls["pattern"] = dropdown(options, pattern, "pattern")
        self.controls["length"] = int_slider("length", length, 2, max_length, "length S")
        self.controls["layers"] = int_slider("layers", layers, 1, max_layers, "layers N")
        self.controls["layer"] = int_slider("layer", 0, 0, layers - 1, "show layer")
        query = length - 1 if query is None else query
        if not 0 <= query < length:
            raise ValueError(f"mask_explorer: query must be in 0..{length - 1}, got {query}")
        self.controls["query"] = int_slider("query", query, 0, length - 1, "query")
        current = {name: values.get(name, parameter.default(length, layers)) for name, parameter in PARAMETERS.items()}
        for name, parameter in PARAMETERS.items():
            value, high = current[name], parameter.high(length, layers, current)
            if not parameter.low <= value <= high:
                raise ValueError(f"mask_explorer: {name} must be in {parameter.low}..{high} here, got {value}")
            self.controls[name] = int_slider(name, value, parameter.low, max(high, parameter.low), parameter.description)
        self._sync_controls()
        controls = [self.controls[name] for name in ("length", "layers", "query", "layer", *PARAMETERS)]
        self._finish([self.controls["pattern"], *rows_of(controls, 3)])

    @property
    def pattern(self) -> MaskPattern:
        return MASK_PATTERNS[self.controls["pattern"].value]

    def _sync_controls(self) -> None:
        """Ranges follow length and layers; only the current pattern's sliders are shown."""
        length, layers = self.controls["length"].value, self.controls["layers"].value
        self.controls["query"].max = length - 1
        self.controls["layer"].max = layers - 1
        values = {name: self.controls[name].value for name in PARAMETERS}
        for name, parameter in PARAMETERS.items():
            self.controls[name].max = max(parameter.high(length, layers, values), parameter.low)
        pattern = self.pattern
        shown = [*pattern.params, "length", "layers", "query"] + (["layer"] if pattern.per_layer else [])
        self.show_only(shown, [*_GLOBAL, *PARAMETERS])

    def _learner_function(self, pattern: str) -> Callable[..., Any] | None:
        """The learner's mask for ``pattern``: the one function, or its entry in a dict of them."""
        if isinstance(self.learner_mask, dict):
            return self.learner_mask.get(pattern)
        return self.learner_mask

    def _draw(self) -> tuple[Any, str, bytes]:
        pattern = self.pattern
        length, n_layers = self.controls["length"].value, self.controls["layers"].value
        query, layer = self.controls["query"].value, self.controls["layer"].value if pattern.per_layer else 0
        params = {name: self.controls[name].value for name in pattern.params}
        layer_masks = pattern_masks(pattern.name, length, n_layers, **params)
        mask = layer_masks[layer]
        steps = _reach_steps(_layer_matrices(layer_masks, None, "mask_explorer"), residual=True)
        reach = torch.stack([step[query] for step in steps])  # = reach_by_layer(layer_masks, query=query)
        density = mask_density(mask)

        learner, difference, learner_error = None, None, None
        function = self._learner_function(pattern.name)
        if function is not None:
            try:
                learner = evaluate_mask(function, length, length, **params, layer=layer, n_layers=n_layers)
                difference = compare_masks(mask, learner)
            except Exception as error:  # noqa: BLE001 - shown to the learner, not raised in a callback
                learner_error = error

        self.last_mask, self.last_layer_masks, self.last_density = mask, layer_masks, density
        self.last_receptive_field = steps[-1]  # = receptive_field(layer_masks)
        self.last_reach = reach
        self.last_learner_mask, self.last_difference, self.last_learner_error = learner, difference, learner_error

        which = f", layer {layer}" if pattern.per_layer else ""
        titles = [f"llmcore: {pattern.name}{which}"]
        if self.learner_mask is not None:
            if learner is not None:
                count = int(difference.sum())
                titles.append(f"yours: {count} cell{'s' if count != 1 else ''} differ")
            elif learner_error is not None:
                titles.append(f"your mask failed: {type(learner_error).__name__}")
            else:
                titles.append("yours: none for this pattern")
        png = self._render(mask, learner, difference, reach, query, titles)

        reached = reach[-1].nonzero().flatten().tolist()
        kept = int(mask.sum())
        lines = [
            f"<b>{pattern.label}</b> · density {density:.3f} ({kept} of {mask.numel()} query–key pairs)"
            f" · query {query} reaches {len(reached)} position{'s' if len(reached) != 1 else ''}"
            f" (earliest {reached[0] if reached else '–'}) after {n_layers} layer{'s' if n_layers != 1 else ''}",
            f"<i>{pattern.teaches}</i>",
        ]
        if self.learner_mask is not None and function is None:
            lines.append(f"no mask of yours for {pattern.name!r} (yours: {', '.join(sorted(self.learner_mask))})")
        elif self.learner_mask is not None:
            if learner_error is not None:
                message = str(learner_error).replace("<", "&lt;")
                if isinstance(learner_error, NotImplementedError) and not message:
                    message = "not written yet - finish the exercise, then run this cell again"
                lines.append(
                    f"<span style='color:#b00020'>your mask: <b>{type(learner_error).__name__}</b>: {message}</span>"
                )
            else:
                count = int(difference.sum())
                extra, missing = int((difference & learner).sum()), int((difference & ~learner).sum())
                verdict = "matches llmcore" if count == 0 else (
                    f"differs from llmcore in <b>{count}</b> cell{'s' if count != 1 else ''}: "
                    f"<span style='color:#c62828'>{extra} kept that llmcore hides (red)</span>, "
                    f"<span style='color:#b07800'>{missing} hidden that llmcore keeps (amber)</span>"
                )
                lines.append(f"your mask {verdict}")
        return self._scene.figure, "<br>".join(lines), png

    def _render(self, mask: Tensor, learner: Tensor | None, difference: Tensor | None, reach: Tensor, query: int,
                titles: list[str]) -> bytes:
        """Draw into the current scene, or build a new one when the sizes changed (see :class:`BlitScene`)."""
        if learner is None:  # no learner, or the learner's mask failed: an empty panel
            learner = torch.zeros_like(mask)
            difference = torch.zeros_like(mask)
        key = (tuple(mask.shape), tuple(reach.shape))
        scene = self._scene
        if scene is None or scene.key != key:
            panels = 3 if self.learner_mask is not None else 2
            figure = new_figure(3.7 * panels, 3.9)
            axes = figure.subplots(1, panels, width_ratios=[1] * (panels - 1) + [1.1])
            self._handles = [_draw_mask(axes[0], mask, title=titles[0], highlight=None, tokens=None, query=query)]
            if self.learner_mask is not None:
                self._handles.append(
                    _draw_mask(axes[1], learner, title=titles[1], highlight=difference, tokens=None, query=query,
                               compared=True)
                )
            self._handles.append(_draw_reach(axes[-1], reach, query))
            dynamic = [artist for handles in self._handles for artist in handles.values()]
            dynamic += [spine for ax in axes for spine in ax.spines.values()]
            self._scene = BlitScene(figure, dynamic, key)
            return self._scene.render()
        mask_handles, *learner_handles, reach_handles = self._handles
        for handles, matrix, title in zip([mask_handles, *learner_handles], [mask, learner], titles):
            handles["image"].set_data(to_numpy(matrix))
            handles["query"].set_y(query - 0.5)
            handles["title"].set_text(title)
        if learner_handles:
            learner_handles[0]["overlay"].set_data(_overlay(difference, learner))
        reach_handles["image"].set_data(to_numpy(reach))
        reach_handles["query"].set_xdata([query, query])
        reach_handles["title"].set_text(f"receptive field of query {query}")
        return scene.render()


def mask_explorer(length: int = 16, learner_mask: LearnerMask | None = None, **options: Any) -> MaskExplorer:
    """The attention-mask explorer (W01): pattern dropdown, parameter sliders, density and receptive field.

    Args:
        length: sequence length S (2 … 64 on the slider).
        learner_mask: optional learner's mask, a mask_mod ``(b, h, q_idx, kv_idx)`` or a function
            ``(q_len, kv_len, **params) -> bool [q_len, kv_len]`` receiving the slider values it
            declares (``window``, ``prefix``, ``stride``, ``block`` …, and ``layer`` for per-layer
            patterns), or a dict ``{pattern name: such a function}`` to compare each pattern with
            its own. It is drawn beside llmcore's mask, the differing cells counted and painted red
            (yours keeps a key llmcore hides) or amber (yours hides a key llmcore keeps).
        **options: ``pattern`` (a key of :data:`MASK_PATTERNS`, default ``"sliding_window"``),
            ``layers``, ``query``, and initial parameter values such as ``window=4``.

    Display it by leaving it as the last expression of a cell. In a test::

        explorer = mask_explorer(16)
        explorer.controls["window"].value = 5      # redraws
        explorer.last_mask                          # the [16, 16] mask drawn
    """
    return MaskExplorer(length, learner_mask, **options)
