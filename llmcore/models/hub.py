"""Load and save Hugging Face-style checkpoint folders, offline.

``from_pretrained(path)`` reads ``config.json`` (transformers 4.x or 5.x layout), looks up the
``model_type`` among the registered architectures, builds the llmcore model, renames the tensors and
loads them strictly: a tensor that is missing, left over or of the wrong shape raises an error that
names it. ``save_pretrained(model, path)`` writes the same layout back, so transformers can read it.
Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import checkpoints
from .config import ModelConfig
from .registry import ARCHITECTURES, HFArchitecture, KeyMap

__all__ = ["from_pretrained", "save_pretrained", "from_hf_state_dict", "to_hf_state_dict", "from_hf_model", "architecture_for"]

StateDict = dict[str, Tensor]
_MODEL_TYPE_KEY = "hf_model_type"


def architecture_for(model_type: str) -> HFArchitecture:
    if model_type not in ARCHITECTURES:
        raise ValueError(f"unknown model_type {model_type!r}; llmcore knows: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[model_type]


def config_from_hf(hf_config: dict[str, Any]) -> tuple[HFArchitecture, ModelConfig]:
    if "model_type" not in hf_config:
        raise ValueError("config has no 'model_type'")
    architecture = architecture_for(hf_config["model_type"])
    config = architecture.config_from_hf(hf_config)
    config.extra[_MODEL_TYPE_KEY] = hf_config["model_type"]
    return architecture, config


def from_hf_state_dict(architecture: HFArchitecture, state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Hugging Face tensor names and layouts → llmcore's; unknown tensors raise naming them."""
    import re

    if architecture.from_hf_tensors is not None:
        state_dict = architecture.from_hf_tensors(dict(state_dict), config)
    key_map = KeyMap(architecture.key_map)
    ignored = [re.compile(pattern) for pattern in architecture.ignore]
    converted: StateDict = {}
    unknown = []
    for name, tensor in state_dict.items():
        target = key_map.to_llmcore(name)
        if target is None:
            if not any(pattern.search(name) for pattern in ignored):
                unknown.append(name)
            continue
        converted[target] = tensor
    if unknown:
        raise KeyError(f"{architecture.model_type}: checkpoint tensors with no llmcore counterpart: {sorted(unknown)}")
    return converted


def to_hf_state_dict(architecture: HFArchitecture, state_dict: StateDict, config: ModelConfig) -> StateDict:
    """llmcore tensor names → Hugging Face's (inverse of :func:`from_hf_state_dict`)."""
    key_map = KeyMap(architecture.key_map)
    converted: StateDict = {}
    for name, tensor in state_dict.items():
        target = key_map.to_hf(name)
        if target is None:
            raise KeyError(f"{architecture.model_type}: llmcore tensor {name!r} has no Hugging Face name")
        converted[target] = tensor
    if architecture.to_hf_tensors is not None:
        converted = architecture.to_hf_tensors(converted, config)
    return converted


def _tied_names(model: nn.Module) -> set[str]:
    """Names of parameters that share storage with an earlier parameter (e.g. a tied lm_head)."""
    seen: dict[int, str] = {}
    tied = set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            tied.add(name)
        else:
            seen[id(parameter)] = name
    return tied


def load_converted(model: nn.Module, state_dict: StateDict, origin: str) -> None:
    """Strict load with errors that name missing, unexpected and mis-shaped tensors."""
    expected = model.state_dict()
    tied = _tied_names(model)
    missing = sorted(set(expected) - set(state_dict) - tied)
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{name}: checkpoint {tuple(state_dict[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in set(state_dict) & set(expected)
        if state_dict[name].shape != expected[name].shape
    )
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if wrong_shape:
        problems.append(f"shape mismatches {wrong_shape}")
    if problems:
        raise ValueError(f"cannot load {origin}: " + "; ".join(problems))
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name in state_dict:
                tensor.copy_(state_dict[name])


def from_hf_model(hf_model: nn.Module) -> nn.Module:
    """Convert a live ``transformers`` model (same weights, llmcore modules), e.g. for parity tests."""
    _, config = config_from_hf(checkpoints.normalise_config(hf_model.config.to_dict()))
    architecture = architecture_for(hf_model.config.model_type)
    model = architecture.model_class(config)
    state_dict = {name: tensor.detach() for name, tensor in hf_model.state_dict().items()}
    load_converted(model, from_hf_state_dict(architecture, state_dict, config), type(hf_model).__name__)
    return model.to(next(hf_model.parameters()).dtype).eval()


def from_pretrained(path: str | Path, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Build the llmcore model of a local Hugging Face checkpoint folder, in eval mode.

    The folder needs ``config.json`` and ``model.safetensors`` (or sharded files with
    ``model.safetensors.index.json``, or PyTorch ``.bin`` files). Tensors tied to the embeddings may
    be absent from the files. ``dtype`` defaults to the checkpoint's ``dtype``/``torch_dtype``.
    """
    hf_config = checkpoints.read_config(path)
    architecture, config = config_from_hf(hf_config)
    if dtype is None and hf_config.get("dtype"):
        dtype = getattr(torch, str(hf_config["dtype"]).removeprefix("torch."))
    model = architecture.model_class(config)
    state_dict = checkpoints.load_state_dict(path)
    load_converted(model, from_hf_state_dict(architecture, state_dict, config), str(path))
    return (model.to(dtype) if dtype is not None else model).eval()


def save_pretrained(
    model: nn.Module, path: str | Path, *, model_type: str | None = None, max_shard_size: int | str | None = None
) -> Path:
    """Write ``model`` as a Hugging Face folder (config.json + safetensors, sharded above ``max_shard_size``).

    ``model_type`` defaults to the one the model was loaded from; tied tensors are written once,
    as transformers does.
    """
    config: ModelConfig = model.config  # type: ignore[assignment]
    model_type = model_type or config.extra.get(_MODEL_TYPE_KEY)
    if model_type is None:
        raise ValueError("save_pretrained needs model_type= for a model that was not loaded from Hugging Face")
    architecture = architecture_for(model_type)
    tied = _tied_names(model)
    own = {name: tensor for name, tensor in model.state_dict().items() if name not in tied}
    hf_state = to_hf_state_dict(architecture, own, config)
    hf_config = architecture.config_to_hf(config)
    hf_config.setdefault("model_type", architecture.model_type)
    hf_config.setdefault("architectures", [architecture.hf_class_name])
    hf_config.setdefault("dtype", str(next(model.parameters()).dtype).removeprefix("torch."))
    path = Path(path)
    checkpoints.save_state_dict(path, hf_state, max_shard_size=max_shard_size)
    checkpoints.write_config(path, hf_config)
    return path
