"""DeepNorm as GLM-130B and ChatGLM-6B wire it: a post-LN residual with the skip branch scaled by α.

DeepNet (Wang et al., 2022, "DeepNet: Scaling Transformers to 1,000 Layers", §3) writes one
sublayer as ``x_{l+1} = LN(α·x_l + f(x_l))`` and, for a decoder-only model of ``N`` layers, takes
``α = (2N)^{1/4}``. GLM-130B (Zeng et al., 2022, §2.1 "Layer Normalization") adopts DeepNorm with
``α = (2N)^{1/2}``, and its released code (THUDM/GLM-130B, and ChatGLM-6B's ``modeling_chatglm.py``,
2023) arranges it as::

    n = LN(x)
    x = α · n + f(n)          # α = √(2N): 7.483 for ChatGLM-6B's N = 28

The residual carries the **normalised** input, scaled by ``α`` (深度归一化, DeepNorm). In llmcore's
model zoo this is ``ModelConfig(block="deepnorm", residual_alpha=α)`` (:class:`llmcore.models.stack.
TransformerLayer`); this module holds the one-sublayer rule on its own, for the notebooks and checks.
"""

from __future__ import annotations

import math
from typing import Callable

from torch import Tensor

__all__ = ["deepnorm_alpha", "deepnet_decoder_alpha", "deepnorm_residual"]


def deepnorm_alpha(n_layers: int) -> float:
    """GLM-130B / ChatGLM-6B's residual scale ``α = √(2·n_layers)`` (7.483 for 28 layers, 11.83 for 70)."""
    if n_layers < 1:
        raise ValueError(f"deepnorm_alpha: n_layers must be >= 1, got {n_layers}")
    return math.sqrt(2 * n_layers)


def deepnet_decoder_alpha(n_layers: int) -> float:
    """DeepNet's decoder-only ``α = (2·n_layers)^{1/4}`` (Wang et al. 2022, Table 1), which GLM did not use."""
    if n_layers < 1:
        raise ValueError(f"deepnet_decoder_alpha: n_layers must be >= 1, got {n_layers}")
    return (2 * n_layers) ** 0.25


def deepnorm_residual(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: Callable[[Tensor], Tensor],
                      alpha: float) -> Tensor:
    """One ChatGLM-6B sublayer: ``α · norm(x) + sublayer(norm(x))``; the norm is computed once.

    Shapes: ``x [..., d]`` → ``[..., d]``; ``sublayer`` and ``norm`` map ``[..., d]`` to ``[..., d]``
    (attention or the MLP; a LayerNorm). ``alpha`` as given (:func:`deepnorm_alpha` for ChatGLM).
    """
    normed = norm(x)
    return normed * alpha + sublayer(normed)
