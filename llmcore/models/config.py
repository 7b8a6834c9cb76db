"""One configuration for every model of the history.

A model family is a :class:`ModelConfig` plus, at most, the one or two parts that really differ
(a different attention, a different head). Each field names the paper or model that introduced the
choice. Validation happens at construction, and every error names the offending field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..ffn import ACTIVATIONS
from ..rope import RopeScaling

__all__ = ["ModelConfig", "LAYER_KINDS"]

POSITIONS = ("rope", "learned", "sinusoidal", "alibi", "relative_buckets", "disentangled", "none")
BLOCKS = ("pre", "post", "parallel", "deepnorm")
NORMS = ("layernorm", "rmsnorm")
FFNS = ("mlp", "gated")
LAYER_KINDS = ("full", "sliding", "strided", "fixed")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a Transformer language model (decoder-only, encoder-only or encoder–decoder).

    Sizes
        ``vocab_size``, ``hidden_size`` (d_model), ``n_layers``, ``n_heads``, ``n_kv_heads`` (GQA/MQA;
        ``None`` = ``n_heads``), ``head_dim`` (``None`` = ``hidden_size // n_heads``; Gemma sets it
        independently), ``intermediate_size`` (FFN width; per expert for MoE), ``max_positions``.
    Embeddings
        ``position``: ``rope`` (LLaMA …), ``learned`` (BERT, GPT-1/2, BART), ``sinusoidal`` (2017),
        ``alibi`` (BLOOM, Baichuan-13B), ``relative_buckets`` (T5), ``none``.
        ``embedding_scale`` multiplies token embeddings (√d in the 2017 model and Gemma);
        ``embedding_norm`` normalises them (BLOOM's word_embeddings_layernorm, BERT);
        ``position_offset`` shifts learned position ids (BART: 2).
        ``position_2d`` (GLM, 二维位置编码) adds a second position stream, ``block_position_ids``
        (0 in the context, 1, 2, … inside a generated span): with ``rope`` (ChatGLM-6B) the first
        half of every head rotates by ``position_ids`` and the second half by
        ``block_position_ids``, each half-split over ``head_dim/2``; with ``learned`` (GLM-10B) a
        second learned table ``embed_block_positions`` is added.
        ``embedding_grad_shrink`` = α (GLM-130B's 词嵌入梯度缩减, α = 0.1): the token embeddings'
        gradient is multiplied by α, the forward pass is unchanged.
    Blocks
        ``block``: ``pre`` (GPT-2, LLaMA), ``post`` (2017, BERT, GPT-1), ``parallel`` (GPT-J, Phi:
        ``x + attn(n) + ffn(n)`` with one ``n = norm(x)``), ``deepnorm`` (GLM-130B/ChatGLM-6B:
        ``n = norm(x); x = α·n + f(n)`` with ``α = residual_alpha``). ``sandwich_norm`` adds a norm
        on each sublayer's output before the residual (GLM-4, Gemma 2).
        ``norm``: ``layernorm`` or ``rmsnorm``; ``norm_bias`` (LayerNorm only); ``norm_unit_offset``
        (Gemma's ``1 + w``); ``final_norm`` after the last block (pre-norm models need it).
    Attention
        ``qkv_bias`` / ``o_bias`` (Qwen: biases on Q, K, V only); ``attention_scale`` (``None`` =
        1/√head_dim; T5: 1.0); RoPE ``rope_theta``, ``rotary_dim`` (partial rotary; ``None`` = whole
        head), ``rope_interleaved`` (pair layout), ``rope_scaling``; ``layer_kinds``: per-layer
        attention pattern from ``LAYER_KINDS`` (``None`` = all ``full``, or all ``sliding`` when
        ``sliding_window`` is set), with ``sliding_window`` (Mistral: keys within W positions,
        the query included) and ``sparse_block`` (GPT-3's strided/fixed sparse layers);
        ``logn_trained_length`` (Qwen, LogN 注意力缩放: the query at 1-based position ``i`` beyond the
        trained length ``L₀`` is multiplied by ``log_{L₀}(i)``, keeping attention entropy steady).
    Feed-forward
        ``ffn``: ``mlp`` (``down(act(up x))``) or ``gated`` (SwiGLU/GeGLU); ``activation``;
        ``mlp_bias``; ``n_experts``/``experts_per_token`` make every FFN a mixture of experts
        (Mixtral: 8 and 2).
    Output
        ``tie_word_embeddings``; ``lm_head_bias`` (Phi); ``norm_head`` (Baichuan 2: rows of the
        output matrix normalised to unit length).
    Encoder–decoder (``Seq2SeqLM``)
        ``n_decoder_layers`` (``None`` = ``n_layers``); ``share_embeddings``: one token table for
        both stacks (2017 EN–DE, T5, BART; the head ties to the decoder's); ``relative_buckets`` and
        ``relative_max_distance`` size T5's relative position buckets (相对位置桶);
        ``lm_head_scale`` multiplies the last hidden state before the head (T5 v1.0, whose head is
        the tied embedding: d^-0.5); ``final_logits_bias`` adds a fixed, untrained bias buffer to the
        logits (BART).
    Encoder-only (``EncoderModel``: BERT, RoBERTa, ALBERT, ELECTRA, DeBERTa)
        ``type_vocab_size`` segment embeddings (BERT: 2); ``embedding_size`` factorised embeddings
        (ALBERT, ELECTRA-Small: E < d, projected to d); ``share_layers`` applies one layer
        ``n_layers`` times (ALBERT's cross-layer sharing, 跨层参数共享); ``pooler`` adds the
        dense + tanh on [CLS] (BERT's NSP, ALBERT's SOP); ``positions_skip_padding`` (RoBERTa):
        learned position ids count only tokens ≠ ``pad_token_id``, padding takes table row
        ``position_offset − 1``. ``position="disentangled"`` is DeBERTa's disentangled attention
        (解耦注意力) with ``disentangled_terms`` ⊆ {``c2p``, ``p2c``} and log-bucketed relative
        positions (``relative_buckets`` = DeBERTa's position_buckets, ``relative_max_distance`` =
        its max_relative_positions); ``conv_kernel_size`` (DeBERTa-v2's nGiE convolution beside the
        first layer; 0 = none).
    """

    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    intermediate_size: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    max_positions: int = 2048
    dropout: float = 0.0

    position: str = "rope"
    embedding_scale: float | None = None
    embedding_norm: bool = False
    position_offset: int = 0
    type_vocab_size: int = 0
    embedding_size: int | None = None
    position_2d: bool = False
    embedding_grad_shrink: float | None = None

    block: str = "pre"
    residual_alpha: float = 1.0
    sandwich_norm: bool = False
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    norm_bias: bool = True
    norm_unit_offset: bool = False
    final_norm: bool = True

    qkv_bias: bool = False
    o_bias: bool = False
    attention_scale: float | None = None
    rope_theta: float = 10000.0
    rotary_dim: int | None = None
    rope_interleaved: bool = False
    rope_scaling: RopeScaling | None = None
    layer_kinds: tuple[str, ...] | None = None
    sliding_window: int | None = None
    sparse_block: int | None = None
    logn_trained_length: int | None = None

    ffn: str = "gated"
    activation: str = "silu"
    mlp_bias: bool = False
    n_experts: int = 0
    experts_per_token: int = 2

    tie_word_embeddings: bool = False
    lm_head_bias: bool = False
    norm_head: bool = False
    pad_token_id: int | None = None

    n_decoder_layers: int | None = None
    share_embeddings: bool = True
    relative_buckets: int = 32
    relative_max_distance: int = 128
    lm_head_scale: float | None = None
    final_logits_bias: bool = False

    share_layers: bool = False
    pooler: bool = False
    positions_skip_padding: bool = False
    disentangled_terms: tuple[str, ...] = ("c2p", "p2c")
    conv_kernel_size: int = 0

    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "n_layers", "n_heads", "intermediate_size", "max_positions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_kv_heads is not None and (self.n_kv_heads <= 0 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"ModelConfig.n_kv_heads={self.n_kv_heads} must be positive and divide n_heads={self.n_heads}")
        if self.head_dim is None and self.hidden_size % self.n_heads:
            raise ValueError(
                f"ModelConfig.n_heads={self.n_heads} does not divide hidden_size={self.hidden_size}; set head_dim explicitly"
            )
        if self.head_dim is not None and self.head_dim <= 0:
            raise ValueError(f"ModelConfig.head_dim must be positive, got {self.head_dim}")
        for name, allowed in (("position", POSITIONS), ("block", BLOCKS), ("norm", NORMS), ("ffn", FFNS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r} is not one of {list(allowed)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ModelConfig.activation={self.activation!r} is unknown; known: {sorted(ACTIVATIONS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.norm_eps <= 0:
            raise ValueError(f"ModelConfig.norm_eps must be positive, got {self.norm_eps}")
        if self.rotary_dim is not None and (
            self.rotary_dim <= 0 or self.rotary_dim % 2 or self.rotary_dim > self.resolved_head_dim
        ):
            raise ValueError(
                f"ModelConfig.rotary_dim={self.rotary_dim} must be even and within 1..head_dim={self.resolved_head_dim}"
            )
        if self.position == "rope" and self.rope_theta <= 0:
            raise ValueError(f"ModelConfig.rope_theta must be positive, got {self.rope_theta}")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"ModelConfig.sliding_window must be positive, got {self.sliding_window}")
        if self.sparse_block is not None and self.sparse_block <= 0:
            raise ValueError(f"ModelConfig.sparse_block must be positive, got {self.sparse_block}")
        kinds = self.resolved_layer_kinds
        if len(kinds) != self.n_layers:
            raise ValueError(f"ModelConfig.layer_kinds has {len(kinds)} entries for n_layers={self.n_layers}")
        for kind in kinds:
            if kind not in LAYER_KINDS:
                raise ValueError(f"ModelConfig.layer_kinds contains {kind!r}; known: {list(LAYER_KINDS)}")
        if "sliding" in kinds and self.sliding_window is None:
            raise ValueError("ModelConfig.layer_kinds uses 'sliding' but sliding_window is not set")
        if ("strided" in kinds or "fixed" in kinds) and self.sparse_block is None:
            raise ValueError("ModelConfig.layer_kinds uses a sparse layer but sparse_block is not set")
        if self.n_experts < 0 or (self.n_experts and not 0 < self.experts_per_token <= self.n_experts):
            raise ValueError(
                f"ModelConfig.experts_per_token={self.experts_per_token} must be in 1..n_experts={self.n_experts}"
            )
        if self.position_2d and self.position not in ("rope", "learned"):
            raise ValueError(f"ModelConfig.position_2d needs position 'rope' or 'learned', got {self.position!r}")
        if self.position_2d and self.position == "rope" and (self.rotary_dim is not None or self.resolved_head_dim % 4):
            raise ValueError(
                "ModelConfig.position_2d with RoPE rotates both halves of every head in full: it needs "
                f"rotary_dim=None and head_dim divisible by 4 (head_dim={self.resolved_head_dim})"
            )
        if self.embedding_grad_shrink is not None and not 0.0 < self.embedding_grad_shrink <= 1.0:
            raise ValueError(f"ModelConfig.embedding_grad_shrink must be in (0, 1], got {self.embedding_grad_shrink}")
        if self.logn_trained_length is not None and self.logn_trained_length <= 1:
            raise ValueError(f"ModelConfig.logn_trained_length must be > 1, got {self.logn_trained_length}")
        if self.embedding_size is not None and self.embedding_size <= 0:
            raise ValueError(f"ModelConfig.embedding_size must be positive, got {self.embedding_size}")
        if self.n_decoder_layers is not None and self.n_decoder_layers <= 0:
            raise ValueError(f"ModelConfig.n_decoder_layers must be positive, got {self.n_decoder_layers}")
        if self.position == "relative_buckets" and (
            self.relative_buckets < 4 or not self.relative_buckets // 2 < self.relative_max_distance
        ):
            raise ValueError(
                f"ModelConfig.relative_buckets={self.relative_buckets} must be >= 4 and relative_max_distance="
                f"{self.relative_max_distance} larger than relative_buckets // 2 (the exact, unbucketed range)"
            )
        if self.lm_head_scale is not None and self.lm_head_scale <= 0:
            raise ValueError(f"ModelConfig.lm_head_scale must be positive, got {self.lm_head_scale}")
        if self.positions_skip_padding and (
            self.position != "learned" or self.pad_token_id is None or self.position_offset < 1
        ):
            raise ValueError(
                "ModelConfig.positions_skip_padding needs position='learned', a pad_token_id and position_offset >= 1"
            )
        unknown_terms = sorted(set(self.disentangled_terms) - {"c2p", "p2c"})
        if unknown_terms:
            raise ValueError(f"ModelConfig.disentangled_terms contains {unknown_terms}; known: ['c2p', 'p2c']")
        if self.position == "disentangled" and (
            self.relative_buckets < 2 or not self.relative_buckets // 2 < self.relative_max_distance - 1
        ):
            raise ValueError(
                f"ModelConfig.relative_buckets={self.relative_buckets} must be >= 2 and relative_max_distance="
                f"{self.relative_max_distance} larger than relative_buckets // 2 + 1 (DeBERTa's log buckets)"
            )
        if self.conv_kernel_size < 0 or (self.conv_kernel_size and self.conv_kernel_size % 2 == 0):
            raise ValueError(f"ModelConfig.conv_kernel_size must be 0 or odd, got {self.conv_kernel_size}")

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.n_heads

    @property
    def resolved_kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def resolved_rotary_dim(self) -> int:
        return self.rotary_dim if self.rotary_dim is not None else self.resolved_head_dim

    @property
    def resolved_layer_kinds(self) -> tuple[str, ...]:
        if self.layer_kinds is not None:
            return tuple(self.layer_kinds)
        return ("sliding" if self.sliding_window is not None else "full",) * self.n_layers

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.rope_scaling is not None:
            data["rope_scaling"] = asdict(self.rope_scaling)
        if self.layer_kinds is not None:
            data["layer_kinds"] = list(self.layer_kinds)
        data["disentangled_terms"] = list(self.disentangled_terms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        values = dict(data)
        if isinstance(values.get("rope_scaling"), dict):
            values["rope_scaling"] = RopeScaling(**values["rope_scaling"])
        if values.get("layer_kinds") is not None:
            values["layer_kinds"] = tuple(values["layer_kinds"])
        if "disentangled_terms" in values:
            values["disentangled_terms"] = tuple(values["disentangled_terms"])
        return cls(**values)
