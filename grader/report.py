"""Grading statuses and the tamper and cheat report, stored in the course's gradebook file.

nbgrader's gradebook only knows scores, so a notebook that could not be graded and an empty one
both read 0 there. ``python -m grader autograde`` therefore writes two tables of its own into the
same sqlite file (nbgrader ignores tables it does not know): one status per student x notebook and
the report entries. They travel with the grades and are never only in a log.

Statuses: graded, tampered (graded for real after restoring the tests; see the report), missing,
malformed (not UTF-8, not JSON, not nbformat 4, or not this notebook), timed_out (the notebook hit
its wall-clock limit), kernel_died (os._exit, a crash), not_graded (submitted, not graded yet).
"""
import sqlite3
from contextlib import closing
from datetime import datetime, timezone

STATUSES = ("graded", "tampered", "missing", "malformed", "timed_out", "kernel_died", "not_graded")

SCHEMA = """
CREATE TABLE IF NOT EXISTS llmcore_notebook_status (
    chapter TEXT NOT NULL, student_id TEXT NOT NULL, notebook TEXT NOT NULL,
    status TEXT NOT NULL, score REAL NOT NULL, max_score REAL NOT NULL, detail TEXT NOT NULL,
    graded_at TEXT NOT NULL, PRIMARY KEY (chapter, student_id, notebook));
CREATE TABLE IF NOT EXISTS llmcore_report (
    chapter TEXT NOT NULL, student_id TEXT NOT NULL, notebook TEXT NOT NULL,
    cell TEXT, kind TEXT NOT NULL, severity TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS llmcore_cell_score (
    chapter TEXT NOT NULL, student_id TEXT NOT NULL, notebook TEXT NOT NULL, cell TEXT NOT NULL,
    score REAL NOT NULL, max_score REAL NOT NULL, PRIMARY KEY (chapter, student_id, notebook, cell));
"""


# Columns added after the first course folders were made: (name, SQL type and default).
ADDED_COLUMNS = {"llmcore_notebook_status": [("seconds", "REAL NOT NULL DEFAULT 0"), ("tests_sha", "TEXT NOT NULL DEFAULT ''")]}


def db_path(coursedir):
    return coursedir.db_url.removeprefix("sqlite:///")


def connect(coursedir):
    connection = sqlite3.connect(db_path(coursedir), timeout=60)
    connection.executescript(SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    return connection


def tests_sha(notebook):
    """A digest of the graded cells of a source ``notebook`` (grade_id, source, points): what grades depend on."""
    import hashlib
    import json

    cells = [
        (meta.get("grade_id"), cell.source, meta.get("points"))
        for cell in notebook.cells
        for meta in [cell.metadata.get("nbgrader", {})]
        if meta.get("grade")
    ]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()[:16]


def store_results(coursedir, results):
    """Replace the stored statuses, cell scores and report of each (chapter, student) in ``results``."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with closing(connect(coursedir)) as db, db:
        for key in {(r["chapter"], r["student_id"]) for r in results}:
            for table in ("llmcore_notebook_status", "llmcore_report", "llmcore_cell_score"):
                db.execute(f"DELETE FROM {table} WHERE chapter = ? AND student_id = ?", key)
        for r in results:
            ident = (r["chapter"], r["student_id"], r["notebook"])
            db.execute(
                "INSERT INTO llmcore_notebook_status (chapter, student_id, notebook, status, score, max_score, "
                "detail, graded_at, seconds, tests_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*ident, r["status"], r["score"], r["max_score"], r["detail"], now,
                 float(r.get("seconds", 0.0)), r.get("tests_sha", "")),
            )
            for cell, (score, max_score) in r["cells"].items():
                db.execute("INSERT INTO llmcore_cell_score VALUES (?, ?, ?, ?, ?, ?)", (*ident, cell, score, max_score))
            for entry in r["entries"]:
                db.execute(
                    "INSERT INTO llmcore_report VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*ident, entry["cell"], entry["kind"], entry["severity"], entry["detail"]),
                )


def load_statuses(coursedir, chapter=None):
    """{(chapter, student, notebook): (status, score, max_score, detail)}."""
    with closing(connect(coursedir)) as db:
        rows = db.execute(
            "SELECT chapter, student_id, notebook, status, score, max_score, detail FROM llmcore_notebook_status"
            + (" WHERE chapter = ?" if chapter else ""), (chapter,) if chapter else ()
        ).fetchall()
    return {tuple(row[:3]): tuple(row[3:]) for row in rows}


def load_status_rows(coursedir, chapter=None):
    """{(chapter, student, notebook): dict(status, score, max_score, detail, graded_at, seconds, tests_sha)}."""
    keys = ("status", "score", "max_score", "detail", "graded_at", "seconds", "tests_sha")
    with closing(connect(coursedir)) as db:
        rows = db.execute(
            f"SELECT chapter, student_id, notebook, {', '.join(keys)} FROM llmcore_notebook_status"
            + (" WHERE chapter = ?" if chapter else ""), (chapter,) if chapter else ()
        ).fetchall()
    return {tuple(row[:3]): dict(zip(keys, row[3:])) for row in rows}


def current_tests_sha(coursedir, chapter):
    """{notebook: tests_sha} of the chapter's source snapshot in the course folder, as released now."""
    from pathlib import Path

    import nbformat

    folder = Path(coursedir.format_path(coursedir.source_directory, ".", chapter))
    return {path.stem: tests_sha(nbformat.read(path, as_version=4)) for path in sorted(folder.glob("*.ipynb"))}


def load_entries(coursedir, chapter=None):
    """Report entries as dicts, ordered by chapter, student, notebook."""
    with closing(connect(coursedir)) as db:
        rows = db.execute(
            "SELECT chapter, student_id, notebook, cell, kind, severity, detail FROM llmcore_report"
            + (" WHERE chapter = ?" if chapter else "") + " ORDER BY chapter, student_id, notebook, rowid",
            (chapter,) if chapter else (),
        ).fetchall()
    keys = ("chapter", "student_id", "notebook", "cell", "kind", "severity", "detail")
    return [dict(zip(keys, row)) for row in rows]


def load_cell_scores(coursedir, chapter):
    """{(student, notebook, cell): (score, max_score)} of ``chapter``."""
    with closing(connect(coursedir)) as db:
        rows = db.execute(
            "SELECT student_id, notebook, cell, score, max_score FROM llmcore_cell_score WHERE chapter = ?",
            (chapter,),
        ).fetchall()
    return {tuple(row[:3]): tuple(row[3:]) for row in rows}


def integrity_problems(coursedir):
    """Problems of the gradebook file: sqlite's own check, and stored statuses that disagree with nbgrader."""
    from nbgrader.api import Gradebook, MissingEntry

    problems = []
    with closing(connect(coursedir)) as db:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"sqlite integrity_check: {result}")
        statuses = db.execute(
            "SELECT chapter, student_id, notebook, status, score FROM llmcore_notebook_status"
        ).fetchall()
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        for chapter, student, notebook, status, score in statuses:
            if status not in STATUSES:
                problems.append(f"{student}/{chapter}/{notebook}: unknown status {status!r}")
            try:
                nb = gradebook.find_submission_notebook(notebook, chapter, student)
            except MissingEntry:
                if status not in ("missing", "malformed", "not_graded"):
                    problems.append(f"{student}/{chapter}/{notebook}: {status} but not in nbgrader's gradebook")
                continue
            if abs(nb.score - score) > 1e-9:
                problems.append(f"{student}/{chapter}/{notebook}: stored score {score} != gradebook {nb.score}")
            if abs(nb.score - sum(grade.score for grade in nb.grades)) > 1e-9:
                problems.append(f"{student}/{chapter}/{notebook}: notebook score is not the sum of its cells")
    return problems
