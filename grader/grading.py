"""Importing, autograding and giving feedback on student submissions in a course folder.

Autograding works student by student, in parallel worker processes (``jobs``) over disjoint
students, so the sqlite gradebook only ever sees one writer per student. For each student:

1. every released notebook is read and checked (:mod:`grader.integrity`): missing and malformed
   files get their status at once; the others are compared with the release, repaired (deleted or
   de-tagged tests put back) and staged in ``COURSE_DIR/.staging``; the submitted files are never
   modified;
2. nbgrader autogrades the staged notebooks with :class:`grader.sandbox.SandboxExecute` (limits,
   no network, integrity probes; a dying kernel costs only the tests that did not run);
3. scores are read back from the gradebook and stored with a status and the report entries
   (:mod:`grader.report`).
"""
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from grader.course_folder import course_api, load_course_config, released_versions
from grader.nbgrader_setup import read_course_secret
from grader.errors import GraderError

# Student ids become folder names and nbgrader globs over them.
STUDENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_@-][\w.@-]*")
STAGING = ".staging"
# Imports in a released notebook's locked cells that the grading kernel preloads.
PRELOAD_PATTERN = re.compile(r"^\s*(?:from|import)\s+(grader\.checks\.\w+|llmcore|torch)\b", re.M)
FAILED_STATUSES = ("malformed", "timed_out", "kernel_died", "not_graded")


@dataclass(frozen=True)
class Limits:
    """What one notebook may use while it is graded (see ``python -m grader autograde --help``)."""

    cell_timeout: int = 120
    notebook_timeout: int = 900
    memory_mb: int = 4096
    max_output_kb: int = 10240
    isolate_network: bool = True
    threads: int = 0


def _submitted_dir(api, student_id, chapter):
    return Path(api.coursedir.format_path(api.coursedir.submitted_directory, student_id, chapter))


def _find_submitted_notebooks(student_folder, chapter):
    """Notebooks of ``chapter`` in a student folder: in a ``chapter/`` subfolder, else at its top."""
    chapter_folder = student_folder / chapter
    folder = chapter_folder if chapter_folder.is_dir() else student_folder
    return sorted(folder.glob("*.ipynb"))


def check_student_id(student_id, where):
    if not STUDENT_ID_PATTERN.fullmatch(student_id):
        raise GraderError(
            f"{where}: {student_id!r} is not a usable student id (letters, digits, '_', '-', '.', '@')"
        )


def store_submissions(course_dir, chapter, submissions, replace=True):
    """Copy submissions into the course folder; return the student ids.

    ``submissions`` maps a student id to a list of notebook paths (stored under their own names) or
    to ``{notebook name: path}`` (stored as ``<notebook name>.ipynb``). With ``replace`` a student's
    earlier submission of ``chapter`` is replaced as a whole; without it, only the notebooks given.
    """
    from nbgrader.api import Gradebook, MissingEntry

    api = course_api(course_dir)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        for student_id, notebooks in submissions.items():
            target = _submitted_dir(api, student_id, chapter)
            if replace and target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True, exist_ok=True)
            if not isinstance(notebooks, dict):
                notebooks = {Path(path).stem: path for path in notebooks}
            for name, notebook in notebooks.items():
                shutil.copy2(notebook, target / f"{name}.ipynb")
            try:
                student = gradebook.find_student(student_id)
            except MissingEntry:
                student = None
            if student is None or not (student.first_name or student.last_name):
                # the formgrader lists "last, first": show the id rather than "None, None"
                gradebook.update_or_create_student(student_id, last_name=student_id, first_name="")
    return list(submissions)


def import_submissions(course_dir, chapter, submissions_dir):
    """Copy ``submissions_dir/<student>/[<chapter>/]*.ipynb`` into the course folder.

    Each student's previous submission of ``chapter`` is replaced and the student
    is registered in the gradebook. Returns the imported student ids.
    """
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise GraderError(f"submissions folder {submissions_dir} does not exist")
    imported = {}
    for student_folder in sorted(p for p in submissions_dir.iterdir() if p.is_dir()):
        if student_folder.name.startswith((".", "__")):
            continue  # .ipynb_checkpoints, __MACOSX and the like
        check_student_id(student_folder.name, student_folder)
        notebooks = _find_submitted_notebooks(student_folder, chapter)
        if notebooks:
            imported[student_folder.name] = notebooks
    if not imported:
        raise GraderError(
            f"no notebooks in {submissions_dir}: expected <student_id>/<notebook>.ipynb "
            f"or <student_id>/{chapter}/<notebook>.ipynb"
        )
    from grader.collect import resolve_notebook

    released = _check_released(course_api(course_dir), chapter)
    for student, notebooks in imported.items():  # "01_attention (1).ipynb" is stored as 01_attention.ipynb
        named = {path.stem: path for path in notebooks if path.stem in released}
        for path in notebooks:
            if path.stem not in released:
                notebook, _ = resolve_notebook(path.name, released)
                named.setdefault(notebook or path.stem, path)
        imported[student] = named
    return store_submissions(course_dir, chapter, imported)


def _check_released(api, chapter):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        try:
            assignment = gradebook.find_assignment(chapter)
        except MissingEntry:
            raise GraderError(
                f"chapter {chapter!r} was never released in this course folder: "
                f"run python -m grader release {chapter} first"
            ) from None
        return sorted(notebook.name for notebook in assignment.notebooks)


def submitted_students(api, chapter):
    """Ids of the students with a submission of ``chapter`` in the course folder."""
    submitted = Path(api.coursedir.format_path(api.coursedir.submitted_directory, ".", ".")).resolve()
    return sorted(p.parent.name for p in submitted.glob(f"*/{chapter}") if p.is_dir())


def _preload_modules(release_dir):
    import nbformat

    found = set()
    for notebook in sorted(Path(release_dir).glob("*.ipynb")):
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("locked"):
                found.update(PRELOAD_PATTERN.findall(cell.source))
    found.update({"torch"} if found else set())
    return ",".join(sorted(found))


def grading_config(course_dir, chapter, limits):
    """The course's nbgrader config with the sandboxed executor and ``limits``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput, SaveAutoGrades,
    )

    from grader.sandbox import SandboxExecute

    config = load_course_config(course_dir)
    root = Path(config.CourseDirectory.root)
    config.Autograde.autograde_preprocessors = [
        SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata,
    ]
    config.Execute.timeout = limits.cell_timeout
    config.SandboxExecute.notebook_timeout = limits.notebook_timeout
    config.SandboxExecute.memory_mb = limits.memory_mb
    config.SandboxExecute.max_output_kb = limits.max_output_kb
    config.SandboxExecute.isolate_network = limits.isolate_network
    config.SandboxExecute.threads = limits.threads
    release = root / config.CourseDirectory.release_directory / chapter
    config.SandboxExecute.preload = _preload_modules(release)
    config.SandboxExecute.course_secret = read_course_secret(root)
    return config


_APIS = {}


def _grading_api(course_dir, chapter, limits):
    from grader.nbgrader_setup import make_api

    key = (str(course_dir), chapter, limits)
    if key not in _APIS:
        _APIS[key] = make_api(grading_config(course_dir, chapter, limits))
    return _APIS[key]


def _result(student, chapter, notebook, status, max_score, detail="", score=0.0, entries=(), cells=None,
            seconds=0.0, tests_sha=""):
    return {
        "student_id": student, "chapter": chapter, "notebook": notebook, "status": status,
        "score": float(score), "max_score": float(max_score), "detail": detail,
        "entries": [dict(asdict(e), severity=e.severity) for e in entries], "cells": cells or {},
        "seconds": float(seconds), "tests_sha": tests_sha,
    }


def grade_student(course_dir, chapter, student, limits):
    """Grade every released notebook of ``chapter`` for ``student``; return one result dict each."""
    import nbformat
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.utils import temp_attrs

    from grader import integrity, sandbox

    api = _grading_api(course_dir, chapter, limits)
    coursedir = api.coursedir
    root = Path(coursedir.root)
    release_dir = Path(coursedir.format_path(coursedir.release_directory, ".", chapter))
    submitted = _submitted_dir(api, student, chapter)
    staging = root / STAGING / student / chapter
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for extra in ("timestamp.txt",):
        if (submitted / extra).is_file():
            shutil.copy2(submitted / extra, staging / extra)

    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        max_scores = {nb.name: nb.max_score for nb in gradebook.find_assignment(chapter).notebooks}
    from grader import report

    shas = report.current_tests_sha(coursedir, chapter)
    results, staged = {}, {}
    for name, max_score in sorted(max_scores.items()):
        path = submitted / f"{name}.ipynb"
        if not path.is_file():
            results[name] = _result(student, chapter, name, "missing", max_score,
                                    _missing_detail(name, submitted, list(max_scores)))
            continue
        nb, problem = integrity.read_submission(path)
        if problem:
            results[name] = _result(student, chapter, name, "malformed", max_score, problem)
            continue
        current = release_dir / f"{name}.ipynb"
        earlier = [nbformat.read(version, as_version=4)
                   for version in released_versions(root, chapter, name) if version.read_bytes() != current.read_bytes()]
        analysis = integrity.analyse(nb, nbformat.read(current, as_version=4), earlier)
        if analysis.wrong_notebook:
            results[name] = _result(
                student, chapter, name, "malformed", max_score,
                f"wrong notebook: none of the cells released in {name} are in it",
            )
            continue
        nbformat.write(analysis.notebook, staging / f"{name}.ipynb")
        staged[name] = analysis.entries

    failures = {}
    if staged:
        for name in staged:
            sandbox.RUNS.pop((student, name), None)
        with temp_attrs(coursedir, submitted_directory=str(Path(STAGING))):
            outcome = api.autograde(chapter, student, force=True, create=True)
            if not outcome["success"]:  # unexpected: retry notebook by notebook so the others survive
                for name in staged:
                    with temp_attrs(coursedir, notebook_id=name):
                        retry = api.autograde(chapter, student, force=True, create=True)
                    if not retry["success"]:
                        failures[name] = _reason(retry.get("log", "") + retry.get("error", ""))
    autograded = Path(coursedir.format_path(coursedir.autograded_directory, student, chapter))
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        for name, entries in staged.items():
            max_score = max_scores[name]
            if name in failures or not (autograded / f"{name}.ipynb").is_file():
                results[name] = _result(student, chapter, name, "not_graded", max_score,
                                        failures.get(name, "nbgrader wrote no autograded notebook"), entries=entries)
                continue
            try:
                submission = gradebook.find_submission_notebook(name, chapter, student)
            except MissingEntry:
                results[name] = _result(student, chapter, name, "not_graded", max_score, "not in the gradebook")
                continue
            cells = {grade.name: (float(grade.score), float(grade.max_score)) for grade in submission.grades}
            run = sandbox.RUNS.get((student, name), {})
            entries = list(entries)
            for item in run.get("integrity", []):
                entries.append(integrity.Entry("checks_modified", item["cell"], item["detail"]))
            for event in run.get("network", []):
                entries.append(integrity.Entry("network_attempt", None, event))
            if run.get("network") and not run.get("isolated"):
                entries.append(integrity.Entry("network_not_isolated", None,
                                               "this OS did not allow `unshare -n`: the network was reachable"))
            if run.get("output_dropped_bytes"):
                entries.append(integrity.Entry("output_truncated", None,
                                               f"{run['output_dropped_bytes']} bytes of output dropped"))
            graded_nb = nbformat.read(autograded / f"{name}.ipynb", as_version=4)
            entries += integrity.reference_calls(graded_nb)
            slow = integrity.timed_out_cells(graded_nb)
            status, detail = "graded", ""
            if run.get("status") in ("timed_out", "kernel_died"):
                status, detail = run["status"], run.get("detail", "")
            elif slow:
                status = "timed_out"
                detail = f"stopped after the {limits.cell_timeout} s limit for one cell, in cell {', '.join(slow)}"
            elif any(entry.severity == "tamper" for entry in entries):
                status = "tampered"
                detail = "; ".join(sorted({entry.kind for entry in entries if entry.severity == "tamper"}))
            results[name] = _result(student, chapter, name, status, max_score, detail,
                                    score=submission.score, entries=entries, cells=cells)
    shutil.rmtree(staging, ignore_errors=True)
    for name, result in results.items():
        result["tests_sha"] = shas.get(name, "")
        result["seconds"] = round(float(sandbox.RUNS.get((student, name), {}).get("seconds", 0.0)), 1) if name in staged else 0.0
    return [results[name] for name in sorted(results)]


def _missing_detail(name, submitted, released):
    """Why ``name`` is missing; names a file of the submission that probably is it."""
    from grader.collect import probable_notebook, resolve_notebook

    others = sorted(p.name for p in submitted.glob("*.ipynb") if p.stem not in released) if submitted.is_dir() else []
    for other in others:
        if resolve_notebook(other, released)[0] == name or probable_notebook(other, released) == name:
            return (f"no {name}.ipynb submitted; the submission has {other}, probably this notebook "
                    "(collect it again: python -m grader collect stores it under its notebook name)")
    return "no such file submitted"


def grading_order(coursedir, chapter, students):
    """``students`` with the longest expected grading first, so parallel workers finish together.

    A student's expected time is the sum over their submitted notebooks of the seconds their last
    grading took, or else the average that notebook took for the class (1 s when never graded).
    """
    from grader import report

    rows = report.load_status_rows(coursedir, chapter)
    seconds = {}
    for (_, student, notebook), row in rows.items():
        if row["seconds"]:
            seconds.setdefault(notebook, {})[student] = row["seconds"]
    average = {nb: sum(values.values()) / len(values) for nb, values in seconds.items()}
    root = Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()

    def expected(student):
        submitted = root / student / chapter
        names = [p.stem for p in submitted.glob("*.ipynb")] if submitted.is_dir() else []
        return sum(seconds.get(nb, {}).get(student, average.get(nb, 1.0)) for nb in names)

    return sorted(students, key=lambda student: (-expected(student), student))


def _reason(log):
    lines = [line.strip() for line in log.splitlines() if re.search(r"(Error|Exception)\b", line)]
    lines = [line for line in lines if "NbGraderException" not in line]
    return lines[-1][:300] if lines else "nbgrader failed (see its log)"


def _worker_init():
    import warnings

    warnings.filterwarnings("ignore", module=r"nbgrader\..*")
    warnings.filterwarnings("ignore", message=".*MissingIDField.*")


def default_jobs():
    return os.cpu_count() or 1


def autograde_chapter(course_dir, chapter, students=None, jobs=None, limits=None, progress=None):
    """Autograde ``chapter`` for every submitting student (or ``students``), ``jobs`` at a time.

    Returns the result dicts (one per student x released notebook), also stored in the gradebook.
    """
    from grader import report

    api = course_api(course_dir)
    _check_released(api, chapter)
    students = submitted_students(api, chapter) if students is None else list(students)
    if not students:
        raise GraderError(f"no submissions of {chapter!r} in {course_dir}; import some with --submissions")
    students = grading_order(api.coursedir, chapter, students)
    jobs = max(1, min(jobs or default_jobs(), len(students)))
    limits = limits or Limits()
    if jobs > 1 and not limits.threads:
        limits = Limits(**{**asdict(limits), "threads": max(1, default_jobs() // jobs)})
    results = []
    if jobs == 1:
        from grader.forkserver_client import close_all

        _worker_init()
        try:
            for student in students:
                batch = grade_student(course_dir, chapter, student, limits)
                report.store_results(api.coursedir, batch)
                results += batch
                if progress:
                    progress(student, batch)
        finally:
            close_all()
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
            futures = [(s, pool.submit(grade_student, str(course_dir), chapter, s, limits)) for s in students]
            for student, future in futures:
                try:
                    batch = future.result()
                except Exception as error:  # a crashed worker: the student's notebooks are not graded
                    batch = [
                        _result(student, chapter, name, "not_graded", 0, f"grading worker failed: {error}")
                        for name in _check_released(api, chapter)
                    ]
                report.store_results(api.coursedir, batch)
                results += batch
                if progress:
                    progress(student, batch)
    return results




def generate_feedback(course_dir, chapter):
    """Write feedback HTML for every submission of ``chapter``; return the files.

    The course folder's config (``grader.nbgrader_setup.base_config``) makes nbgrader's feedback safe:
    hidden tests removed, tracebacks of failed tests replaced by the check's message, a status banner.
    Notebooks nbgrader has no autograded copy of (missing, malformed, not graded) get a page with
    their banner, so every student who submitted anything gets a page per notebook.
    """
    from nbgrader.api import Gradebook

    from grader import report
    from grader.feedback import missing_feedback_page

    api = course_api(course_dir)
    released = _check_released(api, chapter)
    result = api.generate_feedback(chapter)
    if not result["success"]:
        raise GraderError.from_nbgrader(f"generate feedback for {chapter}", result)
    coursedir = api.coursedir
    statuses = report.load_statuses(coursedir, chapter)
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        max_scores = {nb.name: nb.max_score for nb in gradebook.find_assignment(chapter).notebooks}
    students = sorted(set(submitted_students(api, chapter)) | {key[1] for key in statuses})
    for student in students:
        folder = Path(coursedir.format_path(coursedir.feedback_directory, student, chapter))
        for name in released:
            page = folder / f"{name}.html"
            if page.exists():
                continue
            status, score, max_score, detail = statuses.get(
                (chapter, student, name), ("not_graded", 0.0, max_scores.get(name, 0.0), "not autograded yet"))
            folder.mkdir(parents=True, exist_ok=True)
            page.write_text(missing_feedback_page(name, status, score, max_score, detail))
    feedback = Path(coursedir.format_path(coursedir.feedback_directory, ".", ".")).resolve()
    return sorted(feedback.glob(f"*/{chapter}/*.html"))
