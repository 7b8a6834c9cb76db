"""A Python-code corpus read at run time from this interpreter's own standard library.

Phi-1 ("Textbooks Are All You Need", Gunasekar et al., 2023) trained on code chosen for its
teaching value (教科书级数据). The standard library's pure-Python modules are such a textbook: small,
documented, idiomatic, and already on every machine, so nothing is downloaded or committed.

The modules are a fixed, sorted list and are joined in that order, so the text is deterministic for
a given Python version (it changes when the standard library does). The source is © the Python
Software Foundation and distributed under the PSF License Agreement (Python Software Foundation
License, PSF-2.0), a permissive licence; it is read, never copied into this repository.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

__all__ = ["STDLIB_MODULES", "python_stdlib_text"]

STDLIB_MODULES: tuple[str, ...] = (
    "abc", "bisect", "colorsys", "contextlib", "copy", "dataclasses", "fnmatch", "fractions", "functools",
    "graphlib", "heapq", "keyword", "numbers", "operator", "queue", "random", "reprlib", "sched", "secrets",
    "shlex", "statistics", "string", "textwrap",
)


def python_stdlib_text() -> str:
    """The source of :data:`STDLIB_MODULES`, each preceded by a ``# file: <name>.py`` line.

    Files are separated by a blank line. Raises ``FileNotFoundError`` naming the folder when the
    interpreter ships without its ``.py`` sources (some minimal container images strip them).
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for module in STDLIB_MODULES:
        path = stdlib / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(f"the Python corpus needs the standard library's source, but {path} is missing")
        parts.append(f"# file: {module}.py\n" + path.read_text(encoding="utf-8"))
    return "\n\n".join(parts)
