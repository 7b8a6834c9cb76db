"""Token embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["TokenEmbedding", "shrink_embedding_gradient"]


class TokenEmbedding(nn.Module):
    """Look up token vectors and multiply them by √d_model (Vaswani et al., 2017, §3.4).

    The scale makes embeddings (initialised with std ``d_model^-0.5`` when tied to the output
    projection) comparable in size to the sinusoidal encoding added next, whose entries lie in [−1, 1].

    Shapes: ``[B, L]`` integer ids → ``[B, L, d_model]``.
    """

    def __init__(self, vocab_size: int, d_model: int, *, padding_idx: int | None = None, scale: bool = True) -> None:
        super().__init__()
        self.d_model = d_model
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.padding_idx = padding_idx
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        nn.init.normal_(self.weight, std=d_model**-0.5)
        if padding_idx is not None:
            with torch.no_grad():
                self.weight[padding_idx].zero_()

    def forward(self, token_ids: Tensor) -> Tensor:
        if token_ids.is_floating_point():
            raise TypeError(f"token ids must be integers, got {token_ids.dtype}")
        return nn.functional.embedding(token_ids, self.weight, self.padding_idx) * self.scale


def shrink_embedding_gradient(x: Tensor, alpha: float = 0.1) -> Tensor:
    """GLM-130B's embedding gradient shrink (词嵌入梯度缩减; Zeng et al. 2022, §3.3).

    ``x·α + x.detach()·(1 − α)`` equals ``x`` in the forward pass, but only the first term carries a
    gradient, so everything upstream of ``x`` (the embedding table) receives ``α`` times its gradient.
    GLM-130B found that the embedding layer's large gradient norms foreshadow loss spikes and that
    α = 0.1 removes most of them. Any shape; ``α`` in ``(0, 1]`` (1 = no shrink).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"shrink_embedding_gradient: alpha must be in (0, 1], got {alpha}")
    return x * alpha + x.detach() * (1.0 - alpha)
