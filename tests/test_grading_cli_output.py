"""What autograde prints, a notebook stored under another name, and the grading order (issue 13, problems 1, 2, 7)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import nbg_synthetic as syn
from nbg_cli import grader
from nbg_helpers import with_solutions

pytestmark = pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTER = syn.CHAPTER
A, T = "01_arithmetic", "02_text"


def _course(root):
    course, release, source = syn.release_chapter(root)
    return course, {n: with_solutions(release[n], source[n]) for n in (A, T)}


@pytest.mark.slow
def test_autograde_is_quiet_plural_aware_and_names_a_misnamed_notebook(tmp_path):
    course, complete = _course(tmp_path)
    inbox = tmp_path / "inbox"
    (inbox / "renamed").mkdir(parents=True)
    nbformat.write(complete[A], inbox / "renamed" / f"{A} (1).ipynb")  # stored as 01_arithmetic.ipynb
    nbformat.write(complete[T], inbox / "renamed" / f"{T}.ipynb")
    assert grader("autograde", CHAPTER, "--course-dir", course, "--submissions", inbox, "--jobs", 1).rc == 0
    assert (course / "submitted" / "renamed" / CHAPTER / f"{A}.ipynb").is_file()
    # a file put into the course folder by hand under another name
    folder = course / "submitted" / "manual" / CHAPTER
    folder.mkdir(parents=True)
    nbformat.write(complete[A], folder / f"my {A}.ipynb")
    nbformat.write(complete[T], folder / f"{T}.ipynb")
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "grader", "autograde", CHAPTER, "--course-dir", str(course),
                          "--jobs", "1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # a notebook lost under another name is an error
    assert "autograded ch90_synthetic for 2 students; 0 notebooks could not be graded fully" in run.stdout
    assert (f"missing manual/{A}: no {A}.ipynb submitted; the submission has my {A}.ipynb, probably this notebook"
            in run.stderr)
    assert "KeyboardInterrupt" not in run.stdout + run.stderr


def test_the_longest_students_are_graded_first(tmp_path):
    from grader import report
    from grader.course_folder import course_api
    from grader.grading import grading_order

    course, complete = _course(tmp_path)
    for student, names in {"quick": (A, T), "slow": (A, T), "new": (A,)}.items():
        folder = course / "submitted" / student / CHAPTER
        folder.mkdir(parents=True)
        for name in names:
            nbformat.write(complete[name], folder / f"{name}.ipynb")
    coursedir = course_api(course).coursedir

    def result(student, notebook, seconds):
        return {"chapter": CHAPTER, "student_id": student, "notebook": notebook, "status": "graded", "score": 0.0,
                "max_score": 1.0, "detail": "", "entries": [], "cells": {}, "seconds": seconds}

    report.store_results(coursedir, [result("quick", A, 2.0), result("quick", T, 1.0)])
    report.store_results(coursedir, [result("slow", A, 10.0), result("slow", T, 40.0)])
    # new: never graded; expected the class's average for 01_arithmetic, 6 s
    assert grading_order(coursedir, CHAPTER, ["new", "quick", "slow"]) == ["slow", "new", "quick"]
    shutil.rmtree(course / "submitted" / "slow")  # nothing submitted any more: nothing to wait for
    assert grading_order(coursedir, CHAPTER, ["new", "quick", "slow"])[-1] == "slow"
