"""Grading throughput: sequential ``nbgrader autograde`` vs ``python -m grader autograde --jobs 2``.

N synthetic students (``GRADING_BENCH_STUDENTS``, default 4) each submit every released notebook of
ch01 with the solutions filled in. Both sides grade identical copies of one course folder; the
figures are the speed ratio (target >= 2 on 2 cores) and whether the grades are identical.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "ch01_transformer"


def _prepare(root: Path, students: int) -> Path:
    import nbformat

    sys.path.insert(0, str(REPO / "tests"))
    from nbg_cli import grader
    from nbg_helpers import with_solutions

    course = root / "course"
    assert grader("init", course).rc == 0
    run = grader("release", CHAPTER, "--course-dir", course)
    assert run.rc == 0, run.err
    release, source = course / "release" / CHAPTER, REPO / "solutions" / CHAPTER
    for index in range(students):
        folder = course / "submitted" / f"student{index:02d}" / CHAPTER
        folder.mkdir(parents=True)
        for path in sorted(source.glob("*.ipynb")):
            nb = with_solutions(nbformat.read(release / path.name, as_version=4), nbformat.read(path, as_version=4))
            nbformat.write(nb, folder / path.name)
    return course


def _grades(course: Path) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "llmcore-course") as gradebook:
        return {
            (s.student.id, nb.name): nb.score
            for s in gradebook.find_assignment(CHAPTER).submissions
            for nb in s.notebooks
        }


def run() -> list[Figure]:
    students = int(os.environ.get("GRADING_BENCH_STUDENTS", "4"))
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        base = _prepare(Path(tmp) / "base", students)
        plain, ours = Path(tmp) / "plain", Path(tmp) / "ours"
        for target in (plain, ours):  # each config derives its paths from its own folder
            shutil.copytree(base, target)
        # course folders refuse plain `nbgrader autograde` (no sandbox, no statuses); the baseline
        # is nbgrader's own autograde, so give the plain copy nbgrader's default preprocessors back
        with open(plain / "nbgrader_config.py", "a") as config:
            config.write(
                "\nfrom nbconvert.preprocessors import ClearMetadataPreprocessor\n"
                "from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern,\n"
                "                                    LimitOutput, SaveAutoGrades)\n"
                "c.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,\n"
                "                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]\n"
            )

        start = time.perf_counter()
        subprocess.run([str(scripts / "nbgrader"), "autograde", CHAPTER, "--force", "--create"],
                       cwd=plain, env=env, capture_output=True, check=False)
        sequential = time.perf_counter() - start

        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "grader", "autograde", CHAPTER, "--course-dir", str(ours), "--jobs", "2"],
                       cwd=REPO, env=env, capture_output=True, check=False)
        parallel = time.perf_counter() - start
        same = _grades(plain) == _grades(ours) and len(_grades(ours)) == students * 3
    notebooks = students * 3
    return [
        Figure("grading_speedup_jobs2", sequential / parallel, "x", ">=", 2.0),
        Figure("grading_seconds_per_notebook_jobs2", parallel / notebooks, "s", "<=", 15.0),
        Figure("grading_same_grades", 1.0 if same else 0.0, "bool", ">=", 1.0),
    ]
