"""Model families: each module registers its presets and its Hugging Face architectures on import."""

from . import llama  # noqa: F401
from . import gpt, bloom  # noqa: F401
