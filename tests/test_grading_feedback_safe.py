"""Safe by default, statuses students understand, the course secret (issue 13, problems 4 and 5).

One course folder of the synthetic chapter is graded once (``--jobs 2``, short limits); the
feedback is written by ``python -m grader feedback`` and by plain ``nbgrader generate_feedback``
run in the course folder (what the formgrader's "Generate Feedback" button runs).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import nbg_synthetic as syn
from nbg_cli import grader
from nbg_helpers import cells_by_grade_id, with_solutions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning"),
]

CHAPTER = syn.CHAPTER
A, T = "01_arithmetic", "02_text"
LIMITS = ["--cell-timeout", 3, "--notebook-timeout", 60, "--memory-mb", 2048]
HIDDEN = ["add(-1, 1)", "mul(-2, 4)", 'shout("")', "BEGIN HIDDEN TESTS"]
PRINT_SECRET = (
    "import os\nprint('secret seen:', bool(os.environ.get('GRADER_COURSE_SECRET')))\n"
    "print(os.environ.get('GRADER_COURSE_SECRET'))\n"
    "import hashlib\nprint('secret digest', hashlib.sha256(os.environ.get('GRADER_COURSE_SECRET', '').encode()).hexdigest())\n"
)


def _submissions(release, source):
    complete = {n: with_solutions(release[n], source[n]) for n in (A, T)}
    secret = with_solutions(release[A], source[A])
    cells_by_grade_id(secret)["add"].source = PRINT_SECRET + "def add(a, b):\n    return a + b"
    looping = with_solutions(release[A], source[A])
    cells_by_grade_id(looping)["mul"].source = "while True:\n    pass"
    failing = with_solutions(release[T], source[T])
    cells_by_grade_id(failing)["shout"].source = "def shout(text):\n    return text"
    return {
        "complete": complete,
        "secret": {A: secret, T: complete[T]},
        "looping": {A: looping, T: failing},
        "half": {A: complete[A]},
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe")
    course, release, source = syn.release_chapter(root)
    inbox = root / "inbox"
    syn.write_submissions(inbox, _submissions(release, source))
    runs = {"autograde": grader("autograde", CHAPTER, "--course-dir", course, "--submissions", inbox,
                                "--jobs", 2, *LIMITS)}
    runs["feedback"] = grader("feedback", CHAPTER, "--course-dir", course)
    return {"root": root, "course": course, "runs": runs}


def _pages(course, folder="feedback"):
    base = course / folder
    return {str(p.relative_to(base)): p.read_text() for p in base.glob(f"*/{CHAPTER}/*.html")}


def test_init_writes_a_private_secret_that_the_release_does_not_contain(course):
    secret_file = course["course"] / "course_secret.txt"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32 and oct(secret_file.stat().st_mode & 0o777) == "0o600"
    for path in (course["course"] / "release").rglob("*"):
        assert "course_secret" not in path.name
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


def test_the_grading_kernel_sees_the_course_secret(course):
    import hashlib

    graded = nbformat.read(course["course"] / "autograded" / "secret" / CHAPTER / f"{A}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for o in cells_by_grade_id(graded)["add"].outputs)
    assert "secret seen: True" in text
    secret = (course["course"] / "course_secret.txt").read_text().strip()
    assert f"secret digest {hashlib.sha256(secret.encode()).hexdigest()}" in text  # this course's secret


def test_the_sequential_fallback_kernel_sees_the_course_secret(course, monkeypatch, tmp_path):
    from grader import forkserver_client

    monkeypatch.setattr(forkserver_client, "server_for", lambda *args, **kwargs: None)
    run = grader("autograde", CHAPTER, "--course-dir", course["course"], "--student", "secret", "--jobs", 1, *LIMITS)
    assert run.rc == 0, run.err
    graded = nbformat.read(course["course"] / "autograded" / "secret" / CHAPTER / f"{A}.ipynb", as_version=4)
    assert "secret seen: True" in "".join(o.get("text", "") for o in cells_by_grade_id(graded)["add"].outputs)


def test_feedback_redacts_a_printed_secret(course):
    secret = (course["course"] / "course_secret.txt").read_text().strip()
    page = _pages(course["course"])[f"secret/{CHAPTER}/{A}.html"]
    assert secret not in page and "[redacted]" in page


def test_every_submitting_student_gets_a_page_per_notebook_with_a_status_banner(course):
    assert course["runs"]["feedback"].rc == 0, course["runs"]["feedback"].err
    pages = _pages(course["course"])
    for student in ("complete", "secret", "looping", "half"):
        for name in (A, T):
            assert f"{student}/{CHAPTER}/{name}.html" in pages
    assert "llmcore-status" in pages[f"complete/{CHAPTER}/{A}.html"]
    missing = pages[f"half/{CHAPTER}/{T}.html"]
    assert "not submitted" in missing and f"{T}.ipynb" in missing and "missing" in missing


def test_a_timed_out_notebook_says_which_limit_stopped_which_cell_without_paths_or_interrupts(course):
    page = _pages(course["course"])[f"looping/{CHAPTER}/{A}.html"]
    assert "stopped after the 3 s limit for one cell, in cell mul" in page
    assert page.count("Stopped: this cell ran longer than the 3 s limit for one cell") == 1
    assert "KeyboardInterrupt" not in page
    for path in (str(course["course"]), sys.prefix, str(Path(__file__).resolve().parent.parent), "site-packages"):
        assert path not in page, path


def test_feedback_shows_the_check_message_not_hidden_tests_and_needs_no_cdn(course):
    pages = _pages(course["course"])
    for name, html in pages.items():
        for hidden in HIDDEN:
            assert hidden not in html, (name, hidden)
        assert "mathjax" not in html.lower(), name
        assert "cdnjs" not in html and "cdn.jsdelivr" not in html, name
        assert ">Test cell<" not in html, name
    assert 'href="#add_check">add_check</a>' in pages[f"complete/{CHAPTER}/{A}.html"]


def _nbgrader(course, *args):
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(scripts / "nbgrader"), *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=300)


def test_plain_nbgrader_feedback_in_the_course_folder_is_as_safe(course):
    """What the formgrader's Generate Feedback button runs: nbgrader with the course folder's config."""
    result = _nbgrader(course["course"], "generate_feedback", CHAPTER, "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = _pages(course["course"])
    assert f"looping/{CHAPTER}/{T}.html" in pages
    for name, html in pages.items():
        for hidden in HIDDEN:
            assert hidden not in html, (name, hidden)
        assert "cdnjs" not in html
    assert "stopped after the 3 s limit for one cell" in pages[f"looping/{CHAPTER}/{A}.html"]
    assert "KeyboardInterrupt" not in pages[f"looping/{CHAPTER}/{A}.html"]
    assert "not submitted" in pages[f"half/{CHAPTER}/{T}.html"]  # a page for the missing notebook too


def test_plain_nbgrader_autograde_is_refused_with_the_command_to_use(course):
    result = _nbgrader(course["course"], "autograde", CHAPTER, "--student", "complete", "--force")
    assert result.returncode != 0
    assert "python -m grader autograde" in result.stdout + result.stderr


def test_students_have_a_name_in_the_gradebook(course):
    from nbgrader.api import Gradebook

    from grader.course_folder import course_api

    coursedir = course_api(course["course"]).coursedir
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        assert gradebook.find_student("half").last_name == "half"


def test_latex_becomes_mathml():
    from grader.feedback import latex_to_mathml

    out = latex_to_mathml(r"Attention is $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$, and `$x$` stays; $$a^2$$")
    assert out.count("<math") == 2 and "`$x$`" in out and "msqrt" in out
    assert latex_to_mathml("costs $5 and $6") == "costs $5 and $6" or "<math" in latex_to_mathml("costs $5 and $6")


# --- LMS-ready grades and the report (issue 13, problems 6 and 7) --------------------------------

def _csv(path):
    import csv

    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_export_is_one_row_per_student_with_whole_numbers_and_a_total(course, tmp_path):
    run = grader("export", "--course-dir", course["course"], "--to", tmp_path / "grades.csv")
    assert run.rc == 0, run.err
    rows = _csv(tmp_path / "grades.csv")
    assert rows[0] == ["student_id", "lms_id", f"{CHAPTER}/{A}", f"{CHAPTER}/{T}", "total"]
    assert rows[1] == ["points_possible", "", "7", "5", "12"]
    assert rows[2:] == [
        ["complete", "complete", "7", "5", "12"],
        ["half", "half", "7", "0", "7"],
        ["looping", "looping", "3", "0", "3"],
        ["secret", "secret", "7", "5", "12"],
    ]


def test_export_maps_course_ids_to_lms_ids_for_canvas_and_moodle(course, tmp_path):
    ids = tmp_path / "ids.csv"
    ids.write_text("student_id,lms_id,name,section\ncomplete,1001,Ada Complete,A\nhalf,1002,Hal Half,B\n"
                   "looping,1003,Lou Loop,A\n")
    run = grader("export", "--course-dir", course["course"], "--to", tmp_path / "canvas.csv",
                 "--format", "canvas", "--lms-ids", ids)
    assert run.rc == 0, run.err
    assert "no lms_id" in run.err and "secret" in run.err
    rows = _csv(tmp_path / "canvas.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", CHAPTER]
    assert rows[1][0].strip() == "Points Possible" and rows[1][-1] == "12"
    assert ["Ada Complete", "1001", "", "complete", "A", "12"] in rows
    assert ["secret", "", "", "secret", "", "12"] in rows
    run = grader("export", "--course-dir", course["course"], "--to", tmp_path / "moodle.csv",
                 "--format", "moodle", "--lms-ids", ids)
    assert run.rc == 0, run.err
    assert _csv(tmp_path / "moodle.csv")[:3] == [["username", CHAPTER], ["1001", "12"], ["1002", "7"]]


def test_scores_are_integers_or_the_declared_precision():
    from grader.export import number

    assert [number(43.0), number(2.5), number(1 / 3), number(1 / 3, 1), number(2.999, 2)] == ["43", "2.5", "0.33", "0.3", "3"]


def test_report_shows_reasons_seconds_and_whole_names(course, tmp_path):
    run = grader("report", CHAPTER, "--course-dir", course["course"], "--csv", tmp_path / "summary.csv",
                 "--status-csv", tmp_path / "statuses.csv")
    assert run.rc == 0, run.err
    assert re.search(r"looping +01_arithmetic +3/7 +timed_out +\d+\.\d +stopped after the 3 s limit for one cell, "
                     r"in cell mul", run.out), run.out
    assert re.search(r"half +02_text +0/5 +missing +no such file submitted", run.out), run.out
    summary = _csv(tmp_path / "summary.csv")
    assert summary[0] == ["student_id", "lms_id", f"{CHAPTER}/{A}", f"{CHAPTER}/{T}", "total"]
    statuses = {(r[0], r[2]): r for r in _csv(tmp_path / "statuses.csv")[1:]}
    assert statuses[("looping", A)][5] == "timed_out" and float(statuses[("looping", A)][7]) >= 3


def test_report_table_keeps_long_notebook_names_whole():
    from grader.summary import format_summary

    line = {"student_id": "ada", "02_building_blocks": "4", "02_building_blocks_status": "timed_out",
            "02_building_blocks_changed": "yes", "total": 4.0, "max": 10.0}
    text = format_summary("ch01_transformer", [line], [], [], [])
    assert "02_building_blocks" in text.splitlines()[1]
    assert "4 TO *" in text and "4/10" in text


def test_autograde_output_is_plural_aware_and_quiet(course):
    out, err = course["runs"]["autograde"].out, course["runs"]["autograde"].err
    assert "for 4 students; 1 notebook could not be graded fully" in out
    assert "KeyboardInterrupt" not in out + err


def test_a_refusal_is_one_sentence():
    from grader.errors import GraderError

    log = ("[GenerateAssignmentApp | ERROR] There was an error processing assignment\nTraceback (most recent call last):\n"
           + "  File x\n" * 40 + "RuntimeError: Cannot add or remove cells for notebook '01_attention' because there "
           "are submissions associated with it\n")
    message = str(GraderError.from_nbgrader("release ch01_transformer", {"log": log}))
    assert "\n" not in message and "Traceback" not in message and "01_attention" in message
    assert "same grade_id" in message
