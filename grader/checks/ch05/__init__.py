"""Checks for chapter 5, the LLaMA family (2023–2024): the block, RoPE and long context, Mistral's
sliding window, sizes, the training recipe and data parallelism; then the open models built on the
recipe (Qwen, GLM and ChatGLM, ALiBi with Baichuan and BLOOM) and the data pipeline."""

from ..spec import hint
from ..stubs import name_waiting_exercises
from .alibi_baichuan import *  # noqa: F401,F403
from .alibi_baichuan import __all__ as _alibi_baichuan_all
from .block import *  # noqa: F401,F403
from .block import __all__ as _block_all
from .data_parallel import *  # noqa: F401,F403
from .data_parallel import __all__ as _data_parallel_all
from .dedup import *  # noqa: F401,F403
from .dedup import __all__ as _dedup_all
from .glm import *  # noqa: F401,F403
from .glm import __all__ as _glm_all
from .qwen import *  # noqa: F401,F403
from .qwen import __all__ as _qwen_all
from .recipe import *  # noqa: F401,F403
from .recipe import __all__ as _recipe_all
from .rope import *  # noqa: F401,F403
from .rope import __all__ as _rope_all
from .window import *  # noqa: F401,F403
from .window import __all__ as _window_all

__all__ = [
    *_block_all, *_rope_all, *_window_all, *_recipe_all, *_data_parallel_all,
    *_qwen_all, *_glm_all, *_alibi_baichuan_all, *_dedup_all, "hint", "name_waiting_exercises",
]
