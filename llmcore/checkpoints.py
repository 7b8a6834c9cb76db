"""Reading and writing Hugging Face-style checkpoint folders, offline.

A checkpoint folder, as ``transformers`` writes it with ``save_pretrained``, holds::

    config.json                              # hyper-parameters, model_type, dtype, rope settings
    model.safetensors                        # every tensor, or, past max_shard_size, the shards
    model-00001-of-00003.safetensors ...     #   plus an index saying which shard holds which tensor:
    model.safetensors.index.json             #   {"metadata": {"total_size": ...}, "weight_map": {name: file}}

Older folders carry ``pytorch_model.bin`` (a pickled state dict) or its sharded twin
``pytorch_model.bin.index.json``; we read those too, with ``torch.load(weights_only=True)`` so a
pickle cannot run code.

This module only moves dicts of tensors and dicts of settings between disk and memory; it never
builds a model and never touches the network. What is in the files is what you get: a tied
``lm_head.weight`` that ``save_pretrained`` left out stays absent, and the caller re-ties it.

``config.json`` changed layout between transformers 4.x and 5.x (``torch_dtype`` became ``dtype``;
``rope_theta`` and ``rope_scaling`` moved into ``rope_parameters``). :func:`read_config` accepts
both and hands back one normalised layout, so model code reads a single set of keys.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "CONFIG_NAME",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "TORCH_WEIGHTS_NAME",
    "TORCH_WEIGHTS_INDEX_NAME",
    "read_config",
    "normalise_config",
    "write_config",
    "find_checkpoint_files",
    "load_state_dict",
    "save_state_dict",
    "parse_size",
]

PathLike = Union[str, "os.PathLike[str]"]

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
TORCH_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

# The shard names save_pretrained writes (and deletes when they go stale): model-00001-of-00003.safetensors
_SHARD_RE = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")

# Keys that 5.x moved into rope_parameters but that 4.x kept at the top level of config.json.
_TOP_LEVEL_ROPE_KEYS = ("rope_theta", "partial_rotary_factor")

_SIZE_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}


# --------------------------------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------------------------------


def read_config(path: PathLike) -> dict[str, Any]:
    """Read ``config.json`` from the checkpoint folder ``path`` and normalise its layout.

    Both transformers 4.x and 5.x layouts come back the same way:

    * ``dtype``: a string such as ``"float32"``, taken from ``dtype`` (5.x) or ``torch_dtype`` (4.x);
      absent when neither is set.
    * ``rope_theta``: a float, taken from ``rope_parameters`` (5.x) or the top level (4.x); absent
      when the model has no rotary embedding.
    * ``rope_scaling``: ``None`` for plain RoPE, otherwise a dict with ``rope_type`` (``"linear"``,
      ``"dynamic"``, ``"llama3"``, ``"yarn"``, ...) and that type's parameters (``factor``, ...).
    * ``partial_rotary_factor``, when given, sits at the top level as in 4.x.

    ``torch_dtype`` and a single ``rope_parameters`` are folded into those keys and removed. A
    per-layer-type ``rope_parameters`` (``{"full_attention": {...}, "sliding_attention": {...}}``)
    has no single rope to flatten and is kept as is. Every other key is returned unchanged.

    Raises:
        FileNotFoundError: the folder or its ``config.json`` does not exist.
        ValueError: ``config.json`` is not a JSON object, or has no ``model_type``.
    """
    config_file = _folder(path) / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in checkpoint folder {config_file.parent}")
    config = _read_json(config_file)
    if "model_type" not in config:
        raise ValueError(f"{config_file} has no 'model_type'; is this a transformers checkpoint folder?")
    return normalise_config(config)


def normalise_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a transformers config dict in the normalised layout :func:`read_config` describes.

    Use it for ``model.config.to_dict()`` of a live transformers model as well as for files.
    """
    normalised = dict(config)
    _normalise_dtype(normalised)
    _normalise_rope(normalised)
    return normalised


def write_config(path: PathLike, config: Mapping[str, Any]) -> Path:
    """Write ``config`` as ``config.json`` (indent 2) in folder ``path``, creating the folder.

    Returns the path of the written file. The file is replaced atomically, so a failed write leaves
    any previous ``config.json`` intact.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(config), indent=2) + "\n"
    target = folder / CONFIG_NAME
    _atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return target


def _normalise_dtype(config: dict[str, Any]) -> None:
    dtype, legacy = config.pop("dtype", None), config.pop("torch_dtype", None)
    value = dtype if dtype is not None else legacy
    if value is not None:
        # Some old configs spell it "torch.float16".
        config["dtype"] = str(value).removeprefix("torch.")


def _normalise_rope(config: dict[str, Any]) -> None:
    parameters = config.get("rope_parameters")
    if isinstance(parameters, dict) and parameters and all(isinstance(v, dict) for v in parameters.values()):
        return
    # 5.x's rope_parameters wins over 4.x's rope_scaling when a config carries both.
    scaling = dict(config.pop("rope_scaling", None) or {})
    scaling.update(config.pop("rope_parameters", None) or {})
    for key in _TOP_LEVEL_ROPE_KEYS:
        if key in scaling:
            config[key] = scaling.pop(key)
    if config.get("rope_theta") is not None:
        config["rope_theta"] = float(config["rope_theta"])
    # 4.x wrote the type as "type" (older) or "rope_type" (newer).
    legacy_type = scaling.pop("type", None)
    rope_type = scaling.pop("rope_type", None) or legacy_type or "default"
    config["rope_scaling"] = None if rope_type == "default" else {"rope_type": rope_type, **scaling}


# --------------------------------------------------------------------------------------------------
# Weights: reading
# --------------------------------------------------------------------------------------------------


def find_checkpoint_files(path: PathLike) -> list[Path]:
    """The weight files that :func:`load_state_dict` would read from folder ``path``, in order.

    Preference follows transformers: ``model.safetensors``, then the shards named by
    ``model.safetensors.index.json``, then ``pytorch_model.bin``, then the shards named by
    ``pytorch_model.bin.index.json``.

    Raises:
        FileNotFoundError: the folder, any weight file, or a shard named by the index is missing.
        ValueError: the index is malformed.
    """
    return _locate(path)[0]


def load_state_dict(path: PathLike, *, dtype: torch.dtype | str | None = None) -> dict[str, Tensor]:
    """Load every tensor stored in the checkpoint folder ``path``, on the CPU.

    Reads a single or sharded safetensors checkpoint, falling back to ``pytorch_model.bin`` (single
    or sharded). For a sharded checkpoint, every tensor the index's ``weight_map`` names must be in
    the shard it names. The dict holds exactly the tensors in the files: weights that
    ``save_pretrained`` dropped because they are tied (``lm_head.weight``) are not invented.

    Args:
        path: the checkpoint folder.
        dtype: if given (``torch.bfloat16`` or ``"bfloat16"``), floating-point tensors are cast to
            it; integer and boolean buffers are left alone.

    Raises:
        FileNotFoundError: the folder, its weights, or a shard named by the index is missing.
        ValueError: a file cannot be read, a tensor named by the index is absent from its shard, or
            a tensor name appears in two files.
    """
    target = _resolve_dtype(dtype)
    files, weight_map = _locate(path)
    state_dict: dict[str, Tensor] = {}
    found_in: dict[str, str] = {}
    for file in files:
        for name, tensor in _read_weights(file).items():
            if name in state_dict:
                raise ValueError(f"tensor {name!r} is stored twice, in {found_in[name]} and in {file.name}")
            found_in[name] = file.name
            if target is not None and tensor.is_floating_point():
                tensor = tensor.to(target)
            state_dict[name] = tensor
    for name, shard in (weight_map or {}).items():
        if found_in.get(name) != shard:
            raise ValueError(f"the index of {files[0].parent} maps tensor {name!r} to {shard}, which does not contain it")
    return state_dict


def _locate(path: PathLike) -> tuple[list[Path], dict[str, str] | None]:
    """The weight files of folder ``path`` and, when sharded, the index's weight_map."""
    folder = _folder(path)
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        return [folder / SAFE_WEIGHTS_NAME], None
    if (folder / SAFE_WEIGHTS_INDEX_NAME).is_file():
        return _read_index(folder / SAFE_WEIGHTS_INDEX_NAME)
    if (folder / TORCH_WEIGHTS_NAME).is_file():
        return [folder / TORCH_WEIGHTS_NAME], None
    if (folder / TORCH_WEIGHTS_INDEX_NAME).is_file():
        return _read_index(folder / TORCH_WEIGHTS_INDEX_NAME)
    expected = ", ".join((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, TORCH_WEIGHTS_NAME, TORCH_WEIGHTS_INDEX_NAME))
    raise FileNotFoundError(f"no checkpoint weights in {folder}: expected one of {expected}")


def _read_index(index_file: Path) -> tuple[list[Path], dict[str, str]]:
    index = _read_json(index_file)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_file} has no 'weight_map' (a non-empty {{tensor name: shard file}} object)")
    shards: list[Path] = []
    for name, shard in weight_map.items():
        # Shards live beside the index; a path here would let an index point anywhere on disk.
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise ValueError(f"{index_file} maps tensor {name!r} to {shard!r}, which is not a file name")
        shard_file = index_file.parent / shard
        if shard_file not in shards:
            if not shard_file.is_file():
                raise FileNotFoundError(f"shard {shard} named by {index_file} (for tensor {name!r}) does not exist")
            shards.append(shard_file)
    return shards, weight_map


def _read_weights(file: Path) -> dict[str, Tensor]:
    """Read one weight file, turning the readers' anonymous errors into ones that name the file."""
    try:
        if file.name.endswith(".safetensors"):
            return load_file(str(file), device="cpu")
        weights = torch.load(file, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"cannot read weights from {file}: {error}") from error
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items()):
        raise ValueError(f"{file} does not hold a state dict (a dict of tensor name -> tensor)")
    return weights


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; expected a torch dtype or its name, e.g. 'bfloat16'")
    return resolved


# --------------------------------------------------------------------------------------------------
# Weights: writing
# --------------------------------------------------------------------------------------------------


def parse_size(size: int | str) -> int:
    """A shard size in bytes from an int or a string such as ``"5GB"``, ``"200KB"``, ``"1MiB"``.

    As in transformers, ``KB``/``MB``/``GB`` are decimal (1 KB = 1000 bytes) and
    ``KiB``/``MiB``/``GiB`` binary (1 KiB = 1024 bytes).
    """
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(size))
        unit = match.group(2).upper() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"cannot parse size {size!r}; use bytes or a number and unit, e.g. '5GB', '200KB', '1MiB'")
        value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return value


def save_state_dict(
    path: PathLike,
    state_dict: Mapping[str, Tensor],
    *,
    max_shard_size: int | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``state_dict`` to folder ``path`` as transformers does, and return the files written.

    With no ``max_shard_size``, or when everything fits in it, one ``model.safetensors`` is written.
    Otherwise tensors are packed, in order, into ``model-0000i-of-0000N.safetensors`` shards of at
    most ``max_shard_size`` bytes (a single larger tensor gets a shard of its own), followed by
    ``model.safetensors.index.json`` with ``metadata.total_size``, ``metadata.total_parameters``
    and ``weight_map``. Stale weight files of an earlier save in the same folder are removed
    afterwards, so the folder never holds two disagreeing checkpoints.

    Tensors sharing storage (tied weights, views of one fused matrix) are written as independent
    copies, because safetensors refuses shared memory; to store a tied weight once, leave the
    duplicate key out before calling.

    Every file is written under a temporary name and renamed into place, index last, so a save that
    fails midway never leaves an index pointing at missing or half-written shards.

    Args:
        path: the checkpoint folder, created if missing.
        state_dict: tensor name -> tensor.
        max_shard_size: bytes, or a string such as ``"5GB"`` (see :func:`parse_size`).
        metadata: string key/values stored in every safetensors header, next to ``format: pt``.
    """
    tensors = _unshared(state_dict)
    if not tensors:
        raise ValueError("refusing to save an empty state dict")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    header = {**(metadata or {}), "format": "pt"}

    shards = _split(tensors, None if max_shard_size is None else parse_size(max_shard_size))
    if len(shards) == 1:
        written = [folder / SAFE_WEIGHTS_NAME]
        _atomic_write(written[0], lambda tmp: save_file(tensors, str(tmp), metadata=header))
    else:
        written, weight_map = [], {}
        for i, shard in enumerate(shards, start=1):
            shard_file = folder / f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            _atomic_write(shard_file, lambda tmp, shard=shard: save_file(shard, str(tmp), metadata=header))
            written.append(shard_file)
            weight_map.update(dict.fromkeys(shard, shard_file.name))
        index = {
            "metadata": {
                "total_parameters": sum(t.numel() for t in tensors.values()),
                "total_size": sum(_nbytes(t) for t in tensors.values()),
            },
            "weight_map": weight_map,
        }
        text = json.dumps(index, indent=2, sort_keys=True) + "\n"
        _atomic_write(folder / SAFE_WEIGHTS_INDEX_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        written.append(folder / SAFE_WEIGHTS_INDEX_NAME)
    _remove_stale_weights(folder, keep={file.name for file in written})
    return written


def _unshared(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous CPU tensors, each tensor after the first on a given storage cloned onto its own."""
    seen: set[tuple[str, int]] = set()
    tensors: dict[str, Tensor] = {}
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, Tensor):
            raise TypeError(f"state_dict must map str -> Tensor; entry {name!r} is {type(tensor).__name__}")
        tensor = tensor.detach()
        storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
        shared = storage in seen
        seen.add(storage)
        tensor = tensor.to("cpu").contiguous()
        tensors[name] = tensor.clone() if shared else tensor
    return tensors


def _split(tensors: dict[str, Tensor], max_bytes: int | None) -> list[dict[str, Tensor]]:
    """Greedy packing in key order, as transformers does: start a new shard when the next tensor won't fit."""
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = _nbytes(tensor)
        if max_bytes is not None and shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _remove_stale_weights(folder: Path, keep: set[str]) -> None:
    """Delete safetensors weights of an earlier save that the new one did not overwrite."""
    for file in folder.iterdir():
        stale = file.name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME) or _SHARD_RE.fullmatch(file.name)
        if stale and file.name not in keep and file.is_file():
            file.unlink()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _folder(path: PathLike) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"checkpoint path {folder} is not a folder")
    return folder


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, not {type(data).__name__}")
    return data


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Run ``write`` on a temporary file beside ``target``, then rename it into place."""
    # Beside the target so the rename stays on one file system; the pid keeps concurrent savers
    # apart; a plain open (not mkstemp) gives the file the usual umask permissions.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
