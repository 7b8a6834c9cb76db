"""A demo cell run before the exercise it uses: say which exercise it waits for.

Such a cell stops at the exercise's stub, a bare ``NotImplementedError()``. Each notebook's set-up
cell calls :func:`name_waiting_exercises`, so that the error names the function or class to write.
"""

from __future__ import annotations

from typing import Any

__all__ = ["name_waiting_exercises"]


def _name_the_exercise(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
    last = tb
    while last.tb_next is not None:
        last = last.tb_next
    owner = last.tb_frame.f_locals.get("self")
    name = type(owner).__name__ if owner is not None else last.tb_frame.f_code.co_name
    if not value.args:
        value.args = (f"this cell needs your `{name}`: write it in its exercise above, run its check, "
                      "then run this cell again",)
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def name_waiting_exercises() -> None:
    """In IPython, give a bare ``NotImplementedError`` from an exercise's stub the name of that exercise."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((NotImplementedError,), _name_the_exercise)
