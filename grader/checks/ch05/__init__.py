"""Checks for chapter 5, the LLaMA family (2023–2024): the block, RoPE and long context, Mistral's
sliding window, sizes, the training recipe and data parallelism."""

from ..spec import hint
from ..stubs import name_waiting_exercises
from .block import *  # noqa: F401,F403
from .block import __all__ as _block_all
from .data_parallel import *  # noqa: F401,F403
from .data_parallel import __all__ as _data_parallel_all
from .recipe import *  # noqa: F401,F403
from .recipe import __all__ as _recipe_all
from .rope import *  # noqa: F401,F403
from .rope import __all__ as _rope_all
from .window import *  # noqa: F401,F403
from .window import __all__ as _window_all

__all__ = [*_block_all, *_rope_all, *_window_all, *_recipe_all, *_data_parallel_all, "hint", "name_waiting_exercises"]
