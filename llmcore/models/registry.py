"""Named presets and Hugging Face architectures, registered by the family modules.

A *preset* is a published (or tiny test) configuration together with the model class that runs it:
``llmcore.build("llama2-7b", device="meta")``. An *architecture* tells the checkpoint loader how a
Hugging Face ``model_type`` maps onto llmcore: the config translation both ways and the tensor-name
templates (``{i}`` stands for a layer index, ``{e}`` for an expert index), plus optional hooks for
tensors that are stored fused or transposed.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .config import ModelConfig

__all__ = ["Preset", "HFArchitecture", "PRESETS", "ARCHITECTURES", "register_preset", "register_architecture", "build", "preset_config", "KeyMap"]

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class Preset:
    """A named configuration, the class that runs it, and where its numbers come from."""

    name: str
    config: ModelConfig
    model_class: type[nn.Module]
    source: str = ""
    published_parameters: float | None = None


@dataclass(frozen=True)
class HFArchitecture:
    """How one Hugging Face ``model_type`` maps onto an llmcore model.

    ``key_map`` pairs a Hugging Face tensor-name template with the llmcore one. ``ignore`` lists
    regexes of Hugging Face tensors without a counterpart (non-persistent buffers that old
    checkpoints saved). ``from_hf_tensors`` / ``to_hf_tensors`` rewrite a whole state dict (still in
    Hugging Face names) before and after renaming: splitting fused Q/K/V, transposing Conv1D.
    """

    model_type: str
    hf_class_name: str
    config_from_hf: Callable[[dict[str, Any]], ModelConfig]
    config_to_hf: Callable[[ModelConfig], dict[str, Any]]
    key_map: tuple[tuple[str, str], ...]
    model_class: type[nn.Module]
    from_hf_tensors: Callable[[StateDict, ModelConfig], StateDict] | None = None
    to_hf_tensors: Callable[[StateDict, ModelConfig], StateDict] | None = None
    ignore: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())


PRESETS: dict[str, Preset] = {}
ARCHITECTURES: dict[str, HFArchitecture] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset
    return preset


def register_architecture(architecture: HFArchitecture) -> HFArchitecture:
    for name in (architecture.model_type, *architecture.aliases):
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        ARCHITECTURES[name] = architecture
    return architecture


def _known_presets() -> str:
    return ", ".join(sorted(PRESETS))


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a preset, with fields overridden (and validated again)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {_known_presets()}")
    config = PRESETS[name].config
    return config.replace(**overrides) if overrides else config


def build(name: str, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **overrides: Any) -> nn.Module:
    """Instantiate a preset, e.g. ``build("tiny-llama")`` or ``build("llama-7b", device="meta")``.

    ``device="meta"`` builds the structure without allocating weights (parameter counts of 100B+
    models on a laptop).
    """
    config = preset_config(name, **overrides)
    with torch.device(device) if device is not None else nullcontext():
        model = PRESETS[name].model_class(config)
    return model.to(dtype) if dtype is not None else model


class KeyMap:
    """Renames tensors between two naming schemes given as templates with ``{i}``/``{e}`` fields."""

    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self.pairs = pairs
        self._forward = [(self._compile(src), dst) for src, dst in pairs]
        self._backward = [(self._compile(dst), src) for src, dst in pairs]

    @staticmethod
    def _compile(template: str) -> re.Pattern[str]:
        pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{e\}", r"(?P<e>\d+)")
        return re.compile(f"^{pattern}$")

    @staticmethod
    def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
        for pattern, target in rules:
            match = pattern.match(name)
            if match:
                return target.format(**match.groupdict())
        return None

    def to_llmcore(self, name: str) -> str | None:
        return self._rename(name, self._forward)

    def to_hf(self, name: str) -> str | None:
        return self._rename(name, self._backward)
