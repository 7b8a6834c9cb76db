"""`python -m grader generate` on a synthetic chapter: clean, normalised and reproducible releases."""
import nbformat
import pytest

import nbg_synthetic
from grader.generate import find_chapters, generate_course
from grader.nbgrader_setup import CODE_STUB
from nbg_helpers import RELEASE_FORBIDDEN, leaks, nbgrader_meta

CHAPTER = nbg_synthetic.CHAPTER


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A synthetic solutions/ generated twice into a course/ that also holds non-chapter files."""
    root = tmp_path_factory.mktemp("generate")
    solutions = root / "solutions"
    nbg_synthetic.write_chapter(solutions)
    course = root / "course"
    stale = course / "ch89_removed"
    stale.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), stale / "old.ipynb")
    (course / "README.md").write_text("kept\n")
    (course / "syllabus.json").write_text("{}\n")

    first = generate_course(solutions, course)
    first_bytes = {path.name: path.read_bytes() for path in (course / CHAPTER).iterdir()}
    second = generate_course(solutions, course)
    return root, first, second, first_bytes


def test_generates_every_chapter_and_removes_stale_ones(generated):
    root, first, second, _ = generated
    assert first == ([CHAPTER], ["ch89_removed"])
    assert second == ([CHAPTER], [])
    assert find_chapters(root / "course") == [CHAPTER]


def test_files_outside_chapters_are_kept(generated):
    root, *_ = generated
    assert (root / "course" / "README.md").read_text() == "kept\n"
    assert (root / "course" / "syllabus.json").read_text() == "{}\n"


def test_regenerating_is_byte_identical(generated):
    root, _, _, first_bytes = generated
    second_bytes = {path.name: path.read_bytes() for path in (root / "course" / CHAPTER).iterdir()}
    assert sorted(second_bytes) == sorted(nbg_synthetic.NOTEBOOKS)
    assert second_bytes == first_bytes


def test_release_has_stubs_and_no_secrets(generated):
    root, *_ = generated
    for filename in nbg_synthetic.NOTEBOOKS:
        release = nbformat.read(root / "course" / CHAPTER / filename, as_version=4)
        source = nbformat.read(root / "solutions" / CHAPTER / filename, as_version=4)
        assert leaks(release, source) == []
        answers = [cell for cell in release.cells if nbgrader_meta(cell).get("solution")]
        stub = [line.strip() for line in CODE_STUB.splitlines()]
        assert answers
        for cell in answers:
            lines = [line.strip() for line in cell.source.splitlines()]
            assert lines[-len(stub):] == stub, cell.source


def test_leak_detector_flags_an_unprocessed_source(generated):
    root, *_ = generated
    source = nbformat.read(root / "solutions" / CHAPTER / "01_arithmetic.ipynb", as_version=4)
    found = "\n".join(leaks(source, source))
    for marker in RELEASE_FORBIDDEN:
        assert marker in found
    assert "'return a + b'" in found and "'assert mul(-2, 4) == -8'" in found


def test_release_has_no_volatile_metadata(generated):
    root, *_ = generated
    release = nbformat.read(root / "course" / CHAPTER / "01_arithmetic.ipynb", as_version=4)
    assert set(release.metadata) == {"kernelspec", "language_info"}
    assert release.metadata.language_info == {"name": "python"}
    code_cells = [cell for cell in release.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is None and cell.outputs == [] for cell in code_cells)


def test_unknown_chapter_is_named(tmp_path):
    from grader.errors import GraderError

    nbg_synthetic.write_chapter(tmp_path / "solutions")
    with pytest.raises(GraderError, match=r"no chapter 'ch99_missing'.*available: ch90_synthetic"):
        generate_course(tmp_path / "solutions", tmp_path / "course", ["ch99_missing"])
    assert not (tmp_path / "course").exists()
