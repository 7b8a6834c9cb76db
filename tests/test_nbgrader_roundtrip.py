"""Round trip through the instructor command: release, submissions, autograde, feedback, CSV.

The synthetic chapter (tests/nbg_synthetic.py) covers every scenario quickly; every real
chapter in solutions/ is graded for full marks, zero and one missing exercise.
"""
import shutil
from pathlib import Path

import nbformat
import pytest

import nbg_synthetic
from grader.generate import find_chapters
from nbg_cli import grader
from nbg_helpers import cells_by_grade_id, graded_points, nbgrader_meta, read_grades, with_solutions

pytestmark = [
    pytest.mark.slow,  # every test here runs notebooks through autograde
    # nbgrader re-adds deleted test cells without a cell id; nbformat warns about it.
    pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC = nbg_synthetic.CHAPTER
ARITHMETIC, TEXT = "01_arithmetic.ipynb", "02_text.ipynb"


def read_notebooks(folder, filenames):
    return {name: nbformat.read(folder / name, as_version=4) for name in filenames}


def write_submission(inbox, student_id, notebooks, in_chapter_folder=False):
    """Write ``{filename: notebook or raw text}`` as ``inbox/<student>/[<chapter>/]<filename>``."""
    folder = inbox / student_id / (SYNTHETIC if in_chapter_folder else "")
    folder.mkdir(parents=True)
    for filename, notebook in notebooks.items():
        if isinstance(notebook, str):
            (folder / filename).write_text(notebook)
        else:
            nbformat.write(notebook, folder / filename)


def replace_source(nb, grade_id, source):
    cells_by_grade_id(nb)[grade_id].source = source


def delete_cell(nb, grade_id):
    nb.cells = [cell for cell in nb.cells if nbgrader_meta(cell).get("grade_id") != grade_id]


def exercise_points(points, exercise):
    return points[f"{exercise}_check"] + points.get(f"{exercise}_hidden", 0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A course folder that released the synthetic chapter and graded six students.

    Returns the paths, the command results, and the expected CSV rows
    ``{(student, notebook): (score, max_score, status)}`` computed from the
    points metadata of the source notebooks.
    """
    root = tmp_path_factory.mktemp("synthetic")
    solutions = root / "solutions"
    nbg_synthetic.write_chapter(solutions)
    course, inbox = root / "course", root / "inbox"
    assert grader("init", course).rc == 0
    release_run = grader("release", SYNTHETIC, "--course-dir", course, "--solutions", solutions)
    assert release_run.rc == 0, release_run.err

    filenames = list(nbg_synthetic.NOTEBOOKS)
    release = read_notebooks(course / "release" / SYNTHETIC, filenames)
    source = read_notebooks(solutions / SYNTHETIC, filenames)
    points = {name: graded_points(nb) for name, nb in source.items()}
    total = {name: sum(p.values()) for name, p in points.items()}

    def complete():
        return {name: with_solutions(release[name], source[name]) for name in filenames}

    write_submission(inbox, "complete", complete())
    write_submission(inbox, "untouched", dict(release))

    wrong_mul = complete()
    replace_source(wrong_mul[ARITHMETIC], "mul", "def mul(a, b):\n    return a + b")
    write_submission(inbox, "wrong_mul", wrong_mul)

    # Locked tests edited or deleted around a right answer: restored, so still full marks.
    tampered_right = complete()
    replace_source(tampered_right[ARITHMETIC], "add_check", "pass")
    delete_cell(tampered_right[ARITHMETIC], "mul_hidden")
    replace_source(tampered_right[TEXT], "shout_check", "pass")
    write_submission(inbox, "tampered_right", tampered_right, in_chapter_folder=True)

    # ...and around a wrong answer: the restored tests run for real and fail.
    tampered_wrong = complete()
    replace_source(tampered_wrong[ARITHMETIC], "add", "def add(a, b):\n    return a - b")
    replace_source(tampered_wrong[ARITHMETIC], "add_check", "pass")
    delete_cell(tampered_wrong[ARITHMETIC], "add_hidden")
    write_submission(inbox, "tampered_wrong", tampered_wrong)

    write_submission(inbox, "broken", {ARITHMETIC: "{ not a notebook", TEXT: complete()[TEXT]})

    def graded(student, scores, status="graded"):
        return {
            (student, Path(name).stem): (float(score), float(total[name]), status)
            for name, score in scores.items()
        }

    def arithmetic_without(exercise):
        return total[ARITHMETIC] - exercise_points(points[ARITHMETIC], exercise)

    expected = {
        **graded("complete", total),
        **graded("untouched", {ARITHMETIC: 0, TEXT: 0}),
        **graded("wrong_mul", {ARITHMETIC: arithmetic_without("mul"), TEXT: total[TEXT]}),
        # Restored tests are graded for real; the status says the tests were tampered with.
        **graded("tampered_right", total, "tampered"),
        **graded("tampered_wrong", {ARITHMETIC: arithmetic_without("add")}, "tampered"),
        **graded("tampered_wrong", {TEXT: total[TEXT]}),
        **graded("broken", {TEXT: total[TEXT]}),
        ("broken", "01_arithmetic"): (0.0, float(total[ARITHMETIC]), "malformed"),
    }
    runs = {
        "autograde": grader("autograde", SYNTHETIC, "--course-dir", course, "--submissions", inbox),
        "feedback": grader("feedback", SYNTHETIC, "--course-dir", course),
        "export": grader("export", "--course-dir", course, "--to", root / "grades.csv", "--format", "long"),
    }
    return {"course": course, "csv": root / "grades.csv", "runs": runs, "expected": expected}


def test_autograde_names_the_notebook_it_could_not_grade(synthetic):
    run = synthetic["runs"]["autograde"]
    assert run.rc == 1
    assert "imported 6 submissions" in run.out
    assert "could not grade broken/01_arithmetic: malformed: not JSON" in run.err
    assert "complete/" not in run.err and "broken/02_text" not in run.err


def test_exported_csv_holds_exactly_the_expected_scores(synthetic):
    assert synthetic["runs"]["export"].rc == 0
    assert read_grades(synthetic["csv"]) == synthetic["expected"]


def test_csv_header_is_the_documented_one(synthetic):
    from grader.export import COLUMNS

    header = synthetic["csv"].read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    assert all(column in grader("export", "--help").out for column in COLUMNS)


def test_feedback_exists_for_every_graded_notebook(synthetic):
    run = synthetic["runs"]["feedback"]
    assert run.rc == 0, run.err
    feedback = synthetic["course"] / "feedback"
    written = {(p.parts[-3], p.stem) for p in feedback.glob(f"*/{SYNTHETIC}/*.html")}
    # every submitting student gets a page per notebook, missing and malformed ones included
    assert written == set(synthetic["expected"])
    html = (feedback / "wrong_mul" / SYNTHETIC / "01_arithmetic.html").read_text()
    assert "Score: 3.0 / 7.0" in html


def test_deleted_and_edited_tests_are_restored_before_grading(synthetic):
    autograded = synthetic["course"] / "autograded" / "tampered_wrong" / SYNTHETIC / ARITHMETIC
    cells = cells_by_grade_id(nbformat.read(autograded, as_version=4))
    assert cells["add_check"].source == "assert add(1, 2) == 3"
    assert "assert add(-1, 1) == 0" in cells["add_hidden"].source
    assert any(output.get("ename") == "AssertionError" for output in cells["add_check"].outputs)


def test_a_student_can_resubmit_and_is_graded_again(synthetic, tmp_path):
    # Changes only the untouched student's submission and grades, which no other test reads afterwards.
    inbox = tmp_path / "inbox"
    release = read_notebooks(synthetic["course"] / "release" / SYNTHETIC, [TEXT])
    source = read_notebooks(synthetic["course"] / "source" / SYNTHETIC, [TEXT])
    write_submission(inbox, "untouched", {TEXT: with_solutions(release[TEXT], source[TEXT])})
    run = grader("autograde", SYNTHETIC, "--course-dir", synthetic["course"], "--submissions", inbox)
    assert run.rc == 0, run.err
    assert "imported 1 submission: untouched" in run.out
    assert "autograded ch90_synthetic for 1 student; 0 notebooks could not" in run.out  # not "1 students"
    grades = read_grades(grader_export(synthetic["course"], tmp_path / "again.csv"))
    assert grades[("untouched", "02_text")] == (5.0, 5.0, "graded")
    assert grades[("untouched", "01_arithmetic")] == (0.0, 7.0, "missing")
    assert grades[("complete", "01_arithmetic")] == (7.0, 7.0, "graded")


def grader_export(course, csv_path):
    assert grader("export", "--course-dir", course, "--to", csv_path, "--format", "long").rc == 0
    return csv_path


# --- the real chapters ----------------------------------------------------------------

SOLUTIONS = REPO_ROOT / "solutions"
CHAPTERS = find_chapters(SOLUTIONS)
# Notebooks that train a model for most of their run time: graded only in the complete and untouched
# submissions (a partial copy would double their share of the suite for no new path).
TRAINING_NOTEBOOKS = {
    "ch01_transformer": {"03_training.ipynb"},
    "ch05_llama_family": {
        "02_rope_and_long_context.ipynb", "05_qwen.ipynb", "06_glm_chatglm.ipynb", "07_alibi_baichuan_bloom.ipynb",
    },
}
CHAPTER_NOTEBOOKS = [(chapter, path.name) for chapter in CHAPTERS for path in sorted((SOLUTIONS / chapter).glob("*.ipynb"))]
PARTIAL_NOTEBOOKS = [(c, n) for c, n in CHAPTER_NOTEBOOKS if n not in TRAINING_NOTEBOOKS.get(c, set())]


def _each(pairs):
    return pytest.mark.parametrize(("chapter", "notebook"), pairs, ids=[f"{c}/{n}" for c, n in pairs])


def last_exercise(source_nb):
    """Name of the notebook's last graded exercise (``<name>_check``): no later test uses it."""
    checks = [gid for gid in cells_by_grade_id(source_nb) if gid.endswith("_check")]
    return checks[-1].removesuffix("_check")


def answer_cell_id(source_nb, exercise):
    """grade_id of the answer cell of ``exercise``: named after it, else the last one before its check."""
    answers = []
    for cell in source_nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade_id") == f"{exercise}_check":
            break
        if meta.get("solution"):
            answers.append(meta["grade_id"])
    return exercise if exercise in answers else answers[-1]


def grade_chapter(root, chapter):
    """``chapter`` released from solutions/ and graded for a complete, an untouched and a partial submission."""
    course, inbox = root / "course", root / "inbox"
    names = sorted(path.name for path in (SOLUTIONS / chapter).glob("*.ipynb"))
    assert grader("init", course).rc == 0
    run = grader("release", chapter, "--course-dir", course, "--solutions", SOLUTIONS)
    assert run.rc == 0, run.err
    release = read_notebooks(course / "release" / chapter, names)
    source = read_notebooks(SOLUTIONS / chapter, names)
    training = TRAINING_NOTEBOOKS.get(chapter, set())

    expected = {}
    for name in names:
        stem, points = Path(name).stem, graded_points(source[name])
        total = float(sum(points.values()))
        expected[("complete", stem)] = (total, total, "graded")
        expected[("untouched", stem)] = (0.0, total, "graded")
        if name not in training:
            exercise = last_exercise(source[name])
            expected[("partial", stem)] = (total - exercise_points(points, exercise), total, "graded")

    for student in ("complete", "untouched", "partial"):
        (inbox / student).mkdir(parents=True)
    for name in names:
        nbformat.write(with_solutions(release[name], source[name]), inbox / "complete" / name)
        shutil.copy(course / "release" / chapter / name, inbox / "untouched" / name)
        if name not in training:
            stubbed = answer_cell_id(source[name], last_exercise(source[name]))
            nbformat.write(with_solutions(release[name], source[name], keep_stub={stubbed}), inbox / "partial" / name)

    runs = {
        "autograde": grader("autograde", chapter, "--course-dir", course, "--submissions", inbox),
        "feedback": grader("feedback", chapter, "--course-dir", course),
        "export": grader("export", "--course-dir", course, "--to", root / "grades.csv", "--format", "long"),
    }
    for command, run in runs.items():
        assert run.rc == 0, f"{command}: {run.err}"
    return {"course": course, "grades": read_grades(root / "grades.csv"), "expected": expected}


@pytest.fixture(scope="module")
def graded_chapters(tmp_path_factory):
    """Each real chapter graded once for the module, on first use."""
    cache = {}

    def graded(chapter):
        if chapter not in cache:
            cache[chapter] = grade_chapter(tmp_path_factory.mktemp(chapter), chapter)
        return cache[chapter]

    return graded


def test_every_chapter_with_solutions_is_graded():
    assert "ch01_transformer" in CHAPTERS
    assert {chapter for chapter, _ in CHAPTER_NOTEBOOKS} == set(CHAPTERS)


@_each(CHAPTER_NOTEBOOKS)
def test_complete_solutions_get_full_marks(graded_chapters, chapter, notebook):
    graded = graded_chapters(chapter)
    key = ("complete", Path(notebook).stem)
    assert graded["grades"][key] == graded["expected"][key]
    assert (graded["course"] / "feedback" / "complete" / chapter / f"{Path(notebook).stem}.html").is_file()


@_each(CHAPTER_NOTEBOOKS)
def test_untouched_release_scores_zero(graded_chapters, chapter, notebook):
    graded = graded_chapters(chapter)
    key = ("untouched", Path(notebook).stem)
    assert graded["grades"][key] == graded["expected"][key]


@_each(PARTIAL_NOTEBOOKS)
def test_one_unimplemented_exercise_loses_exactly_its_points(graded_chapters, chapter, notebook):
    graded = graded_chapters(chapter)
    key = ("partial", Path(notebook).stem)
    assert graded["grades"][key] == graded["expected"][key]
