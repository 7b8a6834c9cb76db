"""Model families: each module registers its presets and its Hugging Face architectures on import."""

from . import llama  # noqa: F401
from . import gpt, bloom  # noqa: F401
from . import mixtral  # noqa: F401
from . import phi, baichuan  # noqa: F401
from . import t5, bart, transformer2017  # noqa: F401
from . import qwen, mistral, gemma  # noqa: F401
from . import bert, deberta  # noqa: F401
from . import glm  # noqa: F401
