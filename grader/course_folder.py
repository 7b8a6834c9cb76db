"""Instructor course folders: where a chapter is released, submissions land and grades are kept.

A course folder lives outside the repository because its gradebook stores the
hidden tests. Its ``nbgrader_config.py`` imports the shared settings from this
repository's grader package, so plain ``nbgrader`` commands (formgrader
included) run inside it behave like ``python -m grader``.

Layout: ``source/`` (snapshot of the released chapters' solutions), ``release/``,
``submitted/<student>/<chapter>/``, ``autograded/``, ``feedback/``,
``gradebook.db`` and ``exchange/``.
"""
import shutil
from pathlib import Path

from grader.errors import GraderError
from grader.generate import find_chapters
from grader.nbgrader_setup import CONFIG_FILENAME, make_api

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"

CONFIG_TEMPLATE = '''\
"""nbgrader configuration of an llmcore instructor course folder.

Written by `python -m grader init`. The shared settings come from
grader.nbgrader_setup in the course repository below; put course-specific
overrides after the merge.
"""
import os
import sys

REPO = {repo!r}  # the course repository whose grader package this folder uses
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from grader.nbgrader_setup import base_config  # noqa: E402

c = get_config()  # noqa: F821 (injected by traitlets)
c.merge(base_config(os.path.dirname(os.path.abspath(__file__))))
'''


def init_course(course_dir):
    """Create the course folder ``course_dir`` with its nbgrader_config.py; return its path."""
    course_dir = Path(course_dir).resolve()
    if course_dir == REPO_ROOT or REPO_ROOT in course_dir.parents:
        raise GraderError(
            f"{course_dir} is inside the course repository {REPO_ROOT}; a course folder holds "
            "the gradebook with the hidden tests and must live outside it"
        )
    config_file = course_dir / CONFIG_FILENAME
    if config_file.exists():
        raise GraderError(f"{course_dir} is already a course folder ({config_file} exists)")
    (course_dir / "source").mkdir(parents=True, exist_ok=True)
    (course_dir / "submitted").mkdir(exist_ok=True)
    config_file.write_text(CONFIG_TEMPLATE.format(repo=str(REPO_ROOT)))
    return course_dir


def load_course_config(course_dir):
    """Load ``course_dir/nbgrader_config.py`` (nbgrader's API does not read it by itself)."""
    from traitlets.config.loader import PyFileConfigLoader

    course_dir = Path(course_dir).resolve()
    if not (course_dir / CONFIG_FILENAME).is_file():
        raise GraderError(
            f"{course_dir} is not a course folder (no {CONFIG_FILENAME}); "
            f"create it with: python -m grader init {course_dir}"
        )
    return PyFileConfigLoader(CONFIG_FILENAME, path=str(course_dir)).load_config()


def course_api(course_dir):
    """An ``NbGraderAPI`` configured for ``course_dir``."""
    return make_api(load_course_config(course_dir))


def release_chapter(course_dir, chapter, solutions_dir=SOLUTIONS_DIR):
    """Snapshot ``solutions_dir/chapter`` into the course folder and generate its release.

    Registers the chapter and its graded cells in the course gradebook; a
    repeated release replaces the previous one. Returns the release folder.
    """
    api = course_api(course_dir)
    solutions_dir = Path(solutions_dir)
    source = solutions_dir / chapter
    if not any(source.glob("*.ipynb")):
        available = ", ".join(find_chapters(solutions_dir)) if solutions_dir.is_dir() else ""
        raise GraderError(f"no chapter {chapter!r} in {solutions_dir} (available: {available or 'none'})")
    snapshot = Path(api.coursedir.format_path(api.coursedir.source_directory, ".", chapter))
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns(*api.coursedir.ignore))
    result = api.generate_assignment(chapter, force=True, create=True)
    if not result["success"]:
        raise GraderError.from_nbgrader(f"release {chapter}", result)
    return Path(api.coursedir.format_path(api.coursedir.release_directory, ".", chapter))
