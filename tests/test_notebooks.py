"""Every solution notebook runs cleanly, and every released notebook fails only at the learner's stubs.

The solution notebooks are the nbgrader sources in ``solutions/``; the released ones are the
generated ``course/`` notebooks with stubs in place of the solutions.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
SOLUTION_NOTEBOOKS = sorted((REPO / "solutions").glob("ch*/*.ipynb"))
RELEASED_NOTEBOOKS = sorted((REPO / "course").glob("ch*/*.ipynb"))
# The only errors a released notebook may raise before the learner writes code: the stub itself, or
# a check reporting that the stub is not implemented yet.
STUB_ERRORS = {"NotImplementedError", "CheckFailure"}


def _execute(path: Path, *, allow_errors: bool) -> tuple[nbformat.NotebookNode, float]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - start


def _errors(notebook: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    return [
        (index, output.get("ename", ""), output.get("evalue", ""))
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def _label(path: Path) -> str:
    return str(path.relative_to(REPO))


def _has_code(source: str) -> bool:
    """Whether a cell has a line that is not blank and not a comment (a released hidden-test cell has none)."""
    return any(line.strip() and not line.strip().startswith("#") for line in source.splitlines())


def _graded_cells(notebook: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    return [
        (index, cell) for index, cell in enumerate(notebook.cells) if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
    ]


def test_chapter_one_has_solution_notebooks() -> None:
    assert len(list((REPO / "solutions" / "ch01_transformer").glob("*.ipynb"))) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=_label)
def test_solution_notebook_executes_without_error(path: Path) -> None:
    notebook, seconds = _execute(path, allow_errors=False)
    print(f"{_label(path)} executed in {seconds:.1f} s")
    checks_run = sum(
        1 for cell in notebook.cells if cell.get("metadata", {}).get("nbgrader", {}).get("grade") and cell.source.strip()
    )
    assert checks_run > 0, f"{_label(path)} has no graded test cell"


@pytest.mark.parametrize("path", RELEASED_NOTEBOOKS, ids=_label)
def test_released_notebook_fails_only_at_the_stubs(path: Path) -> None:
    notebook, _ = _execute(path, allow_errors=True)
    errors = _errors(notebook)
    unexpected = [error for error in errors if error[1] not in STUB_ERRORS]
    assert not unexpected, f"{_label(path)}: errors other than the stubs' (cell, name, message): {unexpected}"
    failing_cells = {index for index, _, _ in errors}
    visible_checks = [index for index, cell in _graded_cells(notebook) if _has_code(cell.source)]
    passing_checks = [index for index in visible_checks if index not in failing_cells]
    assert not passing_checks, f"{_label(path)}: graded cells {passing_checks} pass before any code is written"
    for index, name, message in errors:
        if name == "CheckFailure":
            assert "not implemented yet" in message, f"{_label(path)} cell {index}: {message}"
        if name == "NotImplementedError":
            # A demo cell stopped by a stub says which exercise it waits for: the set-up cell's handler
            # names it, or llmcore's process launcher does for a stub reached in a child process.
            waiting = r"this cell needs your `\w+`: write it in its exercise above, .*|`\w+` is not implemented yet .*"
            assert re.fullmatch(waiting, message), (
                f"{_label(path)} cell {index}: a bare or unexplained NotImplementedError: {message!r}"
            )


@pytest.mark.parametrize("path", RELEASED_NOTEBOOKS, ids=_label)
def test_released_hidden_test_cells_say_what_they_are(path: Path) -> None:
    """A released hidden-test cell is empty code: a comment outside the hidden block says why it is there."""
    notebook = nbformat.read(path, as_version=4)
    hidden = [(index, cell) for index, cell in _graded_cells(notebook) if not _has_code(cell.source)]
    assert hidden, f"{_label(path)} has no hidden-test cell"
    for index, cell in hidden:
        assert "when your notebook is graded" in cell.source, f"{_label(path)} cell {index} is an unexplained empty cell"


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=_label)
def test_setup_cell_prints_nothing(path: Path) -> None:
    """The set-up cell does not end with an expression that prints `<torch._C.Generator …>`."""
    notebook = nbformat.read(path, as_version=4)
    setup = next(cell for cell in notebook.cells if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup")
    last_line = [line for line in setup.source.splitlines() if line.strip()][-1]
    assert not re.match(r"^torch\.manual_seed\(", last_line), f"{_label(path)}: the set-up cell ends by printing a Generator"


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_exercise_shows_its_difficulty_and_time(path: Path) -> None:
    """The chapter contract: each exercise's text shows a difficulty (★ to ★★★) and an estimate in minutes."""
    cells = nbformat.read(path, as_version=4).cells
    badge = re.compile(r"\*Difficulty (★{1,3})☆{0,2} · about \d+ minutes\*")
    for index, cell in enumerate(cells):
        if not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        text = next(c.source for c in reversed(cells[:index]) if c.cell_type == "markdown" and "\n#" in "\n" + c.source)
        assert badge.search(text), f"{cell.metadata['nbgrader']['grade_id']}: no difficulty and time before the exercise"
