"""llmcore: the reference implementation behind the course, one small module per idea.

Chapter 1 (Attention Is All You Need, 2017)::

    from llmcore import Transformer, TransformerConfig, greedy_decode
    model = Transformer(TransformerConfig(src_vocab_size=13, tgt_vocab_size=13, d_model=64, n_heads=4))
"""

from .attention import MultiHeadAttention, merge_heads, record_attention, repeat_kv, scaled_dot_product_attention, split_heads
from .blocks import DecoderBlock, EncoderBlock, residual
from .cache import KVCache
from .decoding import greedy_decode
from .generation import GenerationResult, generate
from .embeddings import TokenEmbedding
from .ffn import FeedForward, get_activation
from .losses import cross_entropy, max_z_loss, next_token_loss
from .alibi import alibi_bias, alibi_slopes
from .ffn import GatedFeedForward, gated_hidden_size
from .moe import MixtureOfExperts, router_losses
from .models import CausalLM, ModelConfig, build, from_pretrained, preset_config, save_pretrained
from .norms import RMSNorm, rms_norm
from .rope import RopeScaling, RotaryEmbedding, apply_rotary
from .masks import (
    and_masks,
    block_sparse_mask,
    causal_mask,
    dense_mask,
    fixed_mask,
    full_mask,
    glm_blank_infilling_mask,
    not_mask,
    or_masks,
    padding_mask,
    prefix_lm_mask,
    sliding_window_mask,
    strided_mask,
)
from .norms import LayerNorm, layer_norm
from .positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_position_encoding
from .schedules import cosine_lr, cosine_lr_scheduler, transformer_lr, transformer_lr_scheduler
from . import tokenizers
from .tokenizers import BPETokenizer, load_hf_tokenizer, train_bpe
from .training import Trainer, TrainingHistory, parameter_groups, plot_losses, set_seed
from .transformer import TRANSFORMER_PRESETS, Transformer, TransformerConfig

__version__ = "0.1.0"

__all__ = [
    "MultiHeadAttention", "merge_heads", "record_attention", "repeat_kv", "scaled_dot_product_attention", "split_heads",
    "DecoderBlock", "EncoderBlock", "residual",
    "greedy_decode", "generate", "GenerationResult", "KVCache",
    "TokenEmbedding",
    "FeedForward", "get_activation",
    "cross_entropy", "max_z_loss", "next_token_loss", "MixtureOfExperts", "router_losses",
    "and_masks", "causal_mask", "dense_mask", "full_mask", "not_mask", "or_masks", "padding_mask", "prefix_lm_mask",
    "sliding_window_mask", "strided_mask", "fixed_mask", "block_sparse_mask", "glm_blank_infilling_mask",
    "LayerNorm", "layer_norm",
    "LearnedPositionalEmbedding", "SinusoidalPositionalEncoding", "sinusoidal_position_encoding",
    "transformer_lr", "transformer_lr_scheduler", "cosine_lr", "cosine_lr_scheduler",
    "tokenizers", "BPETokenizer", "load_hf_tokenizer", "train_bpe",
    "Trainer", "TrainingHistory", "parameter_groups", "plot_losses", "set_seed",
    "TRANSFORMER_PRESETS", "Transformer", "TransformerConfig",
    "alibi_bias", "alibi_slopes", "GatedFeedForward", "gated_hidden_size",
    "CausalLM", "ModelConfig", "build", "from_pretrained", "preset_config", "save_pretrained",
    "RMSNorm", "rms_norm", "RopeScaling", "RotaryEmbedding", "apply_rotary",
]
