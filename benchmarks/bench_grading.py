"""Grading throughput: sequential ``nbgrader autograde`` vs ``python -m grader autograde --jobs 2``.

N synthetic students (``GRADING_BENCH_STUDENTS``, default 4) each submit every released notebook of
every chapter in ``GRADING_BENCH_CHAPTERS`` (default: all chapters in solutions/) with the solutions
filled in. Both sides grade identical copies of one course folder, chapter by chapter; the figures
are the speed ratio (target >= 2 on 2 cores) and whether the grades are identical.
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


def _chapters() -> list[str]:
    from grader.generate import find_chapters

    chosen = os.environ.get("GRADING_BENCH_CHAPTERS")
    return chosen.split(",") if chosen else find_chapters(REPO / "solutions")


def _prepare(root: Path, students: int, chapters: list[str]) -> Path:
    import nbformat

    sys.path.insert(0, str(REPO / "tests"))
    from nbg_cli import grader
    from nbg_helpers import with_solutions

    course = root / "course"
    assert grader("init", course).rc == 0
    for chapter in chapters:
        run = grader("release", chapter, "--course-dir", course)
        assert run.rc == 0, run.err
        release, source = course / "release" / chapter, REPO / "solutions" / chapter
        for index in range(students):
            folder = course / "submitted" / f"student{index:02d}" / chapter
            folder.mkdir(parents=True)
            for path in sorted(source.glob("*.ipynb")):
                nb = with_solutions(nbformat.read(release / path.name, as_version=4), nbformat.read(path, as_version=4))
                nbformat.write(nb, folder / path.name)
    return course


def _grades(course: Path, chapters: list[str]) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "llmcore-course") as gradebook:
        return {
            (chapter, s.student.id, nb.name): nb.score
            for chapter in chapters
            for s in gradebook.find_assignment(chapter).submissions
            for nb in s.notebooks
        }


def run() -> list[Figure]:
    students = int(os.environ.get("GRADING_BENCH_STUDENTS", "4"))
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        chapters = _chapters()
        base = _prepare(Path(tmp) / "base", students, chapters)
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

        sequential = parallel = 0.0
        for chapter in chapters:
            start = time.perf_counter()
            subprocess.run([str(scripts / "nbgrader"), "autograde", chapter, "--force", "--create"],
                           cwd=plain, env=env, capture_output=True, check=False)
            sequential += time.perf_counter() - start

            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "grader", "autograde", chapter, "--course-dir", str(ours), "--jobs", "2"],
                           cwd=REPO, env=env, capture_output=True, check=False)
            parallel += time.perf_counter() - start
        notebooks = students * sum(len(list((REPO / "solutions" / c).glob("*.ipynb"))) for c in chapters)
        same = _grades(plain, chapters) == _grades(ours, chapters) and len(_grades(ours, chapters)) == notebooks
    return [
        Figure("grading_speedup_jobs2", sequential / parallel, "x", ">=", 2.0),
        Figure("grading_seconds_per_notebook_jobs2", parallel / notebooks, "s", "<=", 15.0),
        Figure("grading_same_grades", 1.0 if same else 0.0, "bool", ">=", 1.0),
    ]
