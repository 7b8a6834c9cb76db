"""The nbgrader settings shared by the repository and every instructor course folder.

nbgrader only reads ``nbgrader_config.py`` from the working directory, and
``NbGraderAPI`` never reads it at all, so the settings live here as a function
that both config files call and that the grader commands pass to the API.
"""
from pathlib import Path

from traitlets.config import Config

COURSE_ID = "llmcore-course"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
CELL_TIMEOUT_S = 120
CONFIG_FILENAME = "nbgrader_config.py"
# The per-course secret the hidden checks are seeded from (grader.checks reads GRADER_COURSE_SECRET);
# written by `python -m grader init` next to the gradebook, never released.
SECRET_FILENAME = "course_secret.txt"
SECRET_ENV = "GRADER_COURSE_SECRET"
VOLATILE_FILES = [".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store", "feedback", SECRET_FILENAME]

# Folders of the grading steps, relative to the instructor folder.
INSTRUCTOR_FOLDERS = {
    "submitted_directory": "submitted",
    "autograded_directory": "autograded",
    "feedback_directory": "feedback",
    "solution_directory": "solution",
}


def base_config(
    root,
    *,
    source_directory="source",
    release_directory="release",
    instructor_directory=".",
    plain_autograde=False,
):
    """Return the nbgrader configuration of a course rooted at ``root``.

    ``source_directory`` and ``release_directory`` are relative to ``root``.
    Everything private to the instructor (gradebook, submissions, grades,
    feedback, exchange) goes under ``root/instructor_directory``; those folders
    are created here because sqlite does not create a missing folder.

    Feedback is safe from every nbgrader entry point (the formgrader's buttons included): hidden
    tests cleared, test tracebacks reduced to the check's message, a status banner, maths as MathML
    (no CDN). Unless ``plain_autograde``, plain nbgrader autograde (the formgrader's Autograde button)
    refuses and points to ``python -m grader autograde``, which sets its own preprocessors.
    """
    root = Path(root).resolve()
    instructor = root / instructor_directory
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = source_directory
    c.CourseDirectory.release_directory = release_directory
    for trait, folder in INSTRUCTOR_FOLDERS.items():
        setattr(c.CourseDirectory, trait, str((instructor / folder).relative_to(root)))
    c.CourseDirectory.db_url = f"sqlite:///{instructor / 'gradebook.db'}"
    c.CourseDirectory.ignore = VOLATILE_FILES
    c.Exchange.root = str(instructor / "exchange")

    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    # Without this, a test cell the student deleted is silently never graded.
    c.OverwriteCells.add_missing_cells = True
    c.Execute.timeout = CELL_TIMEOUT_S
    # `nbgrader zip_collect` matches this against the full extracted path (hence the leading .*/).
    from grader.collect_pattern import DEFAULT_PATTERN

    c.FileNameCollectorPlugin.named_regexp = DEFAULT_PATTERN

    from grader.feedback import FeedbackExporter, feedback_preprocessors

    c.GenerateFeedback.preprocessors = feedback_preprocessors()
    c.GenerateFeedback.exporter_class = FeedbackExporter
    if not plain_autograde:
        from grader.refusals import RefuseAutograde

        c.Autograde.autograde_preprocessors = [RefuseAutograde]

    for folder in [instructor, instructor / "exchange"]:
        folder.mkdir(parents=True, exist_ok=True)
    return c


def read_course_secret(root):
    """The course secret stored in the course folder ``root`` ('' when it has none)."""
    try:
        return (Path(root) / SECRET_FILENAME).read_text().strip()
    except OSError:
        return ""


def write_course_secret(root):
    """Write a new random course secret into ``root`` (owner-only); return it."""
    import os
    import secrets

    secret = secrets.token_hex(32)
    path = Path(root) / SECRET_FILENAME
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(secret + "\n")
    return secret


def repository_config(repo_root):
    """Configuration of the repository itself: solutions/ is released into course/."""
    return base_config(
        repo_root,
        source_directory="solutions",
        release_directory="course",
        instructor_directory="instructor",
    )


def make_api(config):
    """Return an ``NbGraderAPI`` using ``config``.

    nbgrader creates a new gradebook by running the ``alembic`` executable
    found on PATH, which misses the virtualenv's copy when Python is started as
    ``.venv/bin/python`` (as make does); put this interpreter's scripts first.
    """
    import os
    import sys

    scripts = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != scripts:
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])

    from nbgrader.apps import NbGraderAPI

    return NbGraderAPI(config=config)
