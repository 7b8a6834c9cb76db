"""The model zoo: one configurable stack, every architecture of the history as a configuration.

::

    import llmcore
    model = llmcore.build("tiny-llama")                 # a named preset
    model = llmcore.from_pretrained("path/to/folder")   # a local Hugging Face checkpoint
"""

from .config import LAYER_KINDS, ModelConfig
from .decoder import CausalLM, NormHead
from .disentangled_attention import DisentangledEncoder, DisentangledMaskedLM, DisentangledSelfAttention
from .encoder import Discriminator, EncoderModel, MaskedLM
from .hub import from_hf_model, from_pretrained, save_pretrained
from .registry import ARCHITECTURES, PRESETS, Preset, build, preset_config
from .seq2seq import Seq2SeqLM
from .stack import Embeddings, TransformerLayer

# Last: each family module registers its presets and architectures on import, so PRESETS and
# ARCHITECTURES are complete as soon as llmcore.models is imported.
from . import families  # noqa: E402,F401

__all__ = [
    "LAYER_KINDS", "ModelConfig", "CausalLM", "NormHead", "from_hf_model", "from_pretrained", "save_pretrained",
    "ARCHITECTURES", "PRESETS", "Preset", "build", "preset_config", "Embeddings", "TransformerLayer",
    "Seq2SeqLM",
    "EncoderModel", "MaskedLM", "Discriminator", "DisentangledEncoder", "DisentangledMaskedLM", "DisentangledSelfAttention",
]
