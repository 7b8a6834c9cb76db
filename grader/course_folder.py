"""Instructor course folders: where a chapter is released, submissions land and grades are kept.

A course folder lives outside the repository because its gradebook stores the
hidden tests. Its ``nbgrader_config.py`` imports the shared settings from this
repository's grader package, so plain ``nbgrader`` commands (formgrader
included) run inside it behave like ``python -m grader``.

Layout: ``source/`` (snapshot of the released chapters' solutions), ``release/``,
``submitted/<student>/<chapter>/``, ``autograded/``, ``feedback/``,
``gradebook.db``, ``exchange/``, ``.release_history/`` (every released version of each
notebook, so that a submission of an earlier release is not taken for tampering) and
``course_secret.txt`` (the seed of the hidden checks' cases; private like the gradebook).
"""
import hashlib
import shutil
import tempfile
from pathlib import Path

from grader.errors import GraderError
from grader.generate import find_chapters
from grader.nbgrader_setup import CONFIG_FILENAME, SECRET_FILENAME, make_api, read_course_secret, write_course_secret

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
# Every released version of each notebook: COURSE_DIR/.release_history/<chapter>/<notebook>/<hash>.ipynb
RELEASE_HISTORY = ".release_history"

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
    """Create the course folder ``course_dir`` with its nbgrader_config.py and course secret.

    Returns ``(path, created)``: a course folder made before course secrets existed only gets its
    secret (``created`` False); one that has both is refused.
    """
    course_dir = Path(course_dir).resolve()
    if course_dir == REPO_ROOT or REPO_ROOT in course_dir.parents:
        raise GraderError(
            f"{course_dir} is inside the course repository {REPO_ROOT}; a course folder holds "
            "the gradebook with the hidden tests and must live outside it"
        )
    config_file = course_dir / CONFIG_FILENAME
    if config_file.exists():
        if read_course_secret(course_dir):
            raise GraderError(f"{course_dir} is already a course folder ({config_file} exists)")
        write_course_secret(course_dir)
        return course_dir, False
    (course_dir / "source").mkdir(parents=True, exist_ok=True)
    (course_dir / "submitted").mkdir(exist_ok=True)
    config_file.write_text(CONFIG_TEMPLATE.format(repo=str(REPO_ROOT)))
    write_course_secret(course_dir)
    return course_dir, True


def course_secret(course_dir):
    """The secret the hidden checks of ``course_dir`` are seeded from ('' when it has none)."""
    return read_course_secret(Path(course_dir).resolve())


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
    release = Path(api.coursedir.format_path(api.coursedir.release_directory, ".", chapter))
    root = Path(api.coursedir.root)
    _archive_release(root, chapter, release)  # a folder released before the history existed
    gradebook = Path(api.coursedir.db_url.removeprefix("sqlite:///"))
    with tempfile.TemporaryDirectory(prefix=".release-backup-", dir=root) as backup:
        # a failed re-release (say, a renamed test cell once submissions exist) changes nothing
        saved = {path: Path(backup) / name for path, name in
                 ((snapshot, "source"), (release, "release"), (gradebook, "gradebook.db")) if path.exists()}
        for path, copy in saved.items():
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, copy)
        if snapshot.exists():
            shutil.rmtree(snapshot)
        shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns(*api.coursedir.ignore))
        result = api.generate_assignment(chapter, force=True, create=True)
        if not result["success"]:
            for path in (snapshot, release):
                if path.exists():
                    shutil.rmtree(path)
            for path, copy in saved.items():
                (shutil.copytree if copy.is_dir() else shutil.copy2)(copy, path)
            raise GraderError.from_nbgrader(f"release {chapter}", result)
    _archive_release(root, chapter, release)
    return release


def _archive_release(root, chapter, release):
    """Keep a copy of every released version of each notebook of ``chapter`` (by content)."""
    for path in sorted(Path(release).glob("*.ipynb")) if Path(release).is_dir() else []:
        data = path.read_bytes()
        target = Path(root) / RELEASE_HISTORY / chapter / path.stem / f"{hashlib.sha256(data).hexdigest()[:16]}.ipynb"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def released_versions(root, chapter, notebook):
    """Paths of every version of ``notebook`` of ``chapter`` released in the course folder at ``root``.

    A student may hand in a notebook fetched before the instructor fixed a test and re-released
    the chapter; the test cells of any released version are then not the student's edits.
    """
    return sorted((Path(root) / RELEASE_HISTORY / chapter / notebook).glob("*.ipynb"))
