"""llmcore.viz draws exactly what llmcore computes, and its widgets redraw when a control moves.

Figures are checked through their artists (image arrays, line data, bar heights), widgets in-kernel
through ``controls`` and ``last_*`` and the PNG in their ``ipywidgets.Output``. The real-browser
test of the mask explorer is tests/test_browser_widgets.py.
"""

from __future__ import annotations

import base64
import math

import pytest

pytest.importorskip("matplotlib", reason="llmcore.viz draws with matplotlib (the course extra)")
pytest.importorskip("ipywidgets", reason="llmcore.viz widgets need ipywidgets (the course extra)")

import numpy as np  # noqa: E402  (matplotlib brings numpy)
import torch  # noqa: E402

import llmcore  # noqa: E402
from llmcore import masks, viz  # noqa: E402
from llmcore.alibi import alibi_bias, alibi_slopes  # noqa: E402
from llmcore.data import blank_infilling  # noqa: E402
from llmcore.positions import sinusoidal_position_encoding  # noqa: E402
from llmcore.relative_position import relative_position_bucket  # noqa: E402
from llmcore.rope import RopeScaling, RotaryEmbedding, apply_rotary, rope_inverse_frequencies  # noqa: E402


def dense(mask_mod, q_len, kv_len=None):
    return masks.dense_mask(mask_mod, 1, 1, q_len, q_len if kv_len is None else kv_len)[0, 0]


def image(figure, axes=0, index=0):
    return figure.axes[axes].images[index].get_array()


def shown_png(widget) -> bytes:
    (output,) = widget.output.outputs
    assert output["output_type"] == "display_data"
    return base64.b64decode(output["data"]["image/png"])


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """Nothing in llmcore.viz may register a figure with pyplot (no global state leaks)."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


# ------------------------------------------------------------------------------------------------
# W01 masks
# ------------------------------------------------------------------------------------------------


def test_plot_mask_image_is_the_dense_mask_for_every_pattern():
    for name in viz.MASK_PATTERNS:
        for layer_mask in viz.pattern_masks(name, 12, 2 if viz.MASK_PATTERNS[name].per_layer else 1):
            figure = viz.plot_mask(layer_mask)
            assert np.array_equal(image(figure), layer_mask.numpy()), name
    sliding = dense(masks.sliding_window_mask(3), 10)
    figure = viz.mask_figure(masks.sliding_window_mask(3), 10)
    assert np.array_equal(image(figure), sliding.numpy())
    assert type(figure.canvas).__name__ == "FigureCanvasAgg"
    assert figure.axes[0].get_title() == "10×10, density 0.27"
    offset = viz.mask_figure(masks.causal_mask, 3, 7, q_offset=4)  # the last 3 of 7 queries, bottom-right aligned
    assert np.array_equal(image(offset), masks.dense_mask(masks.causal_mask, 1, 1, 3, 7, q_offset=4)[0, 0].numpy())


def test_patterns_are_llmcore_masks():
    """Every registry entry evaluates llmcore's mask_mods; the per-layer ones follow the zoo's layer rules."""
    n = 16
    assert torch.equal(viz.pattern_masks("causal", n)[0], dense(masks.causal_mask, n))
    assert torch.equal(viz.pattern_masks("prefix_lm", n, prefix=5)[0], dense(masks.prefix_lm_mask(5), n))
    assert torch.equal(viz.pattern_masks("glm", n, part_a=6)[0], dense(masks.glm_blank_infilling_mask(6), n))
    assert torch.equal(viz.pattern_masks("strided", n, stride=3)[0], dense(masks.strided_mask(3), n))
    assert torch.equal(viz.pattern_masks("fixed", n, block=4, summary=2)[0], dense(masks.fixed_mask(4, 2), n))
    assert torch.equal(
        viz.pattern_masks("block_sparse", n, block=2, local=1, vertical=2)[0], dense(masks.block_sparse_mask(2, 1, 2), n)
    )
    padding = viz.pattern_masks("padding", n, real=10)[0]
    assert padding[:, :10].all() and not padding[:, 10:].any()

    from llmcore.models import ModelConfig
    from llmcore.models.stack import layer_mask_mod

    qwen = viz.pattern_masks("qwen_layerwise", n, 4, window=3, full_layers=1)
    config = ModelConfig(vocab_size=8, hidden_size=8, n_layers=4, n_heads=2, intermediate_size=8, sliding_window=3,
                         layer_kinds=("full", "sliding", "sliding", "sliding"))
    for mask, kind in zip(qwen, config.resolved_layer_kinds):
        assert torch.equal(mask, dense(layer_mask_mod(config, kind, causal=True), n))
    gpt3 = viz.pattern_masks("alternating", n, 4, stride=4)
    config = ModelConfig(vocab_size=8, hidden_size=8, n_layers=4, n_heads=2, intermediate_size=8, sparse_block=4,
                         layer_kinds=("full", "strided", "full", "strided"))
    for mask, kind in zip(gpt3, config.resolved_layer_kinds):
        assert torch.equal(mask, dense(layer_mask_mod(config, kind, causal=True), n))


def test_density():
    assert viz.mask_density(dense(masks.causal_mask, 16)) == 136 / 256
    assert viz.mask_density(dense(masks.full_mask, 5)) == 1.0
    assert viz.mask_density(dense(masks.sliding_window_mask(3), 6)) == 15 / 36
    with pytest.raises(TypeError, match="boolean"):
        viz.mask_density(torch.ones(3, 3))


def test_receptive_field_of_a_window_of_3_over_2_layers_by_hand():
    window = dense(masks.sliding_window_mask(3), 6)
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],  # 4 = 2 layers × (3 − 1) positions back
            [0, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(viz.receptive_field(window, 2), expected)
    assert torch.equal(viz.receptive_field(window, 1), window)
    assert torch.equal(viz.receptive_field(window, 0), torch.eye(6, dtype=torch.bool))
    assert torch.equal(viz.reach_by_layer(window, 2, query=5), torch.stack([window[5], expected[5]]))


def test_receptive_field_reaches_L_times_W_minus_1_back():
    for window, layers in [(4, 3), (5, 2), (2, 7)]:
        field = viz.receptive_field(dense(masks.sliding_window_mask(window), 40), layers)
        reached = field[39].nonzero().flatten()
        assert reached.min().item() == 39 - layers * (window - 1) and reached.max().item() == 39
    # per-layer masks multiply in order: a full layer on top of a window-1 layer sees everything
    full, only_self = dense(masks.causal_mask, 8), dense(masks.sliding_window_mask(1), 8)
    assert torch.equal(viz.receptive_field([only_self, full]), full)
    # the residual stream keeps a padded query's own state even though its row hides it
    padded = viz.pattern_masks("padding", 6, real=4)[0]
    assert viz.receptive_field(padded, 1)[5, 5] and not viz.receptive_field(padded, 1, residual=False)[5, 5]


def test_receptive_field_errors_name_the_problem():
    with pytest.raises(ValueError, match="square"):
        viz.receptive_field(torch.ones(3, 4, dtype=torch.bool), 2)
    with pytest.raises(TypeError, match="boolean"):
        viz.receptive_field(torch.ones(3, 3), 2)
    with pytest.raises(ValueError, match="n_layers"):
        viz.receptive_field(torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_layers must be an int >= 0"):
        viz.receptive_field(torch.ones(3, 3, dtype=torch.bool), -1)
    with pytest.raises(ValueError, match="query must be a position in 0..2"):
        viz.reach_by_layer(torch.ones(3, 3, dtype=torch.bool), 1, query=3)


def test_comparison_highlights_exactly_the_differing_cells():
    reference = dense(masks.sliding_window_mask(3), 8)
    learner = dense(masks.sliding_window_mask(4), 8)  # the classic off-by-one: W + 1 keys
    difference = viz.compare_masks(reference, learner)
    assert torch.equal(difference, reference ^ learner) and int(difference.sum()) == 5
    figure = viz.plot_mask_comparison(reference, learner)
    assert np.array_equal(image(figure, 0), reference.numpy())
    assert np.array_equal(image(figure, 1), learner.numpy())
    overlay = np.asarray(image(figure, 1, 1))
    assert np.array_equal(overlay[..., 3] > 0, difference.numpy())
    assert "5 cells differ" in figure.axes[1].get_title()
    swapped = np.asarray(viz.plot_mask_comparison(learner, reference).axes[1].images[1].get_array())
    assert all(tuple(cell) == viz._common.DIFF_COLOR for cell in overlay[difference.numpy()])  # red: one key too many
    assert all(tuple(cell) == viz._common.MISSING_COLOR for cell in swapped[difference.numpy()])  # amber: one too few
    with pytest.raises(ValueError, match=r"learner's mask has shape \(8, 7\)"):
        viz.compare_masks(reference, learner[:, :7])


def test_plot_mask_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\[Q, KV\].*\(2, 4, 4\)"):
        viz.plot_mask(torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        viz.plot_mask(torch.ones(4, 4))
    with pytest.raises(TypeError, match="mask_figure"):
        viz.plot_mask(masks.causal_mask)
    with pytest.raises(ValueError, match="unknown mask pattern 'nope'"):
        viz.pattern_masks("nope", 8)
    with pytest.raises(ValueError, match="'causal' takes no parameters; got window"):
        viz.pattern_masks("causal", 8, window=3)
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        viz.mask_explorer(length=1)
    with pytest.raises(TypeError, match="learner_mask"):
        viz.mask_explorer(learner_mask="kv <= q")


def test_mask_explorer_redraws_when_the_window_slider_moves():
    explorer = viz.mask_explorer(16)
    assert explorer.controls["pattern"].value == "sliding_window"
    before_png, before_count = shown_png(explorer), explorer.redraws
    assert torch.equal(explorer.last_mask, dense(masks.sliding_window_mask(4), 16))
    explorer.controls["window"].value = 5
    assert explorer.redraws == before_count + 1
    assert torch.equal(explorer.last_mask, dense(masks.sliding_window_mask(5), 16))
    assert explorer.last_png == shown_png(explorer) != before_png
    assert np.array_equal(image(explorer.last_figure), explorer.last_mask.numpy())
    assert explorer.last_density == viz.mask_density(explorer.last_mask)
    assert "density 0.273 (70 of 256" in explorer.info.value
    # receptive field of the chosen query after N layers: N counts layers, L is the query length
    assert explorer.controls["layers"].description == "layers N"
    explorer.controls["layers"].value = 3
    explorer.controls["query"].value = 12
    assert torch.equal(explorer.last_reach, viz.reach_by_layer(explorer.last_mask, 3, query=12))
    assert explorer.last_reach[-1].nonzero().min().item() == 12 - 3 * 4
    assert torch.equal(explorer.last_receptive_field, viz.receptive_field(explorer.last_mask, 3))
    assert np.array_equal(image(explorer.last_figure, 1), explorer.last_reach.numpy())


def test_mask_explorer_shows_each_patterns_own_sliders_and_follows_the_length():
    explorer = viz.mask_explorer(16, pattern="causal")
    visible = lambda: {name for name, c in explorer.controls.items() if c.layout.display != "none"}  # noqa: E731
    assert "window" not in visible() and "layer" not in visible()
    explorer.controls["pattern"].value = "fixed"
    assert {"block", "summary"} <= visible() and "window" not in visible()
    assert torch.equal(explorer.last_mask, dense(masks.fixed_mask(4, 1), 16))
    explorer.controls["pattern"].value = "qwen_layerwise"
    assert {"window", "full_layers", "layer"} <= visible()
    explorer.controls["layer"].value = 1
    assert torch.equal(explorer.last_mask, dense(masks.and_masks(masks.causal_mask, masks.sliding_window_mask(4)), 16))
    count = explorer.redraws
    explorer.controls["length"].value = 8  # clamps window, query, … and redraws once
    assert explorer.redraws == count + 1
    assert explorer.last_mask.shape == (8, 8) and explorer.controls["query"].max == 7
    assert explorer.controls["window"].max == 8
    with explorer.hold():  # several moves, one redraw
        explorer.controls["pattern"].value = "sliding_window"
        explorer.controls["length"].value = 20
        explorer.controls["window"].value = 9
    assert explorer.redraws == count + 2 and explorer.last_error is None
    assert torch.equal(explorer.last_mask, dense(masks.sliding_window_mask(9), 20))


def test_mask_explorer_compares_a_learners_mask():
    def off_by_one(b, h, q_idx, kv_idx):  # attention-gym's q − kv <= W: one key too many
        return (q_idx - kv_idx >= 0) & (q_idx - kv_idx <= 4)

    explorer = viz.mask_explorer(12, learner_mask=off_by_one, window=4)
    reference, learner = dense(masks.sliding_window_mask(4), 12), dense(off_by_one, 12)
    assert torch.equal(explorer.last_difference, reference ^ learner)
    assert int(explorer.last_difference.sum()) == 8 and "<b>8</b> cells" in explorer.info.value
    overlay = np.asarray(image(explorer.last_figure, 1, 1))
    assert np.array_equal(overlay[..., 3] > 0, (reference ^ learner).numpy())

    def windowed(q_len, kv_len, window):  # the function form receives the slider values it declares
        q, kv = torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :]
        return (q - kv >= 0) & (q - kv < window)

    explorer = viz.mask_explorer(12, learner_mask=windowed)
    explorer.controls["window"].value = 6
    assert int(explorer.last_difference.sum()) == 0 and "matches llmcore" in explorer.info.value

    def fixed(q_len, kv_len, block, summary):  # four parameters, but named as the function form
        return masks.dense_mask(masks.fixed_mask(block, summary), 1, 1, q_len, kv_len)[0, 0]

    assert torch.equal(viz.evaluate_mask(fixed, 9, 9, block=3, summary=1), dense(masks.fixed_mask(3, 1), 9))
    per_pattern = viz.mask_explorer(12, pattern="causal", learner_mask={"causal": masks.causal_mask, "sliding_window": windowed})
    assert int(per_pattern.last_difference.sum()) == 0
    per_pattern.controls["pattern"].value = "strided"  # no learner mask for it: an empty panel, no error
    assert per_pattern.last_learner_mask is None and per_pattern.last_error is None
    assert "no mask of yours for 'strided'" in per_pattern.info.value
    assert not np.asarray(image(per_pattern.last_figure, 1)).any()

    def wrong_shape(q_len, kv_len):
        return torch.ones(q_len, kv_len - 1, dtype=torch.bool)

    explorer = viz.mask_explorer(12, learner_mask=wrong_shape)
    assert explorer.last_error is None and explorer.last_mask is not None  # the reference still shows
    assert isinstance(explorer.last_learner_error, ValueError)
    assert "wrong_shape returned shape (12, 11), expected (12, 12)" in explorer.info.value


# ------------------------------------------------------------------------------------------------
# W02 positions
# ------------------------------------------------------------------------------------------------


def test_sinusoidal_heat_map_is_the_encoding():
    figure = viz.plot_sinusoidal(32, 16)
    # Drawn like chapter 1's own figure: positions along x, dimensions up y from the bottom, RdBu.
    assert np.array_equal(image(figure), sinusoidal_position_encoding(32, 16).T.numpy())
    heat = figure.axes[0]
    assert heat.get_xlabel().startswith("position") and heat.get_ylabel() == "dimension"
    assert heat.images[0].origin == "lower" and heat.images[0].get_cmap().name == "RdBu"
    for line, dim in zip(figure.axes[1].lines, figure.viz_data["dims"]):
        assert np.array_equal(line.get_ydata(), sinusoidal_position_encoding(32, 16)[:, dim].numpy())


def test_rope_decay_curve_is_q_dot_k_of_vectors_rotated_by_rotary_embedding():
    head_dim, n = 32, 40
    figure = viz.plot_rope_decay(head_dim, n, vectors="random", seed=3)
    line = figure.axes[0].lines[0]
    generator = torch.Generator().manual_seed(3)
    q, k = torch.randn(head_dim, generator=generator), torch.randn(head_dim, generator=generator)
    rotary = RotaryEmbedding(head_dim)
    expected = []
    for distance in range(n + 1):  # query at position 50, key `distance` before it: only the distance matters
        cos, sin = rotary(torch.tensor([[50 - distance, 50]]))
        rk = apply_rotary(k.view(1, 1, 1, -1), cos[:, :1], sin[:, :1])
        rq = apply_rotary(q.view(1, 1, 1, -1), cos[:, 1:], sin[:, 1:])
        expected.append(float((rq * rk).sum()))
    assert np.array_equal(line.get_xdata(), np.arange(n + 1))
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-4, atol=1e-4)
    ones = viz.rope_scores(head_dim, 200)[1]
    assert ones[0].item() == pytest.approx(head_dim) and ones[200].abs() < ones[0]  # the long-range decay


def test_rope_rotation_paths_are_apply_rotary():
    figure = viz.plot_rope_rotation(8, 5)
    rotary = RotaryEmbedding(8)
    cos, sin = rotary(torch.arange(6)[None])
    rotated = apply_rotary(torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]).expand(1, 1, 6, 8), cos, sin)[0, 0]
    for line, pair in zip(figure.axes[0].lines, figure.viz_data["pairs"]):
        assert np.array_equal(line.get_xdata(), rotated[:, pair].numpy())
        assert np.array_equal(line.get_ydata(), rotated[:, pair + 4].numpy())
        np.testing.assert_allclose(np.hypot(line.get_xdata(), line.get_ydata()), 1.0, rtol=1e-6)


def test_alibi_image_is_alibi_bias():
    figure = viz.plot_alibi(8, 10, head=3)
    bias = alibi_bias(alibi_slopes(8), 10, 10)[0, 3]
    shown = image(figure)
    assert np.array_equal(shown.data, bias.numpy())
    assert np.array_equal(shown.mask, np.triu(np.ones((10, 10), dtype=bool), 1))  # the future is masked
    for h, line in enumerate(figure.axes[1].lines):
        np.testing.assert_allclose(line.get_ydata(), -alibi_slopes(8)[h].item() * np.arange(10), rtol=1e-6)


def test_t5_bucket_image_is_relative_position_bucket():
    figure = viz.plot_t5_buckets(20, bidirectional=False, num_buckets=16, max_distance=32)
    positions = torch.arange(20)
    expected = relative_position_bucket(positions[None] - positions[:, None], bidirectional=False, num_buckets=16,
                                        max_distance=32)
    assert np.array_equal(image(figure), expected.numpy())
    curve = figure.axes[1].lines[0]
    offsets = torch.as_tensor(curve.get_xdata())
    assert np.array_equal(curve.get_ydata(), relative_position_bucket(offsets, bidirectional=False, num_buckets=16,
                                                                      max_distance=32).numpy())


def test_rope_scaling_compares_interpolation_and_ntk():
    figure = viz.plot_rope_scaling(8192, trained_length=2048, head_dim=16)
    data = figure.viz_data
    assert data["factor"] == 4.0
    original, linear, ntk = (data["angles"][label] for label in data["angles"])
    torch.testing.assert_close(original, rope_inverse_frequencies(16))
    torch.testing.assert_close(linear, rope_inverse_frequencies(16) / 4)
    torch.testing.assert_close(ntk, rope_inverse_frequencies(16, scaling=RopeScaling("ntk", 4.0)))
    assert float(ntk[0]) == pytest.approx(float(original[0])) and float(ntk[-1]) == pytest.approx(float(original[-1]) / 4, rel=1e-4)
    labelled = {line.get_label(): line for line in figure.axes[1].lines}
    for label, scores in data["scores"].items():
        assert np.array_equal(labelled[label].get_ydata(), scores[1:].numpy())  # distance 0 is off the log axis


def test_glm_positions_are_blank_infilling():
    figure = viz.plot_glm_positions()
    example = blank_infilling(list(range(6)), [(2, 3), (4, 6)], mask_token_id=6, start_token_id=7, end_token_id=8,
                              order=[1, 0])
    assert np.array_equal(image(figure), torch.stack([example.position_ids, example.block_position_ids]).numpy())
    assert image(figure).tolist() == [[0, 1, 2, 3, 4, 4, 4, 4, 2, 2], [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]]
    assert np.array_equal(image(figure, 1), example.attention_mask().numpy())
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["x1", "x2", "[M]", "x4", "[M]", "[S]", "x5",
                                                                         "x6", "[S]", "x3"]


def test_position_explorer_switches_views_and_redraws():
    explorer = viz.position_explorer()
    assert explorer.last_view == "sinusoidal"
    visible = lambda: {name for name, c in explorer.controls.items() if c.layout.display != "none"}  # noqa: E731
    assert {"positions", "d_model"} <= visible() and "heads" not in visible()
    explorer.controls["view"].value = "alibi"
    before = shown_png(explorer)
    explorer.controls["head"].value = 5
    assert explorer.last_png == shown_png(explorer) != before
    assert torch.equal(explorer.last_data["bias"], alibi_bias(alibi_slopes(8), 16, 16)[0])
    explorer.controls["heads"].value = 4  # the head slider follows the number of heads
    assert explorer.controls["head"].max == 3 and explorer.last_error is None
    explorer.controls["view"].value = "rope_decay"
    explorer.controls["distance"].value = 64
    assert len(explorer.last_data["scores"]) == 65
    explorer.controls["view"].value = "t5_buckets"
    explorer.controls["bidirectional"].value = False
    assert explorer.last_error is None and "causal" in explorer.last_figure.axes[0].get_title()
    explorer.controls["buckets"].value = 64
    explorer.controls["max_distance"].value = 16  # 32 exact buckets need max_distance > 32: shown, not raised
    assert isinstance(explorer.last_error, ValueError) and "max_distance=16" in explorer.info.value


def test_position_explorer_captions_are_html_without_rest_markup():
    explorer = viz.position_explorer()
    for view in viz.POSITION_VIEWS:
        explorer.controls["view"].value = view
        assert "`" not in explorer.info.value and ":func:" not in explorer.info.value, explorer.info.value
    explorer.controls["view"].value = "sinusoidal"
    assert "<code>PE[pos, dim]</code>" in explorer.info.value


def test_position_errors_name_the_problem():
    with pytest.raises(ValueError, match="d_model must be even"):
        viz.plot_sinusoidal(8, 7)
    with pytest.raises(ValueError, match="head must be in 0..3"):
        viz.plot_alibi(4, 8, head=4)
    with pytest.raises(ValueError, match="vectors must be"):
        viz.rope_scores(8, 4, vectors="zeros")
    with pytest.raises(ValueError, match="unknown view"):
        viz.position_explorer("nope")


# ------------------------------------------------------------------------------------------------
# W03 attention
# ------------------------------------------------------------------------------------------------


def test_plot_attention_draws_every_layer_and_head_with_token_labels():
    weights = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)
    tokens_q, tokens_k = list("abcd"), ["<s>", "v", "w", "x", "y"]
    figure = viz.plot_attention(weights, tokens_q, tokens_k)
    assert len(figure.axes) == 2 * 3 + 1  # six heat maps and the colour bar
    for layer in range(2):
        for head in range(3):
            ax = figure.axes[layer * 3 + head]
            np.testing.assert_array_equal(ax.images[0].get_array(), weights[layer, head].numpy())
            assert [t.get_text() for t in ax.get_xticklabels()] == tokens_k
            assert [t.get_text() for t in ax.get_yticklabels()] == tokens_q
    mean = viz.plot_attention(weights, tokens_q, tokens_k, layer=1, head="mean")
    np.testing.assert_allclose(image(mean), weights[1].mean(0).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="3 query tokens for 4 query positions"):
        viz.plot_attention(weights, list("abc"), tokens_k)
    with pytest.raises(ValueError, match=r"\[L, S\], \[H, L, S\] or \[layers, H, L, S\]"):
        viz.plot_attention(torch.rand(5))
    with pytest.raises(ValueError, match="head must be None, 'mean' or an int in 0..2"):
        viz.plot_attention(weights, head=3)


def test_attention_viewer_on_the_2017_transformer():
    torch.manual_seed(0)
    model = llmcore.Transformer.from_preset("tiny")
    src, tgt = torch.tensor([[5, 6, 7, 8, 2]]), torch.tensor([[1, 9, 10]])
    viewer = viz.attention_viewer(model, src, tgt, src_tokens=list("abcd") + ["</s>"], tgt_tokens=["<s>", "x", "y"])
    assert list(viewer.controls["layer"].options) == [
        "encoder_layers.0.self_attn", "encoder_layers.1.self_attn", "decoder_layers.0.self_attn",
        "decoder_layers.0.cross_attn", "decoder_layers.1.self_attn", "decoder_layers.1.cross_attn",
    ]
    with torch.no_grad(), llmcore.record_attention(model) as maps:
        model.eval()
        model(src, tgt)
    before = shown_png(viewer)
    viewer.controls["layer"].value = "decoder_layers.1.cross_attn"
    viewer.controls["head"].value = 2
    assert torch.equal(viewer.last_weights, maps["decoder_layers.1.cross_attn"][0][0, 2:3])
    np.testing.assert_array_equal(image(viewer.last_figure), maps["decoder_layers.1.cross_attn"][0][0, 2].numpy())
    assert viewer.last_tokens == (["<s>", "x", "y"], ["a", "b", "c", "d", "</s>"])
    assert shown_png(viewer) != before
    viewer.controls["head"].value = "all"
    assert len(viewer.last_figure.axes) == 4 + 1


def test_attention_viewer_all_heads_fits_the_output_area_with_readable_labels():
    """Four heads of chapter 1's toy model on a 9-token word: the PNG is at most 800 pixels wide, so the
    browser shows it unscaled, and the token labels are at least 10 pixels high (they were about 6)."""
    from llmcore.viz._common import WIDGET_DPI

    weights = torch.softmax(torch.randn(4, 9, 9), dim=-1)
    tokens = [*"abcdefgh", "</s>"]
    viewer = viz.attention_viewer({"decoder_layers.1.cross_attn": weights}, src_tokens=tokens, tgt_tokens=["<s>", *"hgfedcba"])
    figure = viewer.last_figure
    width_px = figure.get_figwidth() * WIDGET_DPI
    assert width_px <= 800, f"the all-heads figure is {width_px:.0f} px wide"
    assert len([ax for ax in figure.axes if ax.images]) == 4
    for ax in figure.axes[:4]:
        for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            assert label.get_fontsize() * WIDGET_DPI / 72 >= 10, label.get_text()
    eight = viz.plot_attention(torch.softmax(torch.randn(8, 12, 12), dim=-1))  # one layer: heads wrap into rows
    assert eight.get_figwidth() * WIDGET_DPI <= 800 and len(eight.axes) == 8 + 1


def test_attention_viewer_on_a_zoo_model_and_on_recorded_weights():
    model = llmcore.build("tiny-gpt2")
    ids = torch.tensor([[3, 4, 5, 6]])
    viewer = viz.attention_viewer(model, ids, tokens=["The", "cat", "sat", "."])
    assert list(viewer.controls["layer"].options) == ["layers.0.self_attn", "layers.1.self_attn"]
    weights = viewer.maps["layers.1.self_attn"]
    assert torch.allclose(weights.sum(-1), torch.ones(4, 4)) and not weights.triu(1).any()  # causal rows of weights
    assert viewer.last_tokens == (["The", "cat", "sat", "."], ["The", "cat", "sat", "."])
    stacked = viz.attention_viewer(torch.softmax(torch.randn(2, 2, 3, 3), -1))
    assert list(stacked.controls["layer"].options) == ["layer 0", "layer 1"]
    with pytest.raises(TypeError, match="model, a dict of weights or a tensor"):
        viz.attention_viewer("model")


# ------------------------------------------------------------------------------------------------
# W04 routing
# ------------------------------------------------------------------------------------------------


def test_routing_counts_are_a_bincount_of_topk():
    logits = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    figure = viz.plot_routing(logits, 2)
    counts = torch.bincount(logits.topk(2).indices.flatten(), minlength=6)
    assert [patch.get_height() for patch in figure.axes[1].patches] == counts.tolist()
    assert torch.equal(viz.routing_counts(logits, 2), counts)
    np.testing.assert_allclose(image(figure), torch.softmax(logits, -1).numpy(), rtol=1e-6)
    chosen = {tuple(map(int, xy)) for xy in figure.axes[0].collections[0].get_offsets()}
    assert chosen == {(e, t) for t in range(20) for e in logits.topk(2).indices[t].tolist()}
    with pytest.raises(ValueError, match="top_k=7 must be an int in 1..n_experts=6"):
        viz.plot_routing(logits, 7)
    with pytest.raises(ValueError, match=r"floating \[tokens, experts\]"):
        viz.plot_routing(torch.randn(6), 2)
    with pytest.raises(ValueError, match="pass top_k"):
        viz.plot_routing(logits)


def test_routing_viewer_reads_a_mixture_of_experts_and_follows_the_top_k_slider():
    torch.manual_seed(0)
    layer = llmcore.MixtureOfExperts(16, 32, n_experts=4, top_k=2)
    with pytest.raises(ValueError, match="has not run a forward pass"):
        viz.routing_viewer(layer)
    layer(torch.randn(2, 5, 16))
    viewer = viz.routing_viewer(layer, tokens=[f"t{i}" for i in range(10)])
    assert viewer.controls["top_k"].value == 2
    assert torch.equal(viewer.last_indices, layer.last_routing.top_k_indices.reshape(10, 2))
    assert torch.equal(viewer.last_counts, torch.bincount(layer.last_routing.top_k_indices.flatten(), minlength=4))
    assert viewer.last_loss == pytest.approx(layer.last_routing.load_balancing_loss.item())
    before = shown_png(viewer)
    viewer.controls["top_k"].value = 3
    assert int(viewer.last_counts.sum()) == 30 and shown_png(viewer) != before
    assert torch.equal(viewer.last_counts, torch.bincount(layer.last_routing.logits.reshape(10, 4).topk(3).indices.flatten(),
                                                          minlength=4))
    model = llmcore.build("tiny-mixtral")
    model(torch.tensor([[1, 2, 3, 4]]))
    per_layer = viz.routing_viewer(model)
    assert len(per_layer.controls["layer"].options) == model.config.n_layers


# ------------------------------------------------------------------------------------------------
# Figures outside widgets
# ------------------------------------------------------------------------------------------------


def test_figures_show_themselves_and_save():
    figure = viz.mask_figure(masks.causal_mask, 4)
    png = figure._repr_png_()
    assert png.startswith(b"\x89PNG")
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="svg")
    assert b"<svg" in buffer.getvalue()
    assert math.isclose(figure.dpi, 80)
