"""A tiny synthetic nbgrader chapter used to test the grading pipeline quickly.

It follows the course conventions: answer cells with ``### BEGIN SOLUTION``
regions, one visible ``<name>_check`` and one hidden ``<name>_hidden`` test cell
per exercise. Point values are distinct so that every partial score identifies
which tests passed.
"""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CHAPTER = "ch90_synthetic"


def _cell(cell, grade_id, *, solution=False, points=None, locked=None):
    graded = points is not None
    cell.metadata["nbgrader"] = {
        "grade": graded,
        "grade_id": grade_id,
        "locked": graded if locked is None else locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if graded:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def _answer(grade_id, signature, body):
    source = f'{signature}\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION'
    return _cell(new_code_cell(source), grade_id, solution=True)


def _check(grade_id, points, assertion):
    return _cell(new_code_cell(assertion), grade_id, points=points)


def _hidden(grade_id, points, assertion):
    source = f"### BEGIN HIDDEN TESTS\n{assertion}\n### END HIDDEN TESTS"
    return _cell(new_code_cell(source), grade_id, points=points)


def _notebook(cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


def arithmetic_notebook():
    """Two exercises: ``add`` (1 + 2 points) and ``mul`` (1 + 3 points)."""
    return _notebook([
        _cell(new_markdown_cell("# Arithmetic"), "intro", locked=True),
        _answer("add", "def add(a, b):", "return a + b"),
        _check("add_check", 1, "assert add(1, 2) == 3"),
        _hidden("add_hidden", 2, "assert add(-1, 1) == 0"),
        _answer("mul", "def mul(a, b):", "return a * b"),
        _check("mul_check", 1, "assert mul(2, 3) == 6"),
        _hidden("mul_hidden", 3, "assert mul(-2, 4) == -8"),
    ])


def text_notebook():
    """One exercise: ``shout`` (2 + 3 points)."""
    return _notebook([
        _answer("shout", "def shout(text):", 'return text.upper() + "!"'),
        _check("shout_check", 2, 'assert shout("hi") == "HI!"'),
        _hidden("shout_hidden", 3, 'assert shout("") == "!"'),
    ])


NOTEBOOKS = {"01_arithmetic.ipynb": arithmetic_notebook, "02_text.ipynb": text_notebook}
MAX_SCORES = {"01_arithmetic": 7, "02_text": 5}


def write_chapter(solutions_dir):
    """Write the synthetic chapter's source notebooks under ``solutions_dir``; return its folder."""
    chapter_dir = solutions_dir / CHAPTER
    chapter_dir.mkdir(parents=True)
    for filename, build in NOTEBOOKS.items():
        nbformat.write(build(), chapter_dir / filename)
    return chapter_dir


def release_chapter(root):
    """``python -m grader init`` a course folder under ``root`` and release the synthetic chapter into it.

    Returns ``(course, release, source)``: the course folder and the released and solution notebooks
    by name (``01_arithmetic``, ``02_text``).
    """
    from nbg_cli import grader

    write_chapter(root / "solutions")
    course = root / "course"
    assert grader("init", course).rc == 0
    assert grader("release", CHAPTER, "--course-dir", course, "--solutions", root / "solutions").rc == 0
    names = [filename.removesuffix(".ipynb") for filename in NOTEBOOKS]
    release = {n: nbformat.read(course / "release" / CHAPTER / f"{n}.ipynb", as_version=4) for n in names}
    source = {n: nbformat.read(root / "solutions" / CHAPTER / f"{n}.ipynb", as_version=4) for n in names}
    return course, release, source


def write_submissions(inbox, submissions):
    """Write ``{student: {notebook name: notebook}}`` as an inbox of student folders."""
    for student, notebooks in submissions.items():
        (inbox / student).mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, inbox / student / f"{name}.ipynb")
