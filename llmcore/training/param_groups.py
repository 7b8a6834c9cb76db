"""AdamW parameter groups: which weights get weight decay (权重衰减) and which do not.

Decoupled weight decay (AdamW, Loshchilov & Hutter, 2019) shrinks every weight toward zero at each
step. That is a useful prior for the matrices of linear layers, but not for parameters whose scale
*is* their meaning: the gain and shift of a normalisation layer (decaying them fights the
normalisation) and additive biases. GPT-2/3-style recipes (and nanoGPT, OLMo, Pythia) therefore
decay only the weight matrices. Embedding tables are a matter of recipe: minGPT and OLMo leave them
undecayed, nanoGPT and many LLaMA reproductions decay them; ``decay_embeddings`` chooses.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..embeddings import TokenEmbedding
from ..norms import LayerNorm, RMSNorm
from ..positions import LearnedPositionalEmbedding

__all__ = ["NORM_TYPES", "EMBEDDING_TYPES", "parameter_groups"]

NORM_TYPES: tuple[type[nn.Module], ...] = (LayerNorm, RMSNorm, nn.LayerNorm, nn.RMSNorm)
EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, TokenEmbedding, LearnedPositionalEmbedding)


def parameter_groups(model: nn.Module, weight_decay: float, *, decay_embeddings: bool = False) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decayed and an undecayed group for AdamW.

    Not decayed: every parameter of a normalisation module (:data:`NORM_TYPES`: llmcore's
    ``LayerNorm``/``RMSNorm`` and PyTorch's norms, recognised by type), every module's ``bias``
    parameter, and - unless ``decay_embeddings`` - every parameter of an embedding module
    (:data:`EMBEDDING_TYPES`). Everything else is decayed with ``weight_decay``.

    A parameter shared by several modules (a language-model head tied to the token embedding,
    参数共享) appears once, and is left undecayed if any of its owners says so: the tied matrix is
    an embedding. Frozen parameters (``requires_grad=False``) are left out. Groups are returned in
    the order decayed, undecayed, each in ``model.named_parameters()`` order; an empty group is
    omitted.

    Returns:
        ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...], "weight_decay": 0.0}]``,
        ready for ``torch.optim.AdamW(groups, lr=...)``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
    exempt: set[int] = set()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, NORM_TYPES) or (isinstance(module, EMBEDDING_TYPES) and not decay_embeddings):
            exempt.update(id(p) for p in own)
        bias = getattr(module, "bias", None)
        if isinstance(bias, nn.Parameter):
            exempt.add(id(bias))
    decayed, undecayed = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (undecayed if id(parameter) in exempt else decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
