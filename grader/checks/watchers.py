"""Catch a learner who delegates the exercise to an existing implementation, while their code runs.

Two watchers run together around the learner's code (forward and backward):

- :class:`CallWatcher` sees Python-level calls (``sys.setprofile``): llmcore's own functions and
  classes, ``torch.nn.functional`` builtins, matched by code object or identity, so aliases and
  ``from … import`` copies are caught.
- :class:`OpWatcher` sees the ATen operators that actually execute (a ``TorchDispatchMode``), so
  ``torch.ops.aten.*``, ``torch._C`` spellings and any other library that ends in the same kernel
  (``aten::_scaled_dot_product_*``, ``aten::native_layer_norm``, ``aten::embedding``) are caught too.

Reference versions of *earlier* exercises stay allowed: each exercise forbids only its own.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable, Mapping

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["CallWatcher", "OpWatcher", "DelegationWatch"]


class CallWatcher:
    """Record calls of forbidden Python callables while a block runs.

    ``forbidden`` maps a callable to the name shown to the learner. Python functions are matched by
    code object, classes by the code of their ``forward``, builtins by identity.
    """

    def __init__(self, forbidden: Mapping[Callable, str]) -> None:
        self._codes: dict[Any, str] = {}
        self._builtins: dict[int, str] = {}
        for target, label in forbidden.items():
            function = target.forward if isinstance(target, type) else target
            function = inspect.unwrap(function)
            code = getattr(function, "__code__", None)
            if code is not None:
                self._codes[code] = label
            else:
                self._builtins[id(function)] = label
        self.calls: list[str] = []

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            label = self._codes.get(frame.f_code)
        elif event == "c_call":
            label = self._builtins.get(id(arg))
        else:
            return
        if label is not None and label not in self.calls:
            self.calls.append(label)

    def __enter__(self) -> "CallWatcher":
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        previous = self._previous
        if previous is not None and not callable(previous) and hasattr(previous, "enable"):
            previous.enable()  # a C-level profiler (cProfile) is handed back by enabling it again
        else:
            sys.setprofile(previous)


class OpWatcher(TorchDispatchMode):
    """Record forbidden ATen operators executed while a block runs.

    ``forbidden_ops`` maps an operator name (``native_layer_norm``) or a prefix ending in ``*``
    (``_scaled_dot_product_*``) to the name shown to the learner.
    """

    def __init__(self, forbidden_ops: Mapping[str, str]) -> None:
        super().__init__()
        self._exact = {name: label for name, label in forbidden_ops.items() if not name.endswith("*")}
        self._prefixes = [(name[:-1], label) for name, label in forbidden_ops.items() if name.endswith("*")]
        self.calls: list[str] = []

    def _label(self, op_name: str) -> str | None:
        if op_name in self._exact:
            return self._exact[op_name]
        for prefix, label in self._prefixes:
            if op_name.startswith(prefix):
                return label
        return None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        label = self._label(func.overloadpacket.__name__)
        if label is not None and label not in self.calls:
            self.calls.append(label)
        return func(*args, **(kwargs or {}))


class DelegationWatch:
    """Both watchers as one context; ``calls`` lists what was caught, Python level first.

    The operator watcher is only installed when the exercise forbids operators, so exercises that
    do not need it pay nothing.
    """

    def __init__(self, forbidden: Mapping[Callable, str], forbidden_ops: Mapping[str, str]) -> None:
        self._python = CallWatcher(forbidden)
        self._ops = OpWatcher(forbidden_ops) if forbidden_ops else None

    @property
    def calls(self) -> list[str]:
        return self._python.calls + [c for c in (self._ops.calls if self._ops else []) if c not in self._python.calls]

    def __enter__(self) -> "DelegationWatch":
        if self._ops is not None:
            self._ops.__enter__()
        self._python.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._python.__exit__(*exc)
        if self._ops is not None:
            self._ops.__exit__(*exc)
