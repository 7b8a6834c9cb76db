"""Checks for chapter 1, "Attention Is All You Need" (2017)."""

from ..spec import hint
from ..stubs import name_waiting_exercises
from .attention import *  # noqa: F401,F403
from .attention import __all__ as _attention_all
from .blocks import *  # noqa: F401,F403
from .blocks import __all__ as _blocks_all
from .training import *  # noqa: F401,F403
from .training import __all__ as _training_all

__all__ = [*_attention_all, *_blocks_all, *_training_all, "hint", "name_waiting_exercises"]
