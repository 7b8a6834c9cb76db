"""Model families: each module registers its presets and its Hugging Face architectures on import."""

from . import llama  # noqa: F401
