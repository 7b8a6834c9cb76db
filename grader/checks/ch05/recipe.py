"""Exercises of notebook 04_recipe_and_scale: the parameter count of a LLaMA from its ``params.json``
(SYLLABUS L05) and the three parts of LLaMA's training recipe, AdamW parameter groups, the cosine
schedule with a 10 % floor and clipping by the global norm (SYLLABUS L06).

Each exercise is declared once (:mod:`grader.checks.spec`) and registered; ``check_<name>`` is its
``check``. Every mistake is the reference with one knob turned (a ``*_variant`` below).
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from llmcore import schedules as reference_schedules
from llmcore.ffn import gated_hidden_size
from llmcore.models import CausalLM, ModelConfig
from llmcore.models import sizing as reference_sizing
from llmcore.training import clipping as reference_clipping
from llmcore.training import param_groups as reference_param_groups

from ..cases import CaseRandom
from ..framework import Case, CheckFailure, Mistake, describe_value
from ..spec import Exercise, register

__all__ = [
    "LLAMA_PARAMETER_COUNT",
    "PARAMETER_GROUPS",
    "COSINE_LR",
    "CLIP_GRAD_NORM",
    "check_llama_parameter_count",
    "check_parameter_groups",
    "check_cosine_lr",
    "check_clip_grad_norm",
]


# --------------------------------------------------------------------------------------------------
# The parameter count of a LLaMA from its params.json (SYLLABUS L05)
# --------------------------------------------------------------------------------------------------


def _llama_config(*, dim: int, n_layers: int, n_heads: int, vocab_size: int, n_kv_heads: int | None,
                  multiple_of: int, ffn_dim_multiplier: float | None, tie_embeddings: bool) -> ModelConfig:
    """The ModelConfig of Meta's ``params.json``: the FFN width comes from LLaMA's rounding rule."""
    return ModelConfig(vocab_size=vocab_size, hidden_size=dim, n_layers=n_layers, n_heads=n_heads,
                       n_kv_heads=n_kv_heads, tie_word_embeddings=tie_embeddings,
                       intermediate_size=gated_hidden_size(dim, multiple_of=multiple_of, multiplier=ffn_dim_multiplier))


def _as_count(value: Any) -> Any:
    """A count as a 0-dim tensor, compared exactly: int64 when it is a whole number, float64 when it is not
    (a fractional count is wrong, and tolerances must not let it pass). Python and numpy integers (the sum of
    ``np.prod`` of shapes is a ``numpy.int64``), whole floats and one-element tensors are all counts."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return torch.tensor(int(value), dtype=torch.int64)
    value = float(value)
    if not value.is_integer():
        return torch.tensor(value, dtype=torch.float64)
    return torch.tensor(int(value), dtype=torch.int64)


def _count_reference(**params: Any) -> Tensor:
    return _as_count(reference_sizing.parameter_count(_llama_config(**params)))


def _adapt_count(learner: Callable[..., Any]) -> Callable[..., Any]:
    return lambda **params: _as_count(learner(**params))


def _count_variant(*, dim: int, n_layers: int, n_heads: int, vocab_size: int, n_kv_heads: int | None,
                   multiple_of: int, ffn_dim_multiplier: float | None, tie_embeddings: bool,
                   head: str = "right", norms: str = "all", ffn_width: str = "rounded_up",
                   use_kv_heads: bool = True, gated: bool = True, multiplier_on_4dim: bool = False) -> int:
    """The closed form with one knob turned; every knob at its default gives the reference's count.
    ``multiplier_on_4dim`` scales 4·dim before the 2/3 (int(2·int(m·4·dim)/3)) instead of int(8·dim/3)."""
    kv_heads = n_kv_heads if use_kv_heads and n_kv_heads is not None else n_heads
    head_dim = dim // n_heads
    attention = 2 * dim * n_heads * head_dim + 2 * dim * kv_heads * head_dim
    hidden = int(8 * dim / 3)
    if multiplier_on_4dim and ffn_dim_multiplier is not None:
        hidden = int(2 * int(ffn_dim_multiplier * 4 * dim) / 3)
    elif ffn_width != "multiplier_ignored" and ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    if ffn_width in ("rounded_up", "multiplier_ignored"):
        hidden = multiple_of * math.ceil(hidden / multiple_of)
    elif ffn_width == "rounded_down":
        hidden = multiple_of * (hidden // multiple_of)
    ffn = 3 * dim * hidden if gated else 2 * dim * 4 * dim
    layer_norms = 0 if norms == "none" else 2 * dim
    final_norm = dim if norms == "all" else 0
    heads = {"right": 0 if tie_embeddings else 1, "forgotten": 0, "always": 1}[head]
    return (1 + heads) * vocab_size * dim + n_layers * (attention + ffn + layer_norms) + final_norm


def _count(**knobs: Any) -> Callable[..., Tensor]:
    return lambda **params: _as_count(_count_variant(**params, **knobs))


PARAMETER_COUNT_MISTAKES = [
    Mistake(
        "head_forgotten",
        "the output head is not counted: LLaMA's head is a second vocab_size × dim matrix, not the embedding",
        "LLaMA does not tie its output layer to the token table, so the vocabulary appears twice: once to embed, "
        "once to predict.",
        "add vocab_size * dim for the output head unless tie_embeddings is True.",
        output=_count(head="forgotten"),
    ),
    Mistake(
        "tied_counted_twice",
        "the tied output head is counted twice: with tie_embeddings the head *is* the token table",
        "a tied model (Gemma, Llama 3.2 1B) reuses the embedding matrix to predict; a parameter shared by two "
        "modules is still one parameter.",
        "count vocab_size * dim once when tie_embeddings is True, twice when it is False.",
        output=_count(head="always"),
    ),
    Mistake(
        "norms_forgotten",
        "the RMSNorm weights are not counted",
        "every RMSNorm has a gain vector of size dim: two per layer (before attention, before the FFN) and one "
        "after the last layer.",
        "add 2 * dim per layer and dim for the final norm.",
        output=_count(norms="none"),
    ),
    Mistake(
        "final_norm_forgotten",
        "the final RMSNorm (after the last layer) is not counted",
        "besides the two norms inside every layer, a pre-norm model normalises once more before the output head.",
        "add dim once, outside the sum over layers.",
        output=_count(norms="layers"),
    ),
    Mistake(
        "ffn_not_rounded",
        "the FFN width is not rounded up to a multiple of multiple_of",
        "LLaMA takes int(8·dim/3) (times ffn_dim_multiplier), then rounds *up* to a multiple of multiple_of: "
        "11008 for dim 4096, not 10922.",
        "hidden = multiple_of * ((hidden + multiple_of - 1) // multiple_of), or math.ceil(hidden / multiple_of).",
        output=_count(ffn_width="unrounded"),
    ),
    Mistake(
        "ffn_rounded_down",
        "the FFN width is rounded down instead of up",
        "the rounding goes up, so that the FFN never gets narrower than 8·dim/3.",
        "multiple_of * math.ceil(hidden / multiple_of), not multiple_of * (hidden // multiple_of).",
        output=_count(ffn_width="rounded_down"),
    ),
    Mistake(
        "ffn_multiplier_ignored",
        "ffn_dim_multiplier is ignored (LLaMA 2 70B and LLaMA 3 use 1.3)",
        "the multiplier scales int(8·dim/3) before the rounding.",
        "if ffn_dim_multiplier is not None: hidden = int(ffn_dim_multiplier * hidden), then round up.",
        output=_count(ffn_width="multiplier_ignored"),
    ),
    Mistake(
        "ffn_multiplier_on_4dim",
        "ffn_dim_multiplier scales 4·dim before the 2/3 instead of int(8·dim/3)",
        "Meta's code truncates twice, in this order: hidden = int(2·4·dim/3), then "
        "int(ffn_dim_multiplier · hidden). Another order truncates other fractions and changes the width by a unit "
        "or two, which the rounding up to multiple_of hides only sometimes.",
        "hidden = int(8 * dim / 3); if ffn_dim_multiplier is not None: hidden = int(ffn_dim_multiplier * hidden); "
        "then round up to a multiple of multiple_of.",
        output=_count(multiplier_on_4dim=True),
    ),
    Mistake(
        "kv_heads_ignored",
        "K and V are counted with n_heads heads: grouped-query attention (n_kv_heads) is ignored",
        "with GQA the key and value projections only produce n_kv_heads heads: dim × (n_kv_heads · head_dim) each.",
        "kv = n_kv_heads or n_heads; attention = 2 * dim * dim + 2 * dim * kv * (dim // n_heads).",
        output=_count(use_kv_heads=False),
    ),
    Mistake(
        "gpt_ffn",
        "the FFN is counted as GPT's two dim × 4·dim matrices (the 12·dim² rule of thumb)",
        "SwiGLU has three matrices (gate, up, down) of dim × hidden, with hidden ≈ 8·dim/3 rounded up.",
        "ffn = 3 * dim * hidden.",
        output=_count(gated=False),
    ),
]


def _count_params(dim: int, n_layers: int, n_heads: int, vocab_size: int, *, n_kv_heads: int | None = None,
                  multiple_of: int = 256, ffn_dim_multiplier: float | None = None,
                  tie_embeddings: bool = False) -> dict[str, Any]:
    return dict(dim=dim, n_layers=n_layers, n_heads=n_heads, vocab_size=vocab_size, n_kv_heads=n_kv_heads,
                multiple_of=multiple_of, ffn_dim_multiplier=ffn_dim_multiplier, tie_embeddings=tie_embeddings)


def _parameter_count_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("LLaMA-7B: dim 4096, 32 layers, 32 heads, vocab 32000, multiple_of 256 (published: 6,738,415,616)",
             kwargs=_count_params(4096, 32, 32, 32000)),
        Case("a small model with grouped-query attention: dim 40, 3 layers, 5 heads, 1 KV head, vocab 1000, "
             "multiple_of 32", kwargs=_count_params(40, 3, 5, 1000, n_kv_heads=1, multiple_of=32)),
        Case("Llama-3.2-1B, tied embeddings: dim 2048, 16 layers, 32 heads, 8 KV heads, vocab 128256, "
             "ffn_dim_multiplier 1.5, multiple_of 256 (published: 1,235,814,400)",
             kwargs=_count_params(2048, 16, 32, 128256, n_kv_heads=8, ffn_dim_multiplier=1.5, tie_embeddings=True)),
        Case("LLaMA-2-70B: dim 8192, 80 layers, 64 heads, 8 KV heads, vocab 32000, ffn_dim_multiplier 1.3, "
             "multiple_of 4096 (published: 68,976,648,192)",
             kwargs=_count_params(8192, 80, 64, 32000, n_kv_heads=8, ffn_dim_multiplier=1.3, multiple_of=4096)),
        Case("a small model without rounding (multiple_of 1), so every int() of the FFN width shows: dim 24, "
             "2 layers, 3 heads, vocab 100, ffn_dim_multiplier 1.3",
             kwargs=_count_params(24, 2, 3, 100, ffn_dim_multiplier=1.3, multiple_of=1)),
    ]
    if hidden:
        heads = int(random.ids(4, (1,), low=2))
        kv_heads = heads // 2 if heads % 2 == 0 else 1
        head_dim = 8 * int(random.ids(5, (1,), low=2))
        cases += [
            Case("LLaMA-3-8B: dim 4096, 32 layers, 32 heads, 8 KV heads, vocab 128256, ffn_dim_multiplier 1.3, "
                 "multiple_of 1024", kwargs=_count_params(4096, 32, 32, 128256, n_kv_heads=8, ffn_dim_multiplier=1.3,
                                                          multiple_of=1024)),
            Case(f"a random small model: {heads} heads of {head_dim}, {kv_heads} KV heads, tied, multiplier 1.2",
                 kwargs=_count_params(heads * head_dim, int(random.ids(6, (1,), low=1)), heads,
                                      int(random.ids(5000, (1,), low=300)), n_kv_heads=kv_heads,
                                      ffn_dim_multiplier=1.2, multiple_of=16, tie_embeddings=True)),
            Case("LLaMA-65B: dim 8192, 80 layers, 64 heads, vocab 32000", kwargs=_count_params(8192, 80, 64, 32000)),
        ]
    return cases


def _parameter_count_delegation(**params: Any) -> int:
    return reference_sizing.parameter_count(_llama_config(**params))


# llama_parameter_count(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
# tie_embeddings) -> int, the fields of Meta's params.json; a closed form, so building a model is refused.
LLAMA_PARAMETER_COUNT = register(Exercise(
    id="llama_parameter_count",
    title="llama_parameter_count",
    syllabus=("L05",),
    reference=_count_reference,
    cases=_parameter_count_cases,
    mistakes=PARAMETER_COUNT_MISTAKES,
    forbidden={reference_sizing.parameter_count: "llmcore.models.sizing.parameter_count",
               CausalLM.__init__: "building the model (llmcore.models.CausalLM)",
               nn.Module.parameters: "counting a built model's parameters (nn.Module.parameters)",
               nn.Module.named_parameters: "counting a built model's parameters (nn.Module.named_parameters)"},
    delegation=_parameter_count_delegation,
    adapt=_adapt_count,
    output_names=("parameter count",),
    fallback_hint="per layer: 2·dim·dim (Q, O) + 2·dim·kv·head_dim (K, V) + 3·dim·hidden (SwiGLU) "
    "+ 2·dim (norms); "
    "then vocab·dim for the embedding, vocab·dim for the head unless tied, and dim for the final norm. "
    "hidden = int(8·dim/3), times ffn_dim_multiplier if given, rounded up to a multiple of multiple_of.",
))
check_llama_parameter_count = LLAMA_PARAMETER_COUNT.check


# --------------------------------------------------------------------------------------------------
# AdamW parameter groups (SYLLABUS L06)
# --------------------------------------------------------------------------------------------------

ADAMW_DEFAULT_DECAY: float = inspect.signature(torch.optim.AdamW).parameters["weight_decay"].default
"""The weight decay AdamW gives a group that names none (0.01 in PyTorch 2)."""

_EACH_PARAMETER = ("the weight decay AdamW applies to this parameter",) * 4096
"""Output names: the check compares one line per trainable parameter; every line carries its own name."""


def _what_adamw_does(groups: Any, model: nn.Module) -> tuple[str, ...]:
    """One line per trainable parameter of ``model``: the weight decay AdamW would apply to it with these groups,
    "in no group", "in N groups" or "listed N times in one group". Frozen parameters are left out (AdamW never
    updates them anyway)."""
    decays: dict[int, list[float]] = {}
    groups_holding: dict[int, set[int]] = {}
    for number, group in enumerate(groups):
        params = group["params"]
        for parameter in [params] if isinstance(params, Tensor) else params:
            decays.setdefault(id(parameter), []).append(float(group.get("weight_decay", ADAMW_DEFAULT_DECAY)))
            groups_holding.setdefault(id(parameter), set()).add(number)
    lines = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        found = decays.get(id(parameter), [])
        in_groups = len(groups_holding.get(id(parameter), ()))
        if in_groups > 1:
            lines.append(f"{name}: in {in_groups} groups")
        elif len(found) > 1:
            lines.append(f"{name}: listed {len(found)} times in one group")
        elif not found:
            lines.append(f"{name}: in no group")
        else:
            lines.append(f"{name}: decayed ({found[0]:g})" if found[0] else f"{name}: not decayed")
    return tuple(lines)


def _refuse_groups(problem: str) -> CheckFailure:
    return CheckFailure(
        f"✘ parameter_groups must return what torch.optim.AdamW takes, a list of group dicts such as "
        f"[{{'params': decay, 'weight_decay': weight_decay}}, {{'params': no_decay, 'weight_decay': 0.0}}] "
        f"(each 'params' a list of parameters); {problem}",
        exercise="parameter_groups", mistake_id="wrong_return")


def _usable_groups(groups: Any) -> list[dict[str, Any]]:
    """The learner's groups, checked the way torch.optim.AdamW checks them, with each 'params' made a list (a
    generator is read once). A parameter in two groups is left to the comparison, which names it."""
    if isinstance(groups, dict):
        keys = ", ".join(repr(key) for key in list(groups)[:4])
        raise _refuse_groups(f"it returned one dict (keys {keys}). Put each list of parameters into a dict of its "
                             "own, with its 'weight_decay', and return the list of those dicts.")
    if groups is None or isinstance(groups, (Tensor, str)) or not isinstance(groups, Iterable):
        raise _refuse_groups(f"it returned {describe_value(groups)}.")
    groups = list(groups)
    for number, group in enumerate(groups, start=1):
        if not isinstance(group, dict):
            raise _refuse_groups(f"group {number} of the returned list is {describe_value(group)}, not a dict.")
        if "params" not in group:
            raise _refuse_groups(f"group {number} has no 'params' key (its keys: "
                                 f"{', '.join(repr(key) for key in group) or 'none'}).")
        if isinstance(group["params"], (set, frozenset)):
            raise _refuse_groups(f"the 'params' of group {number} is a set, which AdamW refuses: a set's order "
                                 "changes from run to run, and an optimizer's saved state is matched to its "
                                 "parameters by position. Collect the parameters in a list.")
    usable = [{**group, "params": [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])}
              for group in groups]
    seen: dict[int, int] = {}
    for number, group in enumerate(usable):
        for parameter in group["params"]:
            if seen.setdefault(id(parameter), number) != number:
                return usable  # in two groups: AdamW would raise; the comparison names the parameter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a parameter twice in one group: AdamW warns, the comparison names it
            torch.optim.AdamW([dict(group) for group in usable], lr=1e-3)
    except (TypeError, ValueError, KeyError) as error:
        raise _refuse_groups(f"AdamW refuses the returned groups: {type(error).__name__}: {error}") from None
    return usable


def _adapt_groups(learner: Callable) -> Callable[[nn.Module, float], tuple[str, ...]]:
    return lambda model, weight_decay: _what_adamw_does(_usable_groups(learner(model, weight_decay)), model)


def _groups_reference(model: nn.Module, weight_decay: float) -> tuple[str, ...]:
    return _what_adamw_does(reference_param_groups.parameter_groups(model, weight_decay), model)


def _groups_variant(model: nn.Module, weight_decay: float, *, decay_norms: bool = False, decay_biases: bool = False,
                    decay_embeddings: bool = False, undecayed_rate: float = 0.0,
                    tied_twice: str = "") -> tuple[str, ...]:
    """The reference's split with one knob turned; ``tied_twice`` "two_groups" lists a tied weight in the decayed
    group as well, "one_group" twice in its own group."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, reference_param_groups.NORM_TYPES)
                   for p in m.parameters(recurse=False)}
    embedding_params = {id(p) for m in model.modules() if isinstance(m, reference_param_groups.EMBEDDING_TYPES)
                        for p in m.parameters(recurse=False)}
    bias_params = {id(m.bias) for m in model.modules() if isinstance(getattr(m, "bias", None), nn.Parameter)}
    exempt = ((set() if decay_norms else norm_params) | (set() if decay_biases else bias_params)
              | (set() if decay_embeddings else embedding_params))
    decayed, undecayed = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (undecayed if id(parameter) in exempt else decayed).append(parameter)
    if tied_twice:  # listed by every module that holds it: the tied matrix by the embedding and by the head
        owners = {}
        for module in model.modules():
            for parameter in module.parameters(recurse=False):
                owners.setdefault(id(parameter), []).append(parameter)
        tied = [p for p in model.parameters() if len(owners.get(id(p), [])) > 1]
        if tied_twice == "two_groups":
            decayed += tied
        else:
            tied_ids = {id(p) for p in tied}
            undecayed += [p for p in undecayed if id(p) in tied_ids]
            decayed += [p for p in decayed if id(p) in tied_ids]
    return _what_adamw_does([{"params": decayed, "weight_decay": weight_decay},
                             {"params": undecayed, "weight_decay": undecayed_rate}], model)


def _groups(**knobs: Any) -> Callable[[nn.Module, float], tuple[str, ...]]:
    return lambda model, weight_decay: _groups_variant(model, weight_decay, **knobs)


PARAMETER_GROUPS_MISTAKES = [
    Mistake(
        "all_decayed",
        "every parameter is decayed: one group for the whole model",
        "weight decay pulls every decayed value toward 0; a norm's gain, a bias and (in this course) an embedding "
        "are not weights that should shrink, so they go into a second group with weight_decay 0.0.",
        "two groups: {'params': decay, 'weight_decay': weight_decay} and {'params': no_decay, 'weight_decay': 0.0}.",
        output=_groups(decay_norms=True, decay_biases=True, decay_embeddings=True),
    ),
    Mistake(
        "norms_decayed",
        "the normalisation weights (RMSNorm/LayerNorm) are decayed",
        "a norm's gain sets the scale of its output; decay would drag it toward 0 and fight the normalisation.",
        "find norms by type: isinstance(module, (nn.LayerNorm, nn.RMSNorm, llmcore.LayerNorm, llmcore.RMSNorm)) "
        "(their names vary: ln_f, self_attn_norm …), and put all their parameters in the no-decay group.",
        output=_groups(decay_norms=True),
    ),
    Mistake(
        "biases_decayed",
        "the biases are decayed",
        "a bias only shifts; decaying it adds nothing against overfitting, so GPT-style recipes leave biases alone.",
        "every parameter called bias (name.endswith('bias')) goes into the no-decay group.",
        output=_groups(decay_biases=True),
    ),
    Mistake(
        "embeddings_decayed",
        "the embedding tables are decayed (nanoGPT's `p.dim() >= 2` rule)",
        "this course follows minGPT and OLMo: embedding tables (and a head tied to one) are not decayed. "
        "The dimension rule is right for norms and biases but catches the embeddings too.",
        "also exempt every parameter of an nn.Embedding (or llmcore.TokenEmbedding) module.",
        output=_groups(decay_embeddings=True),
    ),
    Mistake(
        "no_decay_group_without_rate",
        "the no-decay group has no 'weight_decay' key, so AdamW gives it its default of 0.01",
        "a group without a 'weight_decay' entry takes the optimizer's default, and AdamW's default is not 0.",
        "write 'weight_decay': 0.0 into the no-decay group explicitly.",
        output=_groups(undecayed_rate=ADAMW_DEFAULT_DECAY),
    ),
    Mistake(
        "tied_weight_twice",
        "the tied weight is listed in two groups (once for the embedding, once for the output head)",
        "a parameter shared by two modules is one parameter: model.modules() meets it twice, model.parameters() "
        "once. AdamW refuses a parameter that appears in two groups.",
        "loop over model.named_parameters() (each parameter once), or keep a set of the ids already placed.",
        output=_groups(tied_twice="two_groups"),
    ),
    Mistake(
        "tied_weight_twice_in_one_group",
        "the tied weight is listed twice in the same group (once for the embedding, once for the output head)",
        "a parameter shared by two modules is one parameter: model.modules() meets it twice, model.parameters() "
        "once. AdamW only warns about a parameter listed twice in one group, then updates it twice at every step.",
        "loop over model.named_parameters() (each parameter once), or keep a set of the ids already placed.",
        output=_groups(tied_twice="one_group"),
    ),
]


class _Block(nn.Module):
    """A GPT-style block written with PyTorch's own modules and names that do not say 'norm'."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.Linear(width, 3 * width)
        self.ln_2 = nn.RMSNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width, bias=False), nn.GELU(), nn.Linear(4 * width, width))


class _PlainLM(nn.Module):
    """A language model made of plain PyTorch modules: a tied head, a frozen table, norms named ln_*."""

    def __init__(self, vocab: int, width: int, layers: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(32, width)
        self.wpe.weight.requires_grad_(False)
        self.h = nn.ModuleList(_Block(width) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight


def _llmcore_lm(salt: int, random: CaseRandom, **fields: Any) -> CausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random.child_seed(salt))
        return CausalLM(ModelConfig(**fields))


def _parameter_groups_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    llama = dict(vocab_size=50, hidden_size=16, n_layers=2, n_heads=2, n_kv_heads=1, intermediate_size=24)
    gpt = dict(vocab_size=40, hidden_size=12, n_layers=2, n_heads=3, intermediate_size=20, position="learned",
               max_positions=24, norm="layernorm", ffn="mlp", activation="gelu", qkv_bias=True, o_bias=True,
               mlp_bias=True, tie_word_embeddings=True)
    cases = [
        Case("a tiny LLaMA (llmcore CausalLM: RMSNorm, no biases, untied head), weight_decay=0.1",
             (_llmcore_lm(1, random, **llama), 0.1)),
        Case("a tiny GPT-2 (llmcore CausalLM: LayerNorm with bias, biases everywhere, learned positions, head tied "
             "to the token embedding), weight_decay=0.1", (_llmcore_lm(2, random, **gpt), 0.1)),
        Case("a plain PyTorch model (nn.LayerNorm and nn.RMSNorm named ln_*, a frozen position table, a tied head), "
             "weight_decay=0.05", (_PlainLM(30, 8, 2), 0.05)),
    ]
    if hidden:
        cases += [
            Case("a tiny Qwen-style model (biases on q, k, v only), weight_decay=0.01",
                 (_llmcore_lm(3, random, **llama, qkv_bias=True), 0.01)),
            Case("a tied tiny LLaMA with weight_decay=0.0 (nothing decays, every parameter still once)",
                 (_llmcore_lm(4, random, **{**llama, "tie_word_embeddings": True}), 0.0)),
        ]
    return cases


def _parameter_groups_delegation(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    return reference_param_groups.parameter_groups(model, weight_decay)


# parameter_groups(model, weight_decay) -> [{"params": [...], "weight_decay": wd},
#                                            {"params": [...], "weight_decay": 0.0}]
# compared parameter by parameter: the decay AdamW would apply with the returned groups.
PARAMETER_GROUPS = register(Exercise(
    id="parameter_groups",
    title="parameter_groups",
    syllabus=("L06",),
    reference=_groups_reference,
    cases=_parameter_groups_cases,
    mistakes=PARAMETER_GROUPS_MISTAKES,
    forbidden={reference_param_groups.parameter_groups: "llmcore.training.parameter_groups"},
    delegation=_parameter_groups_delegation,
    adapt=_adapt_groups,
    output_names=_EACH_PARAMETER,
    fallback_hint="for name, p in model.named_parameters(): skip frozen ones; no decay if p belongs to a norm "
    "module, is a bias, or belongs to an nn.Embedding; return [{'params': decay, 'weight_decay': weight_decay}, "
    "{'params': no_decay, 'weight_decay': 0.0}].",
))
check_parameter_groups = PARAMETER_GROUPS.check


# --------------------------------------------------------------------------------------------------
# Cosine decay to 10 % after a linear warm-up (SYLLABUS L06)
# --------------------------------------------------------------------------------------------------


def _schedule(lr: Callable[..., float]) -> Callable[..., Tensor]:
    """The learning rates of ``lr(step, **settings)`` at the given steps, in units of peak_lr, as one float32 tensor.

    A schedule computed in float32 (torch's default dtype: ``torch.tensor(step)``, ``torch.cos``) is right, so
    the comparison is float32's; dividing by peak_lr puts every case on the scale of 1, where float32's
    tolerance (1e-5 + 1e-4·|expected|) still sees a warm-up one step off at 2000 warm-up steps."""
    return lambda steps, **settings: torch.tensor(
        [float(lr(step, **settings)) / settings["peak_lr"] for step in steps], dtype=torch.float32)


def _cosine_variant(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1,
                    floor: str = "ratio", warmup_offset: int = 0, decay_length: str = "after_warmup",
                    clamp_after_end: bool = True) -> float:
    """The schedule with one knob turned: ``floor`` "ratio" (right), "zero", "added" (floor + peak·cosine) or
    "clamp" (max(floor, peak·cosine)); ``warmup_offset`` 1 counts the warm-up from 1; ``decay_length``
    "total" spreads the cosine over total_steps; ``clamp_after_end`` False lets the cosine rise again."""
    low = 0.0 if floor == "zero" else min_lr_ratio * peak_lr
    if step < warmup_steps:
        return peak_lr * (step + warmup_offset) / warmup_steps
    if step >= total_steps and clamp_after_end:
        return low if floor != "added" else low + peak_lr * 0.5 * (1 + math.cos(math.pi))
    length = total_steps if decay_length == "total" else total_steps - warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / length))
    if floor == "added":
        return low + peak_lr * cosine
    if floor == "clamp":
        return max(low, peak_lr * cosine)
    return low + (peak_lr - low) * cosine


def _cosine(**knobs: Any) -> Callable[..., Tensor]:
    return _schedule(lambda step, **settings: _cosine_variant(step, **settings, **knobs))


COSINE_MISTAKES = [
    Mistake(
        "floor_zero",
        "the schedule decays to 0 instead of to min_lr_ratio · peak_lr (Hugging Face's "
        "get_cosine_schedule_with_warmup does that)",
        "LLaMA and GPT-3 stop the decay at 10 % of the peak: the cosine runs between peak_lr and the floor.",
        "floor = min_lr_ratio * peak_lr; lr = floor + (peak_lr - floor) * 0.5 * (1 + cos(pi * progress)).",
        output=_cosine(floor="zero"),
    ),
    Mistake(
        "warmup_off_by_one",
        "the warm-up is off by one: it reaches the peak one step early (step + 1 instead of step)",
        "steps count from 0 and the first update runs at lr 0; the peak is reached exactly at step == warmup_steps.",
        "lr = peak_lr * step / warmup_steps while step < warmup_steps.",
        output=_cosine(warmup_offset=1),
    ),
    Mistake(
        "decay_over_total_steps",
        "the cosine is spread over total_steps instead of the total_steps − warmup_steps steps after the warm-up",
        "the decay starts when the warm-up ends and must reach the floor exactly at total_steps.",
        "progress = (step - warmup_steps) / (total_steps - warmup_steps).",
        output=_cosine(decay_length="total"),
    ),
    Mistake(
        "floor_added",
        "the floor is added on top of peak_lr · cosine, so the schedule starts above the peak",
        "the cosine must move between peak_lr and the floor: it scales the *difference* (peak_lr − floor).",
        "lr = floor + (peak_lr - floor) * 0.5 * (1 + cos(pi * progress)).",
        output=_cosine(floor="added"),
    ),
    Mistake(
        "floor_as_clamp",
        "the floor is a clamp, max(floor, peak_lr · cosine): the decay hits the floor early and stays flat",
        "with the floor built into the cosine, the rate keeps decreasing smoothly until total_steps.",
        "lr = floor + (peak_lr - floor) * 0.5 * (1 + cos(pi * progress)), with no max().",
        output=_cosine(floor="clamp"),
    ),
    Mistake(
        "cosine_rises_after_end",
        "after total_steps the cosine keeps going and the rate rises again",
        "past total_steps the rate stays at the floor (training that runs a little longer must not warm up again).",
        "if step >= total_steps: return min_lr_ratio * peak_lr.",
        output=_cosine(clamp_after_end=False),
    ),
]


def _cosine_case(title: str, peak_lr: float, warmup: int, total: int, ratio: float, stride: int = 1) -> Case:
    """The schedule at steps 0, stride, 2·stride, … to a quarter past total_steps (at least 2 past it)."""
    last = total + max(2, total // 4)
    sweep = (f"every step 0 … {last} (index i is step i)" if stride == 1
             else f"steps 0, {stride}, …, {last - last % stride} (index i is step {stride}·i)")
    settings = dict(peak_lr=peak_lr, warmup_steps=warmup, total_steps=total, min_lr_ratio=ratio)
    return Case(f"{title}: peak_lr={peak_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr_ratio={ratio:g}; "
                f"{sweep}", (list(range(0, last + 1, stride)),), settings)


def _cosine_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # The first two cases each leave one family of mistakes invisible (no warm-up; no floor), so that a
    # warm-up slip and a floor slip made together are still named one at a time.
    cases = [
        _cosine_case("no warm-up", 6e-4, 0, 12, 0.1),
        _cosine_case("decay to 0", 1.0, 5, 20, 0.0),
        _cosine_case("LLaMA's settings", 3e-4, 2000, 10000, 0.1, stride=250),
        _cosine_case("the shortest schedule", 0.5, 1, 2, 0.25),
    ]
    if hidden:
        warmup = int(random.ids(50, (1,), low=3))
        total = warmup + int(random.ids(400, (1,), low=20))
        cases += [
            _cosine_case("random settings", 1e-3, warmup, total, 0.1),
            _cosine_case("GPT-3 175B-like", 6e-5, 375, 100000, 0.1, stride=125),
            _cosine_case("a short warm-up", 1.0, 7, 28, 0.1),
        ]
    return cases


# cosine_lr(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1) -> float, compared at every step of a sweep.
COSINE_LR = register(Exercise(
    id="cosine_lr",
    title="cosine_lr",
    syllabus=("L06",),
    reference=_schedule(reference_schedules.cosine_lr),
    cases=_cosine_cases,
    mistakes=COSINE_MISTAKES,
    forbidden={reference_schedules.cosine_lr: "llmcore.schedules.cosine_lr",
               reference_schedules.cosine_lr_scheduler: "llmcore.schedules.cosine_lr_scheduler"},
    delegation=reference_schedules.cosine_lr,
    adapt=_schedule,
    output_names=("learning rate ÷ peak_lr at each step of the sweep",),
    fallback_hint="step < warmup_steps: peak_lr * step / warmup_steps; step >= total_steps: floor; otherwise "
    "floor + (peak_lr - floor) * 0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))), "
    "with floor = min_lr_ratio * peak_lr.",
))
check_cosine_lr = COSINE_LR.check


# --------------------------------------------------------------------------------------------------
# Clipping by the global norm (SYLLABUS L06)
# --------------------------------------------------------------------------------------------------

ClipResult = tuple[Any, ...]


def _with_gradients(gradients: tuple[Tensor | None, ...]) -> list[nn.Parameter]:
    parameters = []
    for gradient in gradients:
        like = gradient if gradient is not None else torch.zeros(3)
        parameter = nn.Parameter(torch.zeros_like(like))
        parameter.grad = None if gradient is None else gradient.clone()
        parameters.append(parameter)
    return parameters


GENERATOR = "a generator, as model.parameters() is"
"""How a case passes the parameters, as the learner reads it in "The inputs were: …" (else "a list")."""


def _clip_outcome(clip: Callable, parameters: list[nn.Parameter], max_norm: float, passed_as: str) -> ClipResult:
    """``(returned norm, gradient 1, gradient 2, …)`` after ``clip(parameters, max_norm)`` on fresh copies of the
    case's parameters; the norm in the gradients' dtype, so that a Python float and a 0-dim tensor are compared
    alike."""
    parameters = _with_gradients(tuple(p.grad for p in parameters))
    total = clip((p for p in parameters) if passed_as == GENERATOR else parameters, max_norm)
    dtype = next(p.grad.dtype for p in parameters if p.grad is not None)
    if isinstance(total, (int, float)) or (isinstance(total, Tensor) and total.numel() == 1):
        total = torch.as_tensor(total).detach().reshape(()).to(dtype)
    return (total, *(p.grad for p in parameters))


def _adapt_clip(learner: Callable) -> Callable[..., ClipResult]:
    # the parameters' names are those the learner's function has, so that an error lists its own inputs
    return lambda parameters, max_norm, passed_as: _clip_outcome(learner, parameters, max_norm, passed_as)


def _clip_variant(parameters: Iterable[nn.Parameter], max_norm: float, *, norm: str = "global",
                  rescale_always: bool = False, return_after: bool = False, change_gradients: bool = True) -> Tensor:
    """The clipping with one knob turned: ``norm`` "global" (right), "sum_of_norms", "squared" or "per_parameter"."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    norms = torch.stack([g.norm() for g in gradients])
    total = {"global": norms.pow(2).sum().sqrt(), "per_parameter": norms.pow(2).sum().sqrt(),
             "sum_of_norms": norms.sum(), "squared": norms.pow(2).sum()}[norm]
    if norm == "per_parameter":
        for gradient, own in zip(gradients, norms):
            gradient.mul_(torch.clamp(max_norm / (own + 1e-6), max=1.0))
        return total
    factor = max_norm / (total + 1e-6)
    if not rescale_always:
        factor = torch.clamp(factor, max=1.0)
    if change_gradients:
        for gradient in gradients:
            gradient.mul_(factor)
    return torch.minimum(total, torch.as_tensor(max_norm, dtype=total.dtype)) if return_after else total


def _clip(**knobs: Any) -> Callable[..., ClipResult]:
    return lambda parameters, max_norm, passed_as: _clip_outcome(
        lambda params, limit: _clip_variant(list(params), limit, **knobs), parameters, max_norm, passed_as)


CLIP_MISTAKES = [
    Mistake(
        "per_parameter",
        "each gradient is clipped by its own norm instead of by the global norm",
        "clipping treats all gradients as one vector: one factor, max_norm / ‖g‖ over all of them, keeps the "
        "direction of the update; a factor per tensor changes it.",
        "total = sqrt(sum of every gradient's squared norm); then multiply *every* gradient by "
        "min(1, max_norm / (total + 1e-6)).",
        output=_clip(norm="per_parameter"),
    ),
    Mistake(
        "sum_of_norms",
        "the global norm is the sum of the gradients' norms instead of the root of the sum of their squares",
        "the global norm is the L2 norm of all gradients concatenated: sqrt(Σ‖g_i‖²), which is smaller than "
        "Σ‖g_i‖.",
        "total = torch.stack([g.norm() for g in grads]).pow(2).sum().sqrt().",
        output=_clip(norm="sum_of_norms"),
    ),
    Mistake(
        "squared_norm",
        "the square root is missing: the 'norm' is the sum of squares",
        "Σ‖g_i‖² is the squared norm; clipping compares max_norm with its square root.",
        "total = (sum of g.pow(2).sum()) ** 0.5.",
        output=_clip(norm="squared"),
    ),
    Mistake(
        "always_rescaled",
        "the gradients are rescaled even when their norm is below max_norm (small gradients are blown up)",
        "clipping only ever shrinks: the factor is min(1, max_norm / total), never max(1, …) and never "
        "max_norm / total alone.",
        "factor = min(1.0, max_norm / (total + 1e-6)), or skip the rescaling when total <= max_norm.",
        output=_clip(rescale_always=True),
    ),
    Mistake(
        "returns_norm_after",
        "the returned norm is the one after clipping; the norm before clipping is what gets logged",
        "the returned value is the gradient norm the model produced (training logs plot it to spot spikes), "
        "measured before the rescaling.",
        "compute total first, keep it, scale the gradients, return total.",
        output=_clip(return_after=True),
    ),
    Mistake(
        "gradients_unchanged",
        "the gradients are not changed: the norm is right but nothing is scaled",
        "either the rescaling rebinds a name (g = g * factor leaves p.grad as it was), or `parameters` was a "
        "generator such as model.parameters() and the first loop used it up, so the second loop saw nothing, "
        "or the factor can never go below 1 (max(1, max_norm / total) where min(1, …) belongs).",
        "start with params = [p for p in parameters if p.grad is not None]; scale in place: p.grad.mul_(factor).",
        output=_clip(change_gradients=False),
    ),
]


def _clip_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def parameters(*shapes: tuple[int, ...], dtype: torch.dtype = torch.float32,
                   scale: float = 1.0, without_gradient: int = 0) -> list[nn.Parameter]:
        gradients = [random.tensor(shape, dtype, scale=scale) for shape in shapes]
        return _with_gradients((*gradients, *[None] * without_gradient))

    # The first case is one where nothing may change: a factor that can grow (max(1, …) instead of min(1, …),
    # or no min at all) shows there as gradients blown up, not as gradients left alone further on.
    cases = [
        Case("gradients [4, 3], [6] in float32 whose global norm is below max_norm=50: nothing changes",
             (parameters((4, 3), (6,)), 50.0, "a list")),
        Case("gradients [3, 5], [7], [2, 4, 6] in float32, global norm ≈ 8, max_norm=1.0",
             (parameters((3, 5), (7,), (2, 4, 6)), 1.0, "a list")),
        Case("gradients [5, 2], [9] in float64 (global norm ≈ 50), one parameter without a gradient (None), "
             "max_norm=2.5", (parameters((5, 2), (9,), dtype=torch.float64, scale=10.0, without_gradient=1), 2.5,
                              "a list")),
        Case("parameters passed as a generator (as model.parameters() is): gradients [2, 3], [8], [3, 1, 2], "
             "float64, max_norm=0.5",
             (parameters((2, 3), (8,), (3, 1, 2), dtype=torch.float64, scale=5.0), 0.5, GENERATOR)),
    ]
    if hidden:
        cases += [
            Case("one parameter [11, 3] in float64, max_norm=1.0",
                 (parameters((11, 3), dtype=torch.float64, scale=10.0), 1.0, GENERATOR)),
            Case("six gradients of mixed sizes in float32, max_norm=0.1",
                 (parameters((2, 3, 4), (5,), (1,), (6, 2), (3, 3), (7, 1)), 0.1, "a list")),
        ]
    return cases


def _clip_delegation(parameters: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)


# clip_grad_norm(parameters, max_norm) -> the global norm before clipping; scales every p.grad in place.
CLIP_GRAD_NORM = register(Exercise(
    id="clip_grad_norm",
    title="clip_grad_norm",
    syllabus=("L06",),
    reference=_adapt_clip(reference_clipping.clip_grad_norm),
    cases=_clip_cases,
    mistakes=CLIP_MISTAKES,
    forbidden={torch.nn.utils.clip_grad_norm_: "torch.nn.utils.clip_grad_norm_",
               torch.nn.utils.clip_grad_norm: "torch.nn.utils.clip_grad_norm",
               torch.nn.utils.get_total_norm: "torch.nn.utils.get_total_norm",
               torch.nn.utils.clip_grads_with_norm_: "torch.nn.utils.clip_grads_with_norm_",
               reference_clipping.clip_grad_norm: "llmcore.training.clipping.clip_grad_norm"},
    delegation=_clip_delegation,
    adapt=_adapt_clip,
    output_names=("returned norm", *(f"gradient of parameter {i}" for i in range(1, 9))),
    fallback_hint="grads = [p.grad for p in parameters if p.grad is not None]; total = sqrt(Σ g.pow(2).sum()); "
    "factor = min(1, max_norm / (total + 1e-6)); g.mul_(factor) for every g; return total.",
))
check_clip_grad_norm = CLIP_GRAD_NORM.check
