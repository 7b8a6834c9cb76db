"""Export grades from a course folder's gradebook as CSV, one row per student and notebook."""
import csv
from pathlib import Path

from grader.course_folder import course_api
from grader.errors import GraderError

COLUMNS = ("student_id", "chapter", "notebook", "score", "max_score", "status")
COLUMNS_HELP = """\
columns: student_id, chapter, notebook (name without .ipynb), score, max_score, status.
status is 'graded', 'not_submitted' (score 0) or 'not_graded' (submitted but autograde
failed or has not run yet; score 0). One row per student x released notebook."""


def _number(value):
    return f"{value:g}"


def _score_and_status(gradebook, coursedir, student_id, chapter, notebook):
    """The score to report for one notebook of a student, and why (see COLUMNS_HELP)."""
    from nbgrader.api import MissingEntry

    filename = f"{notebook}.ipynb"
    if not Path(coursedir.format_path(coursedir.submitted_directory, student_id, chapter), filename).exists():
        return 0.0, "not_submitted"
    # The gradebook keeps the scores of an earlier grading when a resubmission fails: trust the files.
    if not Path(coursedir.format_path(coursedir.autograded_directory, student_id, chapter), filename).exists():
        return 0.0, "not_graded"
    try:
        return gradebook.find_submission_notebook(notebook, chapter, student_id).score, "graded"
    except MissingEntry:
        return 0.0, "not_graded"


def grade_rows(course_dir, chapters=None):
    """Yield one dict per student, released chapter (or only ``chapters``) and notebook."""
    from nbgrader.api import Gradebook

    coursedir = course_api(course_dir).coursedir
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        released = sorted(gradebook.assignments, key=lambda assignment: assignment.name)
        unknown = sorted(set(chapters or ()) - {assignment.name for assignment in released})
        if unknown:
            raise GraderError(
                f"not released in this course folder: {', '.join(unknown)} "
                f"(released: {', '.join(a.name for a in released) or 'none'})"
            )
        selected = [assignment for assignment in released if not chapters or assignment.name in chapters]
        for student in sorted(gradebook.students, key=lambda student: student.id):
            for assignment in selected:
                for notebook in sorted(assignment.notebooks, key=lambda notebook: notebook.name):
                    score, status = _score_and_status(
                        gradebook, coursedir, student.id, assignment.name, notebook.name
                    )
                    yield {
                        "student_id": student.id,
                        "chapter": assignment.name,
                        "notebook": notebook.name,
                        "score": _number(score),
                        "max_score": _number(notebook.max_score),
                        "status": status,
                    }


def export_grades(course_dir, csv_path, chapters=None):
    """Write the grade rows of ``course_dir`` to ``csv_path``; return the number of rows."""
    rows = list(grade_rows(course_dir, chapters))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
