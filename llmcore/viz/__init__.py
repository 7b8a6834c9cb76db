"""Offline, interactive pictures of what llmcore computes (可视化): ipywidgets 8 + matplotlib.

``from llmcore import viz`` (``import llmcore`` never imports this package). Every view is a plain
function returning a :class:`matplotlib.figure.Figure` (for feedback HTML, docs and tests; drawn on
the Agg canvas, never registered with pyplot) and most have a widget that redraws the same figure
when a control moves. Nothing is fetched from the network: the widgets are ipywidgets controls and
a PNG in an ``ipywidgets.Output``.

* W01 masks (注意力掩码): :func:`mask_explorer`, :func:`plot_mask`, :func:`mask_figure`,
  :func:`mask_density`, :func:`receptive_field` (感受野), :data:`MASK_PATTERNS`.
* W02 positions (位置编码): :func:`position_explorer`, :func:`plot_sinusoidal`,
  :func:`plot_rope_rotation` / :func:`plot_rope_decay` (旋转位置编码), :func:`plot_alibi` (线性偏置),
  :func:`plot_t5_buckets` (相对位置桶), :func:`plot_rope_scaling` (位置插值 / NTK),
  :func:`plot_glm_positions` (二维位置编码).
* W03 attention weights (注意力权重): :func:`attention_viewer`, :func:`plot_attention`,
  :func:`record_attention_maps`.
* W04 MoE routing (专家路由): :func:`routing_viewer`, :func:`plot_routing`, :func:`routing_counts`.
* Mistral's rolling buffer (滚动缓存): :func:`rolling_buffer_viewer`, :func:`plot_rolling_buffer`,
  :func:`rolling_buffer_html`, :func:`rolling_buffer_states`.

The functions that only compute (``mask_density``, ``receptive_field``, ``rope_scores`` …) need
torch alone; drawing needs matplotlib and the widgets ipywidgets, both in the ``course`` extra
(``pip install -e '.[course]'``). Without them, the first figure asked for raises an ImportError
that says so.
"""

from .attention import AttentionViewer, attention_viewer, plot_attention, record_attention_maps
from .masks import (
    MASK_PATTERNS,
    MaskExplorer,
    MaskPattern,
    compare_masks,
    evaluate_mask,
    mask_density,
    mask_explorer,
    mask_figure,
    pattern_masks,
    plot_mask,
    plot_mask_comparison,
    plot_receptive_field,
    reach_by_layer,
    receptive_field,
)
from .positions import (
    POSITION_VIEWS,
    PositionExplorer,
    glm_example,
    plot_alibi,
    plot_glm_positions,
    plot_rope_decay,
    plot_rope_rotation,
    plot_rope_scaling,
    plot_sinusoidal,
    plot_t5_buckets,
    position_explorer,
    rope_scores,
)
from .rolling_buffer import (
    BufferState,
    RollingBufferViewer,
    plot_rolling_buffer,
    rolling_buffer_html,
    rolling_buffer_states,
    rolling_buffer_viewer,
)
from .routing import RoutingViewer, plot_routing, routing_counts, routing_viewer

__all__ = [
    "MASK_PATTERNS", "MaskExplorer", "MaskPattern", "compare_masks", "evaluate_mask", "mask_density", "mask_explorer",
    "mask_figure", "pattern_masks", "plot_mask", "plot_mask_comparison", "plot_receptive_field", "reach_by_layer",
    "receptive_field",
    "POSITION_VIEWS", "PositionExplorer", "glm_example", "plot_alibi", "plot_glm_positions", "plot_rope_decay",
    "plot_rope_rotation", "plot_rope_scaling", "plot_sinusoidal", "plot_t5_buckets", "position_explorer", "rope_scores",
    "AttentionViewer", "attention_viewer", "plot_attention", "record_attention_maps",
    "RoutingViewer", "plot_routing", "routing_counts", "routing_viewer",
    "BufferState", "RollingBufferViewer", "plot_rolling_buffer", "rolling_buffer_html", "rolling_buffer_states",
    "rolling_buffer_viewer",
]
