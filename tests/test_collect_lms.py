"""Collection never silently loses a notebook: documented patterns, LMS zip layouts, resubmissions,
renamed files, recollection (issue 13, problems 1-3)."""
import zipfile

import nbformat
import pytest

import nbg_synthetic as syn
from nbg_cli import grader

pytestmark = pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")

CHAPTER = syn.CHAPTER
A, T = "01_arithmetic", "02_text"
# The pattern docs/INSTRUCTORS.md gives for files named <login>_<anything>_<notebook>.ipynb.
DOCUMENTED = r".*/(?P<student_id>[A-Za-z0-9]+)_[^/]*_(?P<file_id>\d\d_\w+\.ipynb)$"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect")
    syn.write_chapter(root / "solutions")
    assert grader("init", root / "course").rc == 0
    assert grader("release", CHAPTER, "--course-dir", root / "course", "--solutions", root / "solutions").rc == 0
    return root / "course"


def _nb(marker):
    """A notebook whose content says which file it came from."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(marker))
    return nbformat.writes(nb)


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def _stored(course, student):
    folder = course / "submitted" / student / CHAPTER
    return {p.stem: nbformat.read(p, as_version=4).cells[0].source for p in sorted(folder.glob("*.ipynb"))}


def test_documented_pattern_stores_each_file_under_its_notebook_name(course, tmp_path):
    archive = _zip(tmp_path / "lms.zip", {
        f"alice1_12345_67890_{A}.ipynb": _nb("alice A"), f"alice1_12345_67891_{T}.ipynb": _nb("alice T"),
        f"bob1_2222_3333_{A}.ipynb": _nb("bob A"), f"bob1_2222_3334_{T}.ipynb": _nb("bob T"),
    })
    run = grader("collect", CHAPTER, "--course-dir", course, archive, "--pattern", DOCUMENTED, "--strict")
    assert run.rc == 0, run.err
    assert "collected 2 submissions" in run.out and "alice1, bob1" in run.out
    assert _stored(course, "alice1") == {A: "alice A", T: "alice T"}
    assert _stored(course, "bob1") == {A: "bob A", T: "bob T"}
    assert "warning" not in run.err


def test_canvas_download_with_a_late_resubmission(course, tmp_path):
    archive = _zip(tmp_path / "canvas.zip", {
        f"smithjane_1001_5001_{A}.ipynb": _nb("first"),
        f"smithjane_late_1001_5002_{A}-1.ipynb": _nb("resubmitted"),
        f"smithjane_1001_5001_{T}.ipynb": _nb("jane T"),
        f"doejohn_1002_5003_{A}.ipynb": _nb("john A"),
        f"doejohn_1002_5003_{T}-2.ipynb": _nb("john T"),
    })
    run = grader("collect", CHAPTER, "--course-dir", course, archive, "--lms", "canvas", "--strict")
    assert run.rc == 0, run.err
    assert _stored(course, "smithjane") == {A: "resubmitted", T: "jane T"}
    assert _stored(course, "doejohn") == {A: "john A", T: "john T"}
    assert "took smithjane_late_1001_5002_01_arithmetic-1.ipynb (the latest)" in run.err


def test_moodle_download_folders(course, tmp_path):
    archive = _zip(tmp_path / "moodle.zip", {
        f"Jane Smith_4001_assignsubmission_file_/{A}.ipynb": _nb("4001 A"),
        f"Jane Smith_4001_assignsubmission_file_/{T} (1).ipynb": _nb("4001 T"),
        f"John Doe_4002_assignsubmission_file_/{A.upper()}.IPYNB": _nb("4002 A"),
        f"John Doe_4002_assignsubmission_file_/{T}.ipynb": _nb("4002 T"),
    })
    run = grader("collect", CHAPTER, "--course-dir", course, archive, "--lms", "moodle", "--strict")
    assert run.rc == 0, run.err
    assert _stored(course, "4001") == {A: "4001 A", T: "4001 T"}
    assert _stored(course, "4002") == {A: "4002 A", T: "4002 T"}


def test_blackboard_download(course, tmp_path):
    archive = _zip(tmp_path / "blackboard.zip", {
        f"Chapter 1_jsmith_attempt_2026-11-30-21-03-11_{A}.ipynb": _nb("jsmith A"),
        f"Chapter 1_jsmith_attempt_2026-11-30-21-03-11_{T}.ipynb": _nb("jsmith T"),
        "Chapter 1_jsmith_attempt_2026-11-30-21-03-11.txt": "comments",
    })
    run = grader("collect", CHAPTER, "--course-dir", course, archive, "--lms", "blackboard")
    assert run.rc == 0, run.err
    assert _stored(course, "jsmith") == {A: "jsmith A", T: "jsmith T"}


def test_renamed_notebook_is_recognised_and_a_stranger_one_gets_a_did_you_mean(course, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "carol").mkdir(parents=True)
    (inbox / "carol" / f"{A} (1).ipynb").write_text(_nb("carol A"))
    (inbox / "carol" / "my text homework.ipynb").write_text(_nb("carol T"))
    run = grader("collect", CHAPTER, "--course-dir", course, inbox)
    assert run.rc == 0, run.err  # a warning, not an error, without --strict
    assert _stored(course, "carol") == {A: "carol A"}
    assert f"carol: {T}.ipynb missing; probably carol/my text homework.ipynb" in run.err
    strict = grader("collect", CHAPTER, "--course-dir", course, inbox, "--strict")
    assert strict.rc == 1 and "missing" in strict.err


def test_recollecting_one_file_merges_and_replace_replaces_with_a_warning(course, tmp_path):
    first, fix = tmp_path / "first", tmp_path / "fix"
    (first / "dave").mkdir(parents=True)
    (fix / "dave").mkdir(parents=True)
    (first / "dave" / f"{A}.ipynb").write_text(_nb("old A"))
    (first / "dave" / f"{T}.ipynb").write_text(_nb("old T"))
    (fix / "dave" / f"{A}.ipynb").write_text(_nb("fixed A"))
    assert grader("collect", CHAPTER, "--course-dir", course, first, "--strict").rc == 0
    merged = grader("collect", CHAPTER, "--course-dir", course, fix, "--strict")
    assert merged.rc == 0, merged.err
    assert "merged" in merged.out
    assert _stored(course, "dave") == {A: "fixed A", T: "old T"}
    replaced = grader("collect", CHAPTER, "--course-dir", course, fix, "--replace")
    assert replaced.rc == 0
    assert _stored(course, "dave") == {A: "fixed A"}
    assert f"warning: dave: {T}.ipynb missing" in replaced.err


def test_resolve_notebook_names():
    from grader.collect import resolve_notebook

    released = ["01_attention", "02_building_blocks", "03_training"]
    assert resolve_notebook("01_attention (1).ipynb", released) == ("01_attention", 1)
    assert resolve_notebook("01_attention-2.ipynb", released) == ("01_attention", 2)
    assert resolve_notebook("alice_12345_67890_01_Attention.ipynb", released) == ("01_attention", 0)
    assert resolve_notebook("03_training copy.ipynb", released) == ("03_training", 1)
    assert resolve_notebook("attention.ipynb", released) == (None, 0)
    assert resolve_notebook("notes.txt", released) == (None, 0)
