"""Loading a Hugging Face ``tokenizer.json`` BPE model into :class:`~llmcore.tokenizers.BPETokenizer`.

Two families are understood, read from the file's ``normalizer`` and ``pre_tokenizer``:

* **byte-level** (字节级; GPT-2, RoBERTa, Qwen2, LLaMA-3): a ``ByteLevel`` pre-tokenizer - with its
  built-in GPT-2 regex (``use_regex: true``), or after a ``Split`` with its own regex (Qwen2,
  LLaMA-3) - and vocabulary strings in GPT-2's byte alphabet
  (:mod:`llmcore.tokenizers.byte_alphabet`). An ``NFC``/``NFKC``… normalizer is kept.
* **sentencepiece-style** (LLaMA-1/2, Baichuan, Mistral): spaces written ``"▁"`` either by the legacy
  normalizer ``Sequence[Prepend("▁"), Replace(" ", "▁")]`` (no pre-tokenizer: the whole text is one
  chunk, so no regex) or by a ``Metaspace`` pre-tokenizer (``prepend_scheme`` first/always/never,
  ``split``), with ``byte_fallback`` to ``<0xXX>`` tokens or an ``unk_token``.

A ``Digits(individual_digits=true)`` pre-tokenizer after the regex becomes ``split_digits``. Every
entry of ``added_tokens`` is matched as a special token (literally, on the raw text, with its
``lstrip``/``rstrip``/``single_word`` flags; ``normalized`` tokens are not normalized first). The
``post_processor`` becomes the ids ``encode(text, add_special_tokens=True)`` puts around a text:
``TemplateProcessing``'s single-sequence template (LLaMA's ``<s> $A``), ``RobertaProcessing`` and
``BertProcessing`` (``cls … sep``), ``ByteLevel`` (offsets only: no ids) and a ``Sequence`` of
them. The ``decoder`` is implied by the family. Anything else (WordPiece/Unigram models, BPE dropout,
subword prefixes, other normalizers, pre-tokenizers or post-processors) is refused with a
``ValueError`` naming it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from .bpe import BPETokenizer
from .pretokenize import GPT2_PATTERN, METASPACE_PATTERN, NORMALIZATIONS, SPIECE_UNDERLINE, SpecialTokenMatch

__all__ = ["load_hf_tokenizer", "tokenizer_from_hf_dict"]


def load_hf_tokenizer(path: str | os.PathLike) -> BPETokenizer:
    """The BPE tokenizer described by the ``tokenizer.json`` at ``path`` (no network access)."""
    with open(path, encoding="utf-8") as handle:
        return tokenizer_from_hf_dict(json.load(handle))


def _string_pattern(pattern: Any) -> str | None:
    return pattern.get("String") if isinstance(pattern, Mapping) else None


def _steps(component: Mapping, key: str) -> list:
    """The parts of a ``Sequence`` component (listed under ``key``), or the component alone."""
    return component[key] if component.get("type") == "Sequence" else [component]


def _read_normalizer(normalizer: Mapping | None, options: dict) -> None:
    if normalizer is None:
        return
    steps = _steps(normalizer, "normalizers")
    for position, step in enumerate(steps):
        kind = step.get("type")
        if kind in NORMALIZATIONS and position == 0:
            options["normalization"] = kind
        elif kind == "Prepend" and step.get("prepend") == SPIECE_UNDERLINE:
            options["metaspace"] = True
            options["prepend_scheme"] = "always"
        elif kind == "Replace" and _string_pattern(step.get("pattern")) == " " and step.get("content") == SPIECE_UNDERLINE:
            options["metaspace"] = True
        else:
            raise ValueError(f"unsupported normalizer step {step!r} (at position {position})")


def _read_pre_tokenizer(pre_tokenizer: Mapping | None, options: dict) -> None:
    if pre_tokenizer is None:
        return
    steps = _steps(pre_tokenizer, "pretokenizers")
    for step in steps:
        kind = step.get("type")
        if kind == "Split" and options["pattern"] is None and not options["split_digits"]:
            regex = step.get("pattern", {}).get("Regex")
            if regex is None or step.get("behavior") != "Isolated" or step.get("invert"):
                raise ValueError(f"only Split with a Regex, behavior Isolated and invert false is supported, got {step!r}")
            options["pattern"] = regex
        elif kind == "Digits" and step.get("individual_digits"):
            options["split_digits"] = True
        elif kind == "ByteLevel":
            if step.get("add_prefix_space", True):
                raise ValueError(f"ByteLevel with add_prefix_space is not supported, got {step!r}")
            if step.get("use_regex", True):
                if options["pattern"] is not None or options["split_digits"]:
                    raise ValueError("a ByteLevel regex after another split is not supported")
                options["pattern"] = GPT2_PATTERN
            options["byte_level"] = True
        elif kind == "Metaspace" and step.get("replacement") == SPIECE_UNDERLINE and options["pattern"] is None:
            options["metaspace"] = True
            options["prepend_unless_present"] = True
            scheme = step.get("prepend_scheme")
            if scheme is None:
                scheme = "always" if step.get("add_prefix_space", True) else "never"
            options["prepend_scheme"] = scheme
            if step.get("split", True):
                options["pattern"] = METASPACE_PATTERN
        else:
            raise ValueError(f"unsupported pre-tokenizer step {step!r}")


def _read_post_processor(processor: Mapping | None, options: dict) -> None:
    """The ids a post-processor puts before and after a single text, into ``prefix_ids``/``suffix_ids``."""
    if processor is None:
        return
    steps = _steps(processor, "processors")
    for step in steps:
        kind = step.get("type")
        if kind == "ByteLevel":
            continue
        if options["prefix_ids"] or options["suffix_ids"]:
            raise ValueError(f"more than one post-processor adds special tokens: {processor!r}")
        if kind in ("RobertaProcessing", "BertProcessing"):
            options["prefix_ids"], options["suffix_ids"] = [int(step["cls"][1])], [int(step["sep"][1])]
        elif kind == "TemplateProcessing":
            _read_template(step, options)
        else:
            raise ValueError(f"unsupported post-processor {step!r}")


def _read_template(step: Mapping, options: dict) -> None:
    special = step.get("special_tokens") or {}
    before: list[int] = []
    after: list[int] = []
    sequences = 0
    for piece in step.get("single") or []:
        if "Sequence" in piece:
            sequences += 1
            continue
        name = piece.get("SpecialToken", {}).get("id")
        if name not in special:
            raise ValueError(f"template piece {piece!r} names no special token of the post-processor")
        (after if sequences else before).extend(int(i) for i in special[name]["ids"])
    if sequences != 1:
        raise ValueError(f"a single-sequence template must contain the text once, got {step.get('single')!r}")
    options["prefix_ids"], options["suffix_ids"] = before, after


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    pairs = []
    for merge in merges:
        parts = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(parts) != 2:
            raise ValueError(f"a merge must name two tokens, got {merge!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def tokenizer_from_hf_dict(data: Mapping) -> BPETokenizer:
    """The :class:`BPETokenizer` of a parsed ``tokenizer.json`` (see the module docstring)."""
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "merges" not in model:
        raise ValueError(f"only BPE models can be loaded, got model type {model.get('type')!r}")
    if model.get("dropout") not in (None, 0, 0.0):
        raise ValueError(f"BPE dropout is not supported, got {model['dropout']!r}")
    for option in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise ValueError(f"BPE {option} is not supported, got {model[option]!r}")
    by_id: dict[int, str] = {}
    for token, token_id in model["vocab"].items():
        by_id[token_id] = token
    special_tokens: dict[str, int] = {}
    matching: dict[str, SpecialTokenMatch] = {}
    for added in data.get("added_tokens") or []:
        token_id, content = added["id"], added["content"]
        if by_id.get(token_id, content) != content:
            raise ValueError(f"added token {content!r} has id {token_id}, which the vocabulary gives to {by_id[token_id]!r}")
        by_id[token_id] = content
        special_tokens[content] = token_id
        rule = SpecialTokenMatch(
            lstrip=bool(added.get("lstrip")), rstrip=bool(added.get("rstrip")), single_word=bool(added.get("single_word"))
        )
        if rule != SpecialTokenMatch():
            matching[content] = rule
    missing = [i for i in range(len(by_id)) if i not in by_id]
    if missing:
        raise ValueError(f"token ids must run from 0 without gaps; missing {missing[:8]}")
    tokens = [by_id[i] for i in range(len(by_id))]
    vocab = model["vocab"]
    merges = []
    for left, right in _merge_pairs(model["merges"]):
        try:
            merges.append((vocab[left], vocab[right], vocab[left + right]))
        except KeyError as err:
            raise ValueError(f"merge ({left!r}, {right!r}) uses or makes {err.args[0]!r}, which is not in the vocabulary") from None
    options: dict[str, Any] = {
        "pattern": None, "split_digits": False, "normalization": None, "metaspace": False, "byte_level": False,
        "prepend_scheme": "never", "prepend_unless_present": False, "prefix_ids": [], "suffix_ids": [],
    }
    _read_normalizer(data.get("normalizer"), options)
    _read_pre_tokenizer(data.get("pre_tokenizer"), options)
    _read_post_processor(data.get("post_processor"), options)
    if options["byte_level"] == options["metaspace"]:
        raise ValueError(
            "cannot tell the family: expected a ByteLevel pre-tokenizer (GPT-2, Qwen2) or '▁' spaces "
            "from a Prepend/Replace normalizer or a Metaspace pre-tokenizer (LLaMA, Baichuan)"
        )
    shared = dict(
        special_tokens=special_tokens, pattern=options["pattern"], split_digits=options["split_digits"],
        normalization=options["normalization"], ignore_merges=bool(model.get("ignore_merges", False)),
        prefix_ids=options["prefix_ids"], suffix_ids=options["suffix_ids"], special_token_matching=matching,
    )
    if options["byte_level"]:
        return BPETokenizer(tokens, merges, kind="byte_level", **shared)
    return BPETokenizer(
        tokens, merges, kind="sentencepiece", prepend_scheme=options["prepend_scheme"],
        prepend_unless_present=options["prepend_unless_present"], byte_fallback=bool(model.get("byte_fallback", False)),
        unk_token=model.get("unk_token"), fuse_unk=bool(model.get("fuse_unk", False)), **shared,
    )
