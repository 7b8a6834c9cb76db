"""Regrading after the instructor fixes a test: grade, fix, re-release, regrade (twice).

The released ``01_arithmetic`` first has a wrong expected value in a visible test (``mul(2, 3) == 5``)
and is graded; the instructor then fixes it in the source notebook, raises a hidden test's points and
re-releases. The students' submissions still hold the old release of the visible test, which is not
tampering. Regrading that chapter follows the fixed test; the other chapter and its grades are
untouched; regrading again changes nothing; every status and report entry is still there.
"""
import csv
import re
import shutil

import nbformat
import pytest

import nbg_synthetic as syn
from nbg_cli import grader
from nbg_helpers import cells_by_grade_id, nbgrader_meta, with_solutions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning"),
]

CHANGED, OTHER = syn.CHAPTER, "ch92_unchanged"
A, T = "01_arithmetic", "02_text"
LIMITS = ["--cell-timeout", 10, "--notebook-timeout", 60, "--memory-mb", 2048, "--jobs", 2]
WRONG, FIXED = "assert mul(2, 3) == 5", "assert mul(2, 3) == 6"


def _write_sources(solutions):
    for chapter in (CHANGED, OTHER):
        folder = solutions / chapter
        folder.mkdir(parents=True)
        for filename, build in syn.NOTEBOOKS.items():
            nb = build()
            if chapter == CHANGED and filename == f"{A}.ipynb":
                cells_by_grade_id(nb)["mul_check"].source = WRONG  # the instructor's mistake
            nbformat.write(nb, folder / filename)


def _fix_source(solutions):
    path = solutions / CHANGED / f"{A}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = cells_by_grade_id(nb)
    cells["mul_check"].source = FIXED
    nbgrader_meta(cells["add_hidden"])["points"] = 4
    nbformat.write(nb, path)


def _submissions(course, solutions, chapter):
    release = {n: nbformat.read(course / "release" / chapter / f"{n}.ipynb", as_version=4) for n in (A, T)}
    source = {n: nbformat.read(solutions / chapter / f"{n}.ipynb", as_version=4) for n in (A, T)}
    complete = {n: with_solutions(release[n], source[n]) for n in (A, T)}
    tampered = with_solutions(release[A], source[A])
    cells_by_grade_id(tampered)["add_check"].source = "pass"
    cases = {
        "complete": complete,
        "partial": {A: with_solutions(release[A], source[A], keep_stub={"mul"}), T: complete[T]},
        "tampered": {A: tampered, T: complete[T]},
        "half": {A: complete[A]},  # 02_text is missing
    }
    if chapter == OTHER:
        cases = {s: cases[s] for s in ("complete", "partial")}
    return cases


def _snapshot(root, course):
    from nbgrader.api import Gradebook

    from grader import report
    from grader.course_folder import course_api

    coursedir = course_api(course).coursedir
    assert grader("export", "--course-dir", course, "--to", root / "grades.csv", "--format", "long").rc == 0
    with open(root / "grades.csv", newline="") as handle:  # seconds vary from run to run
        rows = {(r["chapter"], r["student_id"], r["notebook"]): {k: v for k, v in r.items() if k != "seconds"}
                for r in csv.DictReader(handle)}
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        nbgrader_scores = {
            (a.name, s.student.id, nb.name): (nb.score, nb.max_score, {g.name: g.score for g in nb.grades})
            for a in gradebook.assignments for s in a.submissions for nb in s.notebooks
        }
    autograded = {p.relative_to(course): p.read_bytes() for p in (course / "autograded").rglob("*.ipynb")}
    return {
        "statuses": report.load_statuses(coursedir),
        "cells": {c: report.load_cell_scores(coursedir, c) for c in (CHANGED, OTHER)},
        "entries": report.load_entries(coursedir),
        "rows": rows, "nbgrader": nbgrader_scores, "autograded": autograded,
        "problems": report.integrity_problems(coursedir),
    }


def _only(snapshot, chapter):
    """The parts of a snapshot about ``chapter``."""
    return {
        "statuses": {k: v for k, v in snapshot["statuses"].items() if k[0] == chapter},
        "cells": snapshot["cells"][chapter],
        "entries": [e for e in snapshot["entries"] if e["chapter"] == chapter],
        "rows": {k: v for k, v in snapshot["rows"].items() if k[0] == chapter},
        "nbgrader": {k: v for k, v in snapshot["nbgrader"].items() if k[0] == chapter},
        "autograded": {k: v for k, v in snapshot["autograded"].items() if k.parts[2] == chapter},
    }


@pytest.fixture(scope="module")
def regraded(tmp_path_factory):
    root = tmp_path_factory.mktemp("regrade")
    solutions, course = root / "solutions", root / "course"
    _write_sources(solutions)
    assert grader("init", course).rc == 0
    for chapter in (CHANGED, OTHER):
        run = grader("release", chapter, "--course-dir", course, "--solutions", solutions)
        assert run.rc == 0, run.err
        inbox = root / f"inbox-{chapter}"
        for student, notebooks in _submissions(course, solutions, chapter).items():
            (inbox / student).mkdir(parents=True)
            for name, nb in notebooks.items():
                nbformat.write(nb, inbox / student / f"{name}.ipynb")
        run = grader("autograde", chapter, "--course-dir", course, "--submissions", inbox, *LIMITS)
        assert run.rc == 0, run.err
    before = _snapshot(root, course)

    _fix_source(solutions)
    release = grader("release", CHANGED, "--course-dir", course, "--solutions", solutions)
    between = grader("report", CHANGED, "--course-dir", course, "--status-csv", root / "between.csv")
    runs, snapshots = [release], []
    for _ in range(2):
        runs.append(grader("autograde", CHANGED, "--course-dir", course, *LIMITS))
        snapshots.append(_snapshot(root, course))
    shutil.rmtree(course / "feedback", ignore_errors=True)
    after_report = grader("report", CHANGED, "--course-dir", course)
    return {"before": before, "after": snapshots[0], "again": snapshots[1], "runs": runs, "course": course,
            "between": between, "between_csv": (root / "between.csv").read_text(), "after_report": after_report}


def test_every_step_succeeds(regraded):
    release, first, second = regraded["runs"]
    assert release.rc == 0, release.err
    for run in (first, second):
        assert run.rc == 0, run.err
        assert f"autograded {CHANGED} for 4 students; 0 notebooks could not be graded fully; 1 tampered" in run.out


def test_report_marks_tests_changed_since_grading_until_the_regrade(regraded):
    between = regraded["between"]
    assert "tests changed since grading for 4 student(s)" in between.out
    assert re.search(r"complete \| +6 \* \|", between.out), between.out  # 01_arithmetic, marked until regraded
    rows = list(csv.DictReader(regraded["between_csv"].splitlines()))
    assert {r["tests_changed"] for r in rows if r["notebook"] == A and r["status"] != "missing"} == {"yes"}
    assert {r["tests_changed"] for r in rows if r["notebook"] == T} == {""}
    after = regraded["after_report"]
    assert "tests changed since grading" not in after.out.split("\n", 1)[1].replace(
        "* tests changed since grading: regrade", "")


def test_before_the_fix_the_wrong_test_costs_its_points(regraded):
    statuses, cells = regraded["before"]["statuses"], regraded["before"]["cells"][CHANGED]
    assert statuses[(CHANGED, "complete", A)][:3] == ("graded", 6.0, 7.0)
    assert cells[("complete", A, "mul_check")] == (0.0, 1.0)
    assert statuses[(OTHER, "complete", A)][:3] == ("graded", 7.0, 7.0)


def test_the_regrade_follows_the_fixed_test(regraded):
    after = regraded["after"]
    statuses, cells = after["statuses"], after["cells"][CHANGED]
    # the submissions hold the old release of mul_check: not tampering, graded with the fixed test
    assert statuses[(CHANGED, "complete", A)][:3] == ("graded", 9.0, 9.0)
    assert cells[("complete", A, "mul_check")] == (1.0, 1.0)
    assert cells[("complete", A, "add_hidden")] == (4.0, 4.0)
    assert statuses[(CHANGED, "partial", A)][:3] == ("graded", 5.0, 9.0)
    assert statuses[(CHANGED, "tampered", A)][:3] == ("tampered", 9.0, 9.0)
    assert statuses[(CHANGED, "half", T)][:3] == ("missing", 0.0, 5.0)
    assert after["rows"][(CHANGED, "complete", A)]["max_score"] == "9"
    assert after["nbgrader"][(CHANGED, "complete", A)][:2] == (9.0, 9.0)
    kinds = {(e["student_id"], e["notebook"], e["kind"], e["cell"]) for e in after["entries"]}
    assert kinds == {("tampered", A, "test_cell_edited", "add_check")}


def test_nothing_is_lost(regraded):
    before, after = regraded["before"], regraded["after"]
    assert set(after["statuses"]) == set(before["statuses"])
    assert len(before["statuses"]) == 4 * 2 + 2 * 2
    assert set(after["rows"]) == set(before["rows"])
    assert set(after["cells"][CHANGED]) == set(before["cells"][CHANGED])
    assert [(e["student_id"], e["kind"]) for e in after["entries"]] == [
        (e["student_id"], e["kind"]) for e in before["entries"]
    ]
    for name in (T,):  # notebooks the fix did not touch keep their grades
        same = {k: v for k, v in before["statuses"].items() if k[0] == CHANGED and k[2] == name}
        assert {k: after["statuses"][k] for k in same} == same


def test_the_other_chapter_is_untouched(regraded):
    assert _only(regraded["after"], OTHER) == _only(regraded["before"], OTHER)
    assert _only(regraded["again"], OTHER) == _only(regraded["before"], OTHER)


def test_regrading_twice_gives_the_same_result(regraded):
    after, again = regraded["after"], regraded["again"]
    for key in ("statuses", "cells", "entries", "rows", "nbgrader"):
        assert again[key] == after[key], key


def test_the_gradebook_passes_the_integrity_check_at_every_step(regraded):
    for step in ("before", "after", "again"):
        assert regraded[step]["problems"] == [], step


def test_a_refused_re_release_changes_nothing(regraded, tmp_path):
    # nbgrader refuses to add, remove or rename a test cell once submissions are graded; the course
    # folder (source snapshot, release, gradebook) must then be exactly as before
    course = regraded["course"]
    solutions = tmp_path / "solutions"
    shutil.copytree(course / "source" / CHANGED, solutions / CHANGED)
    path = solutions / CHANGED / f"{T}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbgrader_meta(cells_by_grade_id(nb)["shout_hidden"])["grade_id"] = "shout_renamed"
    nbformat.write(nb, path)

    def state():
        files = [p for folder in ("source", "release") for p in (course / folder / CHANGED).rglob("*") if p.is_file()]
        return {p.relative_to(course): p.read_bytes() for p in [*files, course / "gradebook.db"]}

    before = state()
    run = grader("release", CHANGED, "--course-dir", course, "--solutions", solutions)
    # one sentence with what to do, not nbgrader's traceback
    assert run.rc == 1 and "renamed a graded cell" in run.err and "same grade_id" in run.err
    assert len(run.err.strip().splitlines()) == 1 and "Traceback" not in run.err
    assert state() == before
    assert not list(course.glob(".release-backup-*"))
