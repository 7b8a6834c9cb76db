"""Importing, autograding and giving feedback on student submissions in a course folder."""
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from grader.course_folder import course_api
from grader.errors import GraderError

# Student ids become folder names and nbgrader globs over them.
STUDENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_@-][\w.@-]*")
# A traceback's final line, e.g. "nbformat.reader.NotJSONError: Notebook does not appear to be JSON".
EXCEPTION_LINE = re.compile(r"(\w+\.)*\w*(Error|Exception|Exit)\b.*")
# nbgrader's generic wrapper, raised after the real error: it names nothing.
GENERIC_EXCEPTION = "NbGraderException"


@dataclass(frozen=True)
class GradingFailure:
    """A notebook (or, with ``notebook=None``, a whole submission) nbgrader could not grade."""

    student_id: str
    notebook: str | None
    log: str

    @property
    def reason(self):
        """The last exception named in nbgrader's log, which usually says what is wrong."""
        exceptions = [
            line.strip()
            for line in self.log.splitlines()
            if EXCEPTION_LINE.fullmatch(line.strip()) and GENERIC_EXCEPTION not in line
        ]
        return exceptions[-1] if exceptions else "see the log (--verbose)"


def _submitted_dir(api, student_id, chapter):
    return Path(api.coursedir.format_path(api.coursedir.submitted_directory, student_id, chapter))


def _find_submitted_notebooks(student_folder, chapter):
    """Notebooks of ``chapter`` in a student folder: in a ``chapter/`` subfolder, else at its top."""
    chapter_folder = student_folder / chapter
    folder = chapter_folder if chapter_folder.is_dir() else student_folder
    return sorted(folder.glob("*.ipynb"))


def import_submissions(course_dir, chapter, submissions_dir):
    """Copy ``submissions_dir/<student>/[<chapter>/]*.ipynb`` into the course folder.

    Each student's previous submission of ``chapter`` is replaced and the student
    is registered in the gradebook. Returns the imported student ids.
    """
    from nbgrader.api import Gradebook

    api = course_api(course_dir)
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise GraderError(f"submissions folder {submissions_dir} does not exist")
    imported = {}
    for student_folder in sorted(p for p in submissions_dir.iterdir() if p.is_dir()):
        if student_folder.name.startswith((".", "__")):
            continue  # .ipynb_checkpoints, __MACOSX and the like
        if not STUDENT_ID_PATTERN.fullmatch(student_folder.name):
            raise GraderError(
                f"{student_folder}: {student_folder.name!r} is not a usable student id "
                "(letters, digits, '_', '-', '.', '@')"
            )
        notebooks = _find_submitted_notebooks(student_folder, chapter)
        if notebooks:
            imported[student_folder.name] = notebooks
    if not imported:
        raise GraderError(
            f"no notebooks in {submissions_dir}: expected <student_id>/<notebook>.ipynb "
            f"or <student_id>/{chapter}/<notebook>.ipynb"
        )
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        for student_id, notebooks in imported.items():
            target = _submitted_dir(api, student_id, chapter)
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for notebook in notebooks:
                shutil.copy2(notebook, target / notebook.name)
            gradebook.update_or_create_student(student_id)
    return list(imported)


def _check_released(api, chapter):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        try:
            gradebook.find_assignment(chapter)
        except MissingEntry:
            raise GraderError(
                f"chapter {chapter!r} was never released in this course folder: "
                f"run python -m grader release {chapter} first"
            ) from None


def submitted_students(api, chapter):
    """Ids of the students with a submission of ``chapter`` in the course folder."""
    submitted = Path(api.coursedir.format_path(api.coursedir.submitted_directory, ".", ".")).resolve()
    return sorted(p.parent.name for p in submitted.glob(f"*/{chapter}") if p.is_dir())


def _output(result):
    """nbgrader's log and traceback from the result of an API call."""
    return result.get("log", "") + result.get("error", "")


def _autograde_notebook(api, chapter, student_id, notebook):
    from nbgrader.utils import temp_attrs

    with temp_attrs(api.coursedir, notebook_id=notebook):
        return api.autograde(chapter, student_id, force=True, create=True)


def autograde_chapter(course_dir, chapter, students=None):
    """Autograde every submission of ``chapter`` (or only ``students``).

    nbgrader drops a whole submission when one of its notebooks cannot be
    graded (kernel death, invalid JSON), so a failed submission is graded again
    notebook by notebook to keep the grades of the others. Returns the graded
    student ids and the list of ``GradingFailure``.
    """
    api = course_api(course_dir)
    _check_released(api, chapter)
    students = submitted_students(api, chapter) if students is None else list(students)
    if not students:
        raise GraderError(f"no submissions of {chapter!r} in {course_dir}; import some with --submissions")
    failures = []
    for student_id in students:
        result = api.autograde(chapter, student_id, force=True, create=True)
        if result["success"]:
            continue
        notebooks = sorted(_submitted_dir(api, student_id, chapter).glob("*.ipynb"))
        if not notebooks:
            failures.append(GradingFailure(student_id, None, _output(result)))
        for notebook in notebooks:
            retry = _autograde_notebook(api, chapter, student_id, notebook.stem)
            if not retry["success"]:
                failures.append(GradingFailure(student_id, notebook.stem, _output(retry)))
    return students, failures


def generate_feedback(course_dir, chapter):
    """Write feedback HTML for every autograded submission of ``chapter``; return the files."""
    api = course_api(course_dir)
    _check_released(api, chapter)
    result = api.generate_feedback(chapter)
    if not result["success"]:
        raise GraderError.from_nbgrader(f"generate feedback for {chapter}", result)
    feedback = Path(api.coursedir.format_path(api.coursedir.feedback_directory, ".", ".")).resolve()
    return sorted(feedback.glob(f"*/{chapter}/*.html"))
