"""W02 · The position-encoding explorer (位置编码): how a Transformer knows where a token is.

Each view draws what an llmcore module computes, never a re-derivation:

* **sinusoidal** (正弦位置编码, Vaswani et al. 2017): :func:`llmcore.positions.sinusoidal_position_encoding`
  as a heat map - every pair of dimensions a clock of its own wavelength, from 2π to 10000·2π.
* **RoPE rotation** (旋转位置编码, Su et al. 2021): a unit vector per 2-D pair rotated by
  :func:`llmcore.rope.apply_rotary` at positions 0 … m; fast pairs spin, slow pairs barely move.
* **RoPE decay**: ``q·k`` of vectors rotated by :class:`llmcore.rope.RotaryEmbedding`, against the
  relative distance (相对距离): the score depends only on the distance, and for aligned vectors it
  decays with it (RoFormer §3.4.3, 远程衰减).
* **ALiBi** (线性偏置, Press et al. 2022): :func:`llmcore.alibi.alibi_bias`, a penalty linear in the
  distance with a different slope per head - steep heads look locally, gentle heads globally.
* **T5 buckets** (相对位置桶, Raffel et al. 2020): :func:`llmcore.relative_position.relative_position_bucket`,
  exact for small offsets and logarithmic up to ``max_distance``.
* **RoPE scaling** (位置插值 / NTK): position interpolation divides every frequency by the factor;
  NTK-aware scaling raises the base so the fast pairs keep their resolution and only the slow ones
  are interpolated (:class:`llmcore.rope.RopeScaling`).
* **GLM 2-D positions** (二维位置编码, Du et al. 2022): :func:`llmcore.data.blank_infilling` on the
  paper's Figure 2 example, with its attention mask.

Every ``plot_*`` function returns a matplotlib Figure whose ``viz_data`` attribute holds the tensors
it drew; :func:`position_explorer` is the widget.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..alibi import alibi_bias, alibi_slopes
from ..data.glm_infilling import BlankInfillingExample, blank_infilling
from ..positions import sinusoidal_position_encoding
from ..relative_position import relative_position_bucket
from ..rope import RopeScaling, RotaryEmbedding, apply_rotary
from ._common import Explorer, _escape, dropdown, figure_png, int_slider, new_figure, numpy, require, rows_of, set_position_ticks, to_numpy
from .masks import _draw_mask

__all__ = [
    "POSITION_VIEWS",
    "PositionExplorer",
    "glm_example",
    "plot_alibi",
    "plot_glm_positions",
    "plot_rope_decay",
    "plot_rope_rotation",
    "plot_rope_scaling",
    "plot_sinusoidal",
    "plot_t5_buckets",
    "position_explorer",
    "rope_scores",
]


def _positive_int(function: str, argument: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{function}: {argument} must be an int >= {low}, got {value!r}")
    return value


def _even_dim(function: str, argument: str, value: object) -> int:
    _positive_int(function, argument, value, low=2)
    if value % 2:  # type: ignore[operator]
        raise ValueError(f"{function}: {argument} must be even (dimensions rotate in pairs), got {value}")
    return value  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# Sinusoidal
# ------------------------------------------------------------------------------------------------


def plot_sinusoidal(n_positions: int = 64, d_model: int = 64, *, base: float = 10000.0) -> Any:
    """Heat map of the 2017 sinusoid ``PE[pos, dim]`` (正弦位置编码) and a few of its columns.

    The heat map is drawn as in chapter 1's own figure: one column per position (x), one row per
    dimension (y, dimension 0 at the bottom), red = −1, blue = +1. ``axes[0].images[0]`` is
    ``sinusoidal_position_encoding(n_positions, d_model).T`` (``[d_model, n_positions]``); the lines of
    ``axes[1]`` are the dimensions ``2i`` (sines) of a few pairs ``i``, each a wave of wavelength
    ``2π·base^(2i/d_model)``: the early dimensions change every token, the late ones barely move.
    """
    _positive_int("plot_sinusoidal", "n_positions", n_positions)
    _even_dim("plot_sinusoidal", "d_model", d_model)
    encoding = sinusoidal_position_encoding(n_positions, d_model, base=base)
    figure = new_figure(9.5, 3.8)
    heat, waves = figure.subplots(1, 2, width_ratios=[1.2, 1])
    image = heat.imshow(to_numpy(encoding.T), cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest",
                        origin="lower")
    figure.colorbar(image, ax=heat, fraction=0.05)
    heat.set(xlabel="position pos", ylabel="dimension", title=f"sinusoidal PE[pos, dim], d_model = {d_model}")
    pairs = sorted({0, d_model // 16, d_model // 8, d_model // 4, d_model // 2 - 1} & set(range(d_model // 2)))
    for pair in pairs:
        waves.plot(range(n_positions), to_numpy(encoding[:, 2 * pair]), label=f"dim {2 * pair} (pair {pair})")
    waves.set(xlabel="position", ylabel="PE", title="sin dimensions: one clock per pair", ylim=(-1.15, 1.15))
    waves.legend(fontsize=7, loc="lower left")
    figure.viz_data = {"encoding": encoding, "dims": [2 * p for p in pairs]}
    return figure


# ------------------------------------------------------------------------------------------------
# RoPE
# ------------------------------------------------------------------------------------------------


def _query_key(head_dim: int, vectors: str | tuple[Tensor, Tensor], seed: int) -> tuple[Tensor, Tensor]:
    if isinstance(vectors, tuple):
        q, k = (torch.as_tensor(v, dtype=torch.float32).flatten() for v in vectors)
        if q.numel() != head_dim or k.numel() != head_dim:
            raise ValueError(f"rope_scores: q and k must have head_dim={head_dim} entries, got {q.numel()} and {k.numel()}")
        return q, k
    if vectors == "ones":
        return torch.ones(head_dim), torch.ones(head_dim)
    if vectors == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(head_dim, generator=generator), torch.randn(head_dim, generator=generator)
    raise ValueError(f"rope_scores: vectors must be 'ones', 'random' or a (q, k) pair of tensors, got {vectors!r}")


def rope_scores(
    head_dim: int,
    max_distance: int,
    *,
    base: float = 10000.0,
    scaling: RopeScaling | None = None,
    vectors: str | tuple[Tensor, Tensor] = "ones",
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``q·k`` of RoPE-rotated vectors against the distance ``0 … max_distance`` (旋转位置编码).

    The query sits at position ``max_distance`` and key ``j`` at position ``max_distance − d``;
    both are rotated by :func:`llmcore.rope.apply_rotary` with the tables of
    :class:`llmcore.rope.RotaryEmbedding` (half-split layout), and the score is their plain dot
    product (no ``1/√d``). ``vectors``: ``"ones"`` (RoFormer's decay picture), ``"random"`` (one
    random pair from ``seed``) or your own ``(q, k)``.

    Returns:
        ``(distances [N+1] int64, scores [N+1] float32)``.
    """
    _even_dim("rope_scores", "head_dim", head_dim)
    _positive_int("rope_scores", "max_distance", max_distance)
    q, k = _query_key(head_dim, vectors, seed)
    rotary = RotaryEmbedding(head_dim, base, scaling=scaling)
    length = max_distance + 1
    cos, sin = rotary(torch.arange(length).unsqueeze(0))  # [1, N+1, D]
    rotated_k = apply_rotary(k.expand(1, 1, length, head_dim), cos, sin)[0, 0]  # keys at 0 … N
    rotated_q = apply_rotary(q.expand(1, 1, 1, head_dim), cos[:, -1:], sin[:, -1:])[0, 0, 0]  # query at N
    scores = (rotated_k @ rotated_q).flip(0)  # index d = key at position N − d
    return torch.arange(length), scores


def plot_rope_decay(
    head_dim: int = 64,
    max_distance: int = 256,
    *,
    base: float = 10000.0,
    vectors: str | tuple[Tensor, Tensor] = "ones",
    seed: int = 0,
) -> Any:
    """``q·k`` against the relative distance, from actually rotated vectors (:func:`rope_scores`).

    ``axes[0].lines[0]`` has x = distances, y = scores. With all-ones vectors the score starts at
    ``head_dim`` and decays, with ripples, as the distance grows (远程衰减): far tokens interact less.
    """
    distances, scores = rope_scores(head_dim, max_distance, base=base, vectors=vectors, seed=seed)
    figure = new_figure(7.0, 3.6)
    ax = figure.add_subplot()
    ax.plot(to_numpy(distances), to_numpy(scores), linewidth=1.2, label=f"q·k, base {base:g}")
    ax.axhline(0, color="gray", linewidth=0.6)
    which = "all-ones" if vectors == "ones" else ("random" if vectors == "random" else "given")
    ax.set(xlabel="relative distance (query − key)", ylabel="q·k (unscaled)",
           title=f"RoPE: q·k of {which} vectors rotated by RotaryEmbedding, head_dim {head_dim}")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    figure.viz_data = {"distances": distances, "scores": scores}
    return figure


def plot_rope_rotation(head_dim: int = 16, position: int = 8, *, base: float = 10000.0, n_pairs: int = 6) -> Any:
    """Each 2-D pair of a RoPE head is a clock (旋转位置编码): rotate ``(1, 0)`` in every pair to position m.

    ``axes[0]``: the path of pair ``i`` (dims ``i`` and ``i + head_dim/2``, half-split layout) for
    positions ``0 … position``, computed by :func:`llmcore.rope.apply_rotary`; each ``Line2D`` has
    x = first dim, y = second dim of that pair. ``axes[1]``: the wavelength ``2π/θ_i`` of every pair
    (tokens per full turn) against the current position - pairs below the line have turned at
    least once.
    """
    _even_dim("plot_rope_rotation", "head_dim", head_dim)
    _positive_int("plot_rope_rotation", "position", position, low=0)
    half = head_dim // 2
    rotary = RotaryEmbedding(head_dim, base)
    x = torch.cat([torch.ones(half), torch.zeros(half)])  # (1, 0) in every pair
    cos, sin = rotary(torch.arange(position + 1).unsqueeze(0))
    rotated = apply_rotary(x.expand(1, 1, position + 1, head_dim), cos, sin)[0, 0]  # [m+1, D]
    pairs = sorted({round(i * (half - 1) / max(1, n_pairs - 1)) for i in range(min(n_pairs, half))})

    patches = require("matplotlib.patches", "llmcore.viz")
    figure = new_figure(9.5, 4.2)
    circle, wavelengths = figure.subplots(1, 2, width_ratios=[1, 1.2])
    circle.add_patch(patches.Circle((0, 0), 1.0, fill=False, color="lightgray"))
    for pair in pairs:
        path_x, path_y = to_numpy(rotated[:, pair]), to_numpy(rotated[:, pair + half])
        # dots, not a polyline: a fast pair jumps up to a radian per token and chords would cross the circle
        (line,) = circle.plot(path_x, path_y, linestyle="", marker="o", markersize=3,
                              label=f"pair {pair}: θ = {float(rotary.inv_freq[pair]):.3g}")
        circle.annotate("", xy=(path_x[-1], path_y[-1]), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=line.get_color(), linewidth=1.5))
    circle.set(xlim=(-1.25, 1.25), ylim=(-1.25, 1.25), aspect="equal", xlabel="dim i", ylabel=f"dim i + {half}",
               title=f"(1, 0) of each pair at positions 0 … {position}")
    circle.legend(fontsize=7, loc="lower left")
    wavelength = 2 * math.pi / rotary.inv_freq
    wavelengths.bar(range(half), to_numpy(wavelength), color="#7a9cc6")
    wavelengths.axhline(max(position, 1), color="#f28e00", label=f"position {position}")
    wavelengths.set_yscale("log")
    wavelengths.set(xlabel="pair i", ylabel="tokens per full turn 2π/θᵢ", title=f"base {base:g}: fast pairs to slow pairs")
    wavelengths.legend(fontsize=8)
    figure.viz_data = {"rotated": rotated, "pairs": pairs, "wavelength": wavelength}
    return figure


def _angle_per_token(head_dim: int, base: float, scaling: RopeScaling | None, length: int) -> Tensor:
    """The rotation angle per token of every pair as RotaryEmbedding applies it (atan2 of the tables at position 1)."""
    rotary = RotaryEmbedding(head_dim, base, scaling=scaling)
    positions = torch.tensor([[0, 1, max(length - 1, 1)]])  # the largest position picks dynamic bases
    cos, sin = rotary(positions)
    return torch.atan2(sin[0, 1, : head_dim // 2], cos[0, 1, : head_dim // 2])


def plot_rope_scaling(
    context_length: int = 8192, *, trained_length: int = 2048, head_dim: int = 64, base: float = 10000.0
) -> Any:
    """Position interpolation beside NTK-aware scaling for a context of ``context_length`` tokens (位置插值 / NTK).

    ``factor = context_length / trained_length`` (at least 1). Left: the angle per token of every
    pair (log scale) as :class:`llmcore.rope.RotaryEmbedding` applies it - unscaled, ``linear``
    (every pair slowed by the factor, so the fast pairs lose resolution) and ``ntk`` (base raised
    by ``factor^(d/(d−2))``: the fast pairs are kept, the slowest slowed by the full factor). The
    dotted line is one turn in ``trained_length`` tokens: pairs below it never completed a turn in
    training, so beyond it they meet angles they never saw. Right: ``q·k`` of all-ones vectors for
    distances ``1 … context_length − 1`` (:func:`rope_scores`) on a log axis: interpolation shifts the
    whole curve right by the factor (nearby tokens blur together), NTK keeps the short range and
    stretches only the long range.
    """
    _positive_int("plot_rope_scaling", "context_length", context_length, low=2)
    _positive_int("plot_rope_scaling", "trained_length", trained_length, low=2)
    _even_dim("plot_rope_scaling", "head_dim", head_dim)
    factor = max(1.0, context_length / trained_length)
    variants: list[tuple[str, RopeScaling | None]] = [
        ("original", None),
        (f"linear (PI) ×{factor:g}", RopeScaling("linear", factor)),
        (f"NTK-aware ×{factor:g}", RopeScaling("ntk", factor)),
    ]
    figure = new_figure(10.5, 4.0)
    angles_ax, scores_ax = figure.subplots(1, 2)
    data: dict[str, Any] = {"factor": factor, "angles": {}, "scores": {}}
    for (label, scaling), style in zip(variants, ("-", "--", "-.")):
        angles = _angle_per_token(head_dim, base, scaling, context_length)
        distances, scores = rope_scores(head_dim, context_length - 1, base=base, scaling=scaling)
        angles_ax.plot(range(head_dim // 2), to_numpy(angles), style, marker=".", label=label)
        scores_ax.plot(to_numpy(distances[1:]), to_numpy(scores[1:]), style, linewidth=0.9, label=label, alpha=0.85)
        data["angles"][label], data["scores"][label] = angles, scores
    data["distances"] = distances
    angles_ax.axhline(2 * math.pi / trained_length, color="gray", linestyle=":", label=f"one turn in {trained_length} tokens")
    angles_ax.set_yscale("log")
    angles_ax.set(xlabel="pair i", ylabel="angle per token (rad)", title=f"frequencies for {context_length} tokens")
    angles_ax.legend(fontsize=7)
    scores_ax.axvline(trained_length, color="gray", linestyle=":", label=f"trained length {trained_length}")
    scores_ax.set_xscale("log")  # PI stretches the whole curve by the factor: a shift on a log axis
    scores_ax.set(xlabel="relative distance (log scale)", ylabel="q·k (all-ones vectors)", title="q·k against distance")
    scores_ax.legend(fontsize=7)
    figure.viz_data = data
    return figure


# ------------------------------------------------------------------------------------------------
# ALiBi and T5
# ------------------------------------------------------------------------------------------------


def plot_alibi(n_heads: int = 8, length: int = 16, *, head: int = 0) -> Any:
    """ALiBi's per-head linear biases (线性偏置, Press et al. 2022).

    ``axes[0].images[0]``: ``alibi_bias(alibi_slopes(n_heads), length, length)[0, head]`` with the
    future (removed by the causal mask) masked out - the masked array's ``.data`` is the full bias.
    ``axes[1]``: bias against distance for every head, one line per head, ``y = −m_h · d``.
    """
    _positive_int("plot_alibi", "n_heads", n_heads)
    _positive_int("plot_alibi", "length", length)
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < n_heads:
        raise ValueError(f"plot_alibi: head must be in 0..{n_heads - 1}, got {head!r}")
    np = numpy()
    slopes = alibi_slopes(n_heads)
    bias = alibi_bias(slopes, length, length)[0]  # [H, Q, KV]
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    figure = new_figure(10.0, 4.0)
    matrix_ax, lines_ax = figure.subplots(1, 2)
    # One colour scale for every head (the steepest head's range): a steep head looks dark, a gentle one light.
    image = matrix_ax.imshow(np.ma.masked_where(to_numpy(future), to_numpy(bias[head])), cmap="viridis",
                             interpolation="nearest", vmin=float(bias.masked_fill(future, 0).min()), vmax=0.0)
    figure.colorbar(image, ax=matrix_ax, fraction=0.05)
    set_position_ticks(matrix_ax, "x", length)
    set_position_ticks(matrix_ax, "y", length)
    matrix_ax.set(xlabel="key position", ylabel="query position",
                  title=f"ALiBi head {head}: −m·(q − kv), m = {float(slopes[head]):.4g}")
    distances = torch.arange(length)
    for h in range(n_heads):
        row = bias[h, length - 1].flip(0)  # the last query's bias at distance 0 … length−1
        lines_ax.plot(to_numpy(distances), to_numpy(row), linewidth=2.5 if h == head else 1,
                      label=f"head {h}: m = {float(slopes[h]):.3g}", alpha=1 if h == head else 0.7)
    lines_ax.set(xlabel="distance q − kv", ylabel="bias added to the score", title=f"{n_heads} heads, slopes 2^(−8h/{n_heads})")
    if n_heads <= 12:
        lines_ax.legend(fontsize=7)
    figure.viz_data = {"slopes": slopes, "bias": bias}
    return figure


def plot_t5_buckets(length: int = 32, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128) -> Any:
    """T5's relative position buckets (相对位置桶): exact near, logarithmic far, one bucket beyond ``max_distance``.

    ``axes[0].images[0]``: ``relative_position_bucket(key − query)`` for positions ``0 … length−1``.
    ``axes[1].lines[0]``: bucket against the offset ``key − query`` over ``±1.5·max_distance``.
    """
    _positive_int("plot_t5_buckets", "length", length)
    positions = torch.arange(length)
    buckets = relative_position_bucket(positions[None, :] - positions[:, None], bidirectional=bidirectional,
                                       num_buckets=num_buckets, max_distance=max_distance)
    reach = int(1.5 * max_distance)
    offsets = torch.arange(-reach, reach + 1 if bidirectional else 1)
    curve = relative_position_bucket(offsets, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    figure = new_figure(10.0, 4.0)
    matrix_ax, curve_ax = figure.subplots(1, 2)
    image = matrix_ax.imshow(to_numpy(buckets), cmap="viridis", interpolation="nearest", vmin=0, vmax=num_buckets - 1)
    figure.colorbar(image, ax=matrix_ax, fraction=0.05)
    set_position_ticks(matrix_ax, "x", length)
    set_position_ticks(matrix_ax, "y", length)
    kind = "bidirectional (encoder)" if bidirectional else "causal (decoder)"
    matrix_ax.set(xlabel="key position", ylabel="query position", title=f"T5 bucket ids, {kind}")
    curve_ax.step(to_numpy(offsets), to_numpy(curve), where="mid", linewidth=1.2)
    for edge in (-max_distance, max_distance) if bidirectional else (-max_distance,):
        curve_ax.axvline(edge, color="gray", linestyle=":")
    curve_ax.set(xlabel="offset key − query", ylabel="bucket",
                 title=f"{num_buckets} buckets, max_distance {max_distance}")
    figure.viz_data = {"buckets": buckets, "offsets": offsets, "curve": curve}
    return figure


# ------------------------------------------------------------------------------------------------
# GLM 2-D positions
# ------------------------------------------------------------------------------------------------

GLM_TOKENS = ("x1", "x2", "x3", "x4", "x5", "x6")
GLM_SPANS = ((2, 3), (4, 6))


def glm_example(
    tokens: Sequence[str] = GLM_TOKENS, spans: Sequence[tuple[int, int]] = GLM_SPANS, order: Sequence[int] = (1, 0)
) -> tuple[BlankInfillingExample, list[str]]:
    """:func:`llmcore.data.blank_infilling` on words: returns the example and the label of every input token.

    The default is Figure 2 of the GLM paper: ``x1 … x6`` with spans ``[x3]`` and ``[x5, x6]``, Part
    B in the order (x5 x6, x3).
    """
    names = [*tokens, "[M]", "[S]", "[E]"]
    mask_id, start_id, end_id = len(tokens), len(tokens) + 1, len(tokens) + 2
    example = blank_infilling(list(range(len(tokens))), spans, mask_token_id=mask_id, start_token_id=start_id,
                              end_token_id=end_id, order=list(order))
    return example, [names[i] for i in example.input_ids.tolist()]


def plot_glm_positions(
    tokens: Sequence[str] = GLM_TOKENS, spans: Sequence[tuple[int, int]] = GLM_SPANS, order: Sequence[int] = (1, 0)
) -> Any:
    """GLM's two position ids (二维位置编码) for a blank-infilling example, and its attention mask.

    ``axes[0].images[0]`` is ``stack([position_ids, block_position_ids])`` of the example built by
    :func:`llmcore.data.blank_infilling`: every token of a span carries the position of its [MASK]
    in Part A (so the model cannot read the span's length), and its index inside the span.
    ``axes[1].images[0]`` is the example's ``attention_mask()``: Part A bidirectional, Part B causal.
    """
    example, labels = glm_example(tokens, spans, order)
    ids = torch.stack([example.position_ids, example.block_position_ids])
    figure = new_figure(max(7.0, 0.55 * len(labels) + 2), 6.4)
    ids_ax, mask_ax = figure.subplots(2, 1, height_ratios=[1, 2.6])
    ids_ax.imshow(to_numpy(ids), cmap="Blues", aspect="auto", interpolation="nearest", vmin=0,
                  vmax=max(1, int(ids.max())) * 1.6)
    for row in range(2):
        for column in range(ids.shape[1]):
            ids_ax.text(column, row, str(int(ids[row, column])), ha="center", va="center", fontsize=9)
    ids_ax.set_yticks([0, 1], ["position", "block position"])
    set_position_ticks(ids_ax, "x", len(labels), labels)
    ids_ax.axvline(example.part_a_length - 0.5, color="#f28e00", linewidth=2)
    ids_ax.set_title(f"GLM 2-D positions: Part A = {example.part_a_length} tokens | Part B = the spans", fontsize=10)
    _draw_mask(mask_ax, example.attention_mask(), title="GLM attention mask (Part A bidirectional, Part B causal)",
               highlight=None, tokens=labels)
    figure.viz_data = {"example": example, "labels": labels, "ids": ids}
    return figure


# ------------------------------------------------------------------------------------------------
# The widget
# ------------------------------------------------------------------------------------------------

# view name → (dropdown label, controls it uses, figure from the control values)
POSITION_VIEWS: dict[str, tuple[str, tuple[str, ...], Callable[[dict], Any]]] = {
    "sinusoidal": ("sinusoidal (2017)", ("positions", "d_model"),
                   lambda v: plot_sinusoidal(v["positions"], v["d_model"])),
    "rope_rotation": ("RoPE: rotation of each pair", ("head_dim", "position", "base"),
                      lambda v: plot_rope_rotation(v["head_dim"], v["position"], base=v["base"])),
    "rope_decay": ("RoPE: q·k against distance", ("head_dim", "distance", "base", "vectors"),
                   lambda v: plot_rope_decay(v["head_dim"], v["distance"], base=v["base"], vectors=v["vectors"])),
    "alibi": ("ALiBi: biases per head", ("heads", "length", "head"),
              lambda v: plot_alibi(v["heads"], v["length"], head=v["head"])),
    "t5_buckets": ("T5: relative buckets", ("length", "buckets", "max_distance", "bidirectional"),
                   lambda v: plot_t5_buckets(v["length"], bidirectional=v["bidirectional"], num_buckets=v["buckets"],
                                             max_distance=v["max_distance"])),
    "rope_scaling": ("RoPE scaling: interpolation vs NTK", ("context", "trained", "head_dim", "base"),
                     lambda v: plot_rope_scaling(v["context"], trained_length=v["trained"], head_dim=v["head_dim"],
                                                 base=v["base"])),
    "glm_2d": ("GLM: 2-D positions", ("order",), lambda v: plot_glm_positions(order=v["order"])),
}

_VIEW_FUNCTIONS = {
    "sinusoidal": plot_sinusoidal, "rope_rotation": plot_rope_rotation, "rope_decay": plot_rope_decay,
    "alibi": plot_alibi, "t5_buckets": plot_t5_buckets, "rope_scaling": plot_rope_scaling, "glm_2d": plot_glm_positions,
}

# Controls that change what a view shows but not its labels' sizes: their figures reuse the layout.
_LAYOUT_NEUTRAL: dict[str, tuple[str, ...]] = {
    "rope_rotation": ("position",),
    "rope_decay": ("vectors",),
    "alibi": ("head",),
    "t5_buckets": ("bidirectional",),
    "glm_2d": ("order",),
}

_BASES = [("10 000 (RoFormer, LLaMA 1–2)", 10000.0), ("500 000 (LLaMA 3)", 500000.0), ("1 000 000 (Qwen2)", 1000000.0)]
_ORDERS = [("x5 x6 first, then x3 (paper)", (1, 0)), ("x3 first, then x5 x6", (0, 1))]


class PositionExplorer(Explorer):
    """The W02 widget; see :func:`position_explorer`.

    ``controls``: ``"view"`` (Dropdown of :data:`POSITION_VIEWS`) and the controls of the views
    (``"positions"``, ``"d_model"``, ``"head_dim"``, ``"position"``, ``"distance"``, ``"base"``,
    ``"vectors"``, ``"heads"``, ``"head"``, ``"length"``, ``"buckets"``, ``"max_distance"``,
    ``"bidirectional"``, ``"context"``, ``"trained"``, ``"order"``), only the current view's shown.
    After every redraw ``last_view`` and ``last_data`` (the tensors drawn, the figure's ``viz_data``).
    """

    def __init__(self, view: str = "sinusoidal") -> None:
        if view not in POSITION_VIEWS:
            raise ValueError(f"position_explorer: unknown view {view!r}; known: {sorted(POSITION_VIEWS)}")
        super().__init__()
        widgets = require("ipywidgets", "llmcore.viz widgets")
        self.last_view: str | None = None
        self.last_data: dict[str, Any] = {}
        self._layouts: dict[tuple, list[Any]] = {}
        c = self.controls
        c["view"] = dropdown([(label, name) for name, (label, _, _) in POSITION_VIEWS.items()], view, "view")
        c["positions"] = int_slider("positions", 64, 8, 256, "positions", step=8)
        c["d_model"] = int_slider("d_model", 64, 8, 256, "d_model", step=8)
        c["head_dim"] = int_slider("head_dim", 64, 4, 128, "head_dim", step=4)
        c["position"] = int_slider("position", 12, 0, 128, "position m")
        c["distance"] = int_slider("distance", 256, 16, 2048, "max distance", step=16)
        c["base"] = dropdown(_BASES, 10000.0, "base θ")
        c["vectors"] = dropdown([("all ones", "ones"), ("random", "random")], "ones", "q, k")
        c["heads"] = int_slider("heads", 8, 1, 16, "heads")
        c["head"] = int_slider("head", 0, 0, 7, "head")
        c["length"] = int_slider("length", 16, 4, 64, "length")
        c["buckets"] = int_slider("buckets", 32, 4, 64, "buckets", step=2)
        c["max_distance"] = int_slider("max_distance", 128, 8, 256, "max_distance", step=8)
        c["bidirectional"] = widgets.Checkbox(value=True, description="bidirectional (encoder)")
        c["context"] = int_slider("context", 8192, 1024, 32768, "context length", step=1024)
        c["trained"] = int_slider("trained", 2048, 512, 8192, "trained length", step=512)
        c["order"] = dropdown(_ORDERS, (1, 0), "Part B order")
        self._sync_controls()
        others = [control for name, control in c.items() if name != "view"]
        self._finish([c["view"], *rows_of(others, 3)])

    def _render_reusing_layout(self, figure: Any, key: tuple) -> bytes:
        """Constrained layout is half of a redraw: lay a figure out once per view and sizes, then reuse the positions.

        Controls in :data:`_LAYOUT_NEUTRAL` (which head, which position …) change data, not labels,
        so the figure they give has the same layout as the last one drawn with the other values.
        """
        positions = self._layouts.get(key)
        if positions is not None and len(positions) == len(figure.axes):
            figure.set_layout_engine("none")
            for ax, position in zip(figure.axes, positions):
                ax.set_position(position)
            return figure_png(figure)
        png = figure_png(figure)  # constrained layout places everything
        self._layouts[key] = [ax.get_position(original=True) for ax in figure.axes]
        return png

    def _sync_controls(self) -> None:
        self.controls["head"].max = self.controls["heads"].value - 1
        _, shown, _ = POSITION_VIEWS[self.controls["view"].value]
        self.show_only(shown, [name for name in self.controls if name != "view"])

    def _draw(self) -> tuple[Any, str]:
        view = self.controls["view"].value
        label, names, draw = POSITION_VIEWS[view]
        values = {name: self.controls[name].value for name in names}
        figure = draw(values)
        png = self._render_reusing_layout(figure, (view, *(values[n] for n in names if n not in _LAYOUT_NEUTRAL.get(view, ()))))
        self.last_view, self.last_data = view, figure.viz_data
        return figure, f"<b>{label}</b> · <i>{caption(_VIEW_FUNCTIONS[view])}</i>", png


def caption(function: Callable[..., Any]) -> str:
    """The first line of ``function``'s docstring as HTML: reST literals and roles become <code>, the rest is escaped."""
    summary = _escape((function.__doc__ or "").strip().splitlines()[0])
    summary = re.sub(r"``(.+?)``", r"<code>\1</code>", summary)
    return re.sub(r"(?::\w+:)?`~?([^`]+)`", r"<code>\1</code>", summary)


def position_explorer(view: str = "sinusoidal") -> PositionExplorer:
    """The position-encoding explorer (W02): a dropdown of views (:data:`POSITION_VIEWS`) and their sliders.

    ``explorer.controls["view"].value = "rope_decay"`` switches view; ``explorer.last_data`` holds
    the tensors drawn (e.g. ``"scores"`` of the RoPE decay, ``"bias"`` of ALiBi).
    """
    return PositionExplorer(view)
