"""Export grades from a course folder's gradebook as CSV, one row per student and notebook."""
import csv
from pathlib import Path

from grader.course_folder import course_api
from grader.errors import GraderError

COLUMNS = ("student_id", "chapter", "notebook", "score", "max_score", "status", "detail", "report")
COLUMNS_HELP = """\
columns: student_id, chapter, notebook (name without .ipynb), score, max_score, status, detail, report.
status is one of graded, tampered (graded after restoring the tests), missing (score 0),
malformed (not UTF-8/JSON/nbformat 4, or another notebook; score 0), timed_out, kernel_died
(tests that ran before keep their points), not_graded (submitted, not autograded yet).
detail says why; report lists the tamper and cheat report's entry kinds (see `report`).
One row per student x released notebook."""


def _number(value):
    return f"{value:g}"


def _fallback(gradebook, coursedir, student_id, chapter, notebook):
    """Score and status of a notebook our autograde never stored (graded by plain nbgrader, or not yet)."""
    from nbgrader.api import MissingEntry

    filename = f"{notebook}.ipynb"
    if not Path(coursedir.format_path(coursedir.submitted_directory, student_id, chapter), filename).exists():
        return 0.0, "missing", "no such file submitted"
    if not Path(coursedir.format_path(coursedir.autograded_directory, student_id, chapter), filename).exists():
        return 0.0, "not_graded", "submitted, not autograded"
    try:
        return gradebook.find_submission_notebook(notebook, chapter, student_id).score, "graded", ""
    except MissingEntry:
        return 0.0, "not_graded", "submitted, not autograded"


def grade_rows(course_dir, chapters=None):
    """Yield one dict per student, released chapter (or only ``chapters``) and notebook."""
    from nbgrader.api import Gradebook

    from grader import report

    coursedir = course_api(course_dir).coursedir
    statuses = report.load_statuses(coursedir)
    kinds = {}
    for entry in report.load_entries(coursedir):
        key = (entry["chapter"], entry["student_id"], entry["notebook"])
        kinds.setdefault(key, [])
        if entry["kind"] not in kinds[key]:
            kinds[key].append(entry["kind"])
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
                    key = (assignment.name, student.id, notebook.name)
                    if key in statuses:
                        status, score, _, detail = statuses[key]
                    else:
                        score, status, detail = _fallback(
                            gradebook, coursedir, student.id, assignment.name, notebook.name
                        )
                    yield {
                        "student_id": student.id,
                        "chapter": assignment.name,
                        "notebook": notebook.name,
                        "score": _number(score),
                        "max_score": _number(notebook.max_score),
                        "status": status,
                        "detail": detail,
                        "report": " ".join(kinds.get(key, [])),
                    }


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def export_grades(course_dir, csv_path, chapters=None):
    """Write the grade rows of ``course_dir`` to ``csv_path``; return the number of rows."""
    rows = list(grade_rows(course_dir, chapters))
    write_csv(csv_path, rows, COLUMNS)
    return len(rows)
