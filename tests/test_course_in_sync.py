"""The committed student release course/ must be exactly what solutions/ generates.

Fix a failure here with `make course` (python -m grader generate) and commit course/.
"""
from pathlib import Path

import nbformat
import pytest

from grader.generate import find_chapters, generate_chapters, normalise_notebook
from nbg_helpers import leaks

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO_ROOT / "solutions"
COURSE = REPO_ROOT / "course"
FIRST_CHAPTER = "ch01_transformer"
CHAPTERS = find_chapters(SOLUTIONS)
RELEASED_NOTEBOOKS = sorted(COURSE.glob("ch*/*.ipynb"))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Every chapter of solutions/ generated afresh into a temporary release folder."""
    return generate_chapters(SOLUTIONS, CHAPTERS, tmp_path_factory.mktemp("regenerated"))


def read_normalised(path):
    return normalise_notebook(nbformat.read(path, as_version=4))


def first_difference(committed, expected):
    """Where the notebook ``committed`` first differs from ``expected``, or None."""
    if committed.nbformat_minor != expected.nbformat_minor or committed.metadata != expected.metadata:
        return "notebook metadata or format differ"
    for index, (have, want) in enumerate(zip(committed.cells, expected.cells)):
        if have != want:
            grade_id = want.metadata.get("nbgrader", {}).get("grade_id", "no grade_id")
            first_line = want.source.splitlines()[0] if want.source else ""
            return f"cell {index} ({grade_id}, {first_line!r}) differs"
    if len(committed.cells) != len(expected.cells):
        return f"{len(committed.cells)} cells instead of {len(expected.cells)}"
    return None


def test_first_difference_names_the_cell():
    import copy

    import nbg_synthetic

    expected = nbg_synthetic.arithmetic_notebook()
    committed = copy.deepcopy(expected)
    assert first_difference(committed, expected) is None
    committed.cells[2].source = "assert add(1, 2) == 4"
    assert first_difference(committed, expected) == "cell 2 (add_check, 'assert add(1, 2) == 3') differs"
    committed.cells = expected.cells[:3]
    assert first_difference(committed, expected) == "3 cells instead of 7"


def test_first_chapter_has_source_notebooks():
    assert FIRST_CHAPTER in CHAPTERS, f"no notebooks in {SOLUTIONS / FIRST_CHAPTER}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_release_matches_solutions(chapter, regenerated):
    expected_dir, committed_dir = regenerated / chapter, COURSE / chapter
    assert committed_dir.is_dir(), f"{committed_dir} missing: run make course"
    expected_files = sorted(p.relative_to(expected_dir) for p in expected_dir.rglob("*") if p.is_file())
    committed_files = sorted(p.relative_to(committed_dir) for p in committed_dir.rglob("*") if p.is_file())
    assert committed_files == expected_files, f"files of {committed_dir} differ: run make course"
    for relative in expected_files:
        expected, committed = expected_dir / relative, committed_dir / relative
        if relative.suffix == ".ipynb":
            difference = first_difference(read_normalised(committed), read_normalised(expected))
            assert difference is None, f"{committed}: {difference}; run make course"
        else:
            assert committed.read_bytes() == expected.read_bytes(), f"{committed} differs; run make course"


def test_every_released_notebook_has_a_source():
    orphans = [p for p in RELEASED_NOTEBOOKS if not (SOLUTIONS / p.relative_to(COURSE)).is_file()]
    assert orphans == [], "released notebooks without a source in solutions/"


@pytest.mark.parametrize("released", RELEASED_NOTEBOOKS, ids=lambda p: str(p.relative_to(COURSE)))
def test_released_notebook_hides_solutions_and_hidden_tests(released):
    source_path = SOLUTIONS / released.relative_to(COURSE)
    if not source_path.is_file():
        pytest.skip("no source: reported by test_every_released_notebook_has_a_source")
    release = nbformat.read(released, as_version=4)
    source = nbformat.read(source_path, as_version=4)
    assert leaks(release, source) == []
