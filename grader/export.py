"""Export grades from a course folder's gradebook as CSV: LMS-ready, or one row per student and notebook.

Formats (``python -m grader export --format``):

* ``wide`` (default): one row per student: ``student_id``, ``lms_id``, one column per notebook
  (``<chapter>/<notebook>``), one per chapter total when several chapters are exported, ``total``;
  a second row ``points_possible`` holds the maximum of each column.
* ``canvas``: Canvas' gradebook import layout: ``Student, ID, SIS User ID, SIS Login ID, Section``,
  one column per chapter, a ``Points Possible`` row.
* ``moodle``: Moodle's grade import (CSV) layout: an identifier column ``username`` (map it to the
  user field the ids are, in the import form), one column per chapter.
* ``long``: one row per student x notebook with the status, its reason and the report (for records).

Scores are written as integers when whole, else rounded to ``precision`` decimals (default 2).
``lms_ids`` is a CSV the instructor provides with the columns ``student_id`` and ``lms_id`` (and,
optionally, ``name`` and ``section`` for Canvas): it maps course ids to the LMS's.
"""
import csv
from pathlib import Path

from grader.course_folder import course_api
from grader.errors import GraderError

COLUMNS = ("student_id", "chapter", "notebook", "score", "max_score", "status", "detail", "seconds",
           "tests_changed", "report")
FORMATS = ("wide", "canvas", "moodle", "long")
COLUMNS_HELP = """\
formats (--format):
  wide    one row per student: student_id, lms_id, <chapter>/<notebook> scores, total; then a
          points_possible row (default)
  canvas  Canvas gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, one column per
          chapter, a Points Possible row
  moodle  Moodle grade import: username, one column per chapter
  long    one row per student x released notebook, columns: student_id, chapter, notebook (name
          without .ipynb), score, max_score, status, detail, seconds, tests_changed, report.
status is one of graded, tampered (graded after restoring the tests), missing (score 0),
malformed (not UTF-8/JSON/nbformat 4, or another notebook; score 0), timed_out, kernel_died
(tests that ran before keep their points), not_graded (submitted, not autograded yet).
detail says why; tests_changed is "yes" when the chapter's tests changed since that grading
(regrade); report lists the tamper and cheat report's entry kinds (see `report`).
--lms-ids CSV maps student_id to lms_id (columns student_id, lms_id; optional name, section)."""


def number(value, precision=2):
    """``value`` as an integer when whole, else rounded to ``precision`` decimals, trailing zeros dropped."""
    value = round(float(value), precision)
    if value == int(value):
        return str(int(value))
    return f"{value:.{precision}f}".rstrip("0").rstrip(".")


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


def grade_rows(course_dir, chapters=None, precision=2):
    """Yield one dict per student, released chapter (or only ``chapters``) and notebook."""
    from nbgrader.api import Gradebook

    from grader import report

    coursedir = course_api(course_dir).coursedir
    statuses = report.load_status_rows(coursedir)
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
        current = {assignment.name: report.current_tests_sha(coursedir, assignment.name) for assignment in selected}
        for student in sorted(gradebook.students, key=lambda student: student.id):
            for assignment in selected:
                for notebook in sorted(assignment.notebooks, key=lambda notebook: notebook.name):
                    key = (assignment.name, student.id, notebook.name)
                    seconds, changed = 0.0, False
                    if key in statuses:
                        row = statuses[key]
                        status, score, detail, seconds = row["status"], row["score"], row["detail"], row["seconds"]
                        now = current[assignment.name].get(notebook.name)
                        changed = bool(row["tests_sha"] and now) and row["tests_sha"] != now
                    else:
                        score, status, detail = _fallback(
                            gradebook, coursedir, student.id, assignment.name, notebook.name
                        )
                    yield {
                        "student_id": student.id,
                        "chapter": assignment.name,
                        "notebook": notebook.name,
                        "score": number(score, precision),
                        "max_score": number(notebook.max_score, precision),
                        "status": status,
                        "detail": detail,
                        "seconds": f"{seconds:.1f}" if seconds else "",
                        "tests_changed": "yes" if changed else "",
                        "report": " ".join(kinds.get(key, [])),
                    }


def read_lms_ids(path):
    """{student_id: {"lms_id", "name", "section"}} from the instructor's mapping CSV."""
    path = Path(path)
    if not path.is_file():
        raise GraderError(f"LMS id mapping {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        if "student_id" not in fields or "lms_id" not in fields:
            raise GraderError(f"{path}: needs the columns student_id and lms_id (has: {', '.join(fields) or 'none'})")
        mapping = {}
        for row in reader:
            get = {key: (row.get(original) or "").strip() for key, original in fields.items()}
            if get["student_id"]:
                mapping[get["student_id"]] = {"lms_id": get["lms_id"], "name": get.get("name", ""),
                                              "section": get.get("section", "")}
    return mapping


def wide_table(rows, precision=2):
    """``(students, columns, maxima)`` from grade rows: one dict per student with per-notebook scores."""
    students, maxima, chapters = {}, {}, {}
    for row in rows:
        column = f"{row['chapter']}/{row['notebook']}"
        line = students.setdefault(row["student_id"], {"student_id": row["student_id"]})
        line[column] = float(row["score"])
        maxima[column] = float(row["max_score"])
        names = chapters.setdefault(row["chapter"], [])
        if column not in names:
            names.append(column)
    columns = [column for chapter in sorted(chapters) for column in chapters[chapter]]
    for line in students.values():
        for chapter, names in chapters.items():
            line[chapter] = sum(line.get(name, 0.0) for name in names)
        line["total"] = sum(line.get(column, 0.0) for column in columns)
    for chapter, names in chapters.items():
        maxima[chapter] = sum(maxima[name] for name in names)
    maxima["total"] = sum(maxima[column] for column in columns)
    return [students[s] for s in sorted(students)], columns, sorted(chapters), maxima


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def export_grades(course_dir, csv_path, chapters=None, fmt="wide", lms_ids=None, precision=2):
    """Write the grades of ``course_dir`` to ``csv_path`` in format ``fmt``; return ``(rows, warnings)``."""
    if fmt not in FORMATS:
        raise GraderError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    rows = list(grade_rows(course_dir, chapters, precision))
    if fmt == "long":
        write_csv(csv_path, rows, COLUMNS)
        return len(rows), []
    mapping = read_lms_ids(lms_ids) if lms_ids else {}
    students, columns, chapter_names, maxima = wide_table(rows, precision)
    warnings = []
    if lms_ids:
        unmapped = [line["student_id"] for line in students if line["student_id"] not in mapping]
        if unmapped:
            warnings.append(f"no lms_id in {lms_ids} for: {', '.join(unmapped)} (their course id is used)")

    def lms(student_id, key="lms_id"):
        entry = mapping.get(student_id, {})
        return entry.get(key) or (student_id if key == "lms_id" else "")

    def fmt_number(value):
        return number(value, precision)

    out = []
    if fmt == "wide":
        header = ["student_id", "lms_id", *columns, *(chapter_names if len(chapter_names) > 1 else []), "total"]
        out.append({"student_id": "points_possible", "lms_id": "",
                    **{c: fmt_number(maxima[c]) for c in header[2:]}})
        for line in students:
            out.append({"student_id": line["student_id"], "lms_id": lms(line["student_id"]),
                        **{c: fmt_number(line[c]) for c in header[2:]}})
    elif fmt == "canvas":
        header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *chapter_names]
        out.append({"Student": "    Points Possible", **{c: fmt_number(maxima[c]) for c in chapter_names}})
        for line in students:
            student = line["student_id"]
            # Canvas matches a row by ID (its user id, from --lms-ids) or SIS Login ID (the course id)
            out.append({"Student": lms(student, "name") or student, "ID": mapping.get(student, {}).get("lms_id", ""),
                        "SIS User ID": "",
                        "SIS Login ID": student, "Section": lms(student, "section"),
                        **{c: fmt_number(line[c]) for c in chapter_names}})
    else:  # moodle
        header = ["username", *chapter_names]
        for line in students:
            out.append({"username": lms(line["student_id"]), **{c: fmt_number(line[c]) for c in chapter_names}})
    write_csv(csv_path, out, header)
    return len(students), warnings
