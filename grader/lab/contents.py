"""The contents manager of ``make lab``: course notebooks open unmodified.

When a kernel starts, JupyterLab writes the kernel's ``language_info`` (with the exact Python
version, e.g. ``"3.11.7"``) into the notebook's metadata, and marks the notebook modified when that
differs from what the file holds. The course stores only ``{"name": "python"}``, the same on every
machine, so every notebook would open "modified". This manager completes that stub with the
``language_info`` of the server's own Python - the one the default ``python3`` kernel runs on - when
it reads a notebook, so nothing changes on opening. The file on disk is untouched until the learner
saves it.
"""

from __future__ import annotations

import sys
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager


def kernel_language_info() -> dict[str, Any]:
    """What ipykernel reports as ``language_info`` when it runs on this Python.

    Written out rather than read from ``ipykernel.ipkernel.IPythonKernel.language_info``, which would
    import IPython into the server; tests/test_lab_launcher.py compares the two.
    """
    return {
        "name": "python",
        "version": sys.version.split()[0],
        "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
        "pygments_lexer": f"ipython{sys.version_info[0]}",
        "nbconvert_exporter": "python",
        "file_extension": ".py",
    }


def complete_language_info(notebook: dict[str, Any], language_info: dict[str, Any]) -> bool:
    """Replace a bare ``{"name": "python"}`` of a ``python3`` notebook by ``language_info``; True if changed."""
    metadata = notebook.get("metadata")
    if not isinstance(metadata, dict) or (metadata.get("kernelspec") or {}).get("name") != "python3":
        return False
    if metadata.get("language_info") not in (None, {"name": "python"}):
        return False  # the notebook already has full details: leave them (a save wrote them)
    metadata["language_info"] = dict(language_info)
    return True


class CourseContentsManager(AsyncLargeFileManager):
    """jupyter_server's default contents manager, completing course notebooks' ``language_info`` on read."""

    async def get(self, path: str, content: bool = True, type: str | None = None, format: str | None = None,
                  **kwargs: Any) -> dict[str, Any]:
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
            complete_language_info(model["content"], kernel_language_info())
        return model
