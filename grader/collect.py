"""Collecting submissions from a folder or an LMS zip download into a course folder.

A zip is read with nbgrader's ``zip_collect`` machinery (``FileNameCollectorPlugin``): every file's
full extracted path is matched against ``named_regexp``, which must define the groups
``student_id`` and ``file_id``. The default accepts ``<student_id>/<notebook>.ipynb`` and
``<student_id>/<chapter>/<notebook>.ipynb`` at any depth; LMS layouts have presets (``--lms``) or
take their own pattern (``--pattern``, see docs/INSTRUCTORS.md).

The matched ``file_id`` is then resolved to a released notebook name, so that what an LMS does to
file names never loses a notebook: a copy suffix (``01_attention (1).ipynb``), a resubmission suffix
(Canvas' ``01_attention-1.ipynb``), a login/id prefix, letter case, or any file name that contains
exactly one released notebook's name. Every file is stored under the notebook name it resolved to.

Collecting a student again merges: a new file replaces only its notebook (``replace=True`` replaces
the whole submission). What a collected student ends up without (a missing notebook, a file that
could not be resolved) is returned as warnings that say which notebook a file probably is.
"""
import difflib
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.collect_pattern import DEFAULT_PATTERN
from grader.errors import GraderError
from grader.grading import STUDENT_ID_PATTERN, store_submissions

MAX_UNZIPPED_BYTES = 2 * 2**30

# Presets for the submission downloads of common LMSs (``--lms``); each is a named_regexp.
LMS_PATTERNS = {
    # Canvas "Download Submissions": flat files <lastfirst>[_late]_<user id>_<submission id>_<file name>,
    # a resubmission's file name gets "-1", "-2"... before the extension.
    "canvas": r".*/(?P<student_id>[A-Za-z0-9]+)_(?:LATE_|late_)?\d+_\d+_(?P<file_id>[^/]+\.ipynb)$",
    # Moodle "Download all submissions": <Full Name>_<participant id>_assignsubmission_file_/<file name>
    # (the participant id is the student id: names have spaces).
    "moodle": r".*/[^/]*_(?P<student_id>\d+)_assignsubmission_file_?/(?:[^/]+/)*(?P<file_id>[^/]+\.ipynb)$",
    # Blackboard "Download Assignment": <assignment>_<username>_attempt_<date-time>_<file name>
    "blackboard": r".*/[^/]*?_(?P<student_id>[A-Za-z0-9.@-]+)_attempt_[\d-]+_(?P<file_id>[^/]+\.ipynb)$",
}

# An LMS artefact at the end of a file stem: " (1)", "(2)", "-1", " copy".
_SUFFIX = re.compile(r"(?:\s*\(\d+\)|-\d+|\s+copy)$", re.I)


@dataclass
class Collected:
    """What :func:`collect` did: the students stored and everything the instructor should look at."""

    students: list
    unrecognised: list = field(default_factory=list)  # file descriptions
    warnings: list = field(default_factory=list)  # one sentence each: a missing notebook, a guess
    notes: list = field(default_factory=list)  # informational: a resubmission chosen over another


def _safe_extract(zip_path, target):
    with zipfile.ZipFile(zip_path) as archive:
        total = 0
        for info in archive.infolist():
            total += info.file_size
            path = (target / info.filename).resolve()
            if target.resolve() not in path.parents and path != target.resolve():
                raise GraderError(f"{zip_path}: refusing {info.filename!r} (outside the archive folder)")
        if total > MAX_UNZIPPED_BYTES:
            raise GraderError(f"{zip_path}: {total} bytes unpacked is more than {MAX_UNZIPPED_BYTES}")
        archive.extractall(target)


def resolve_notebook(file_name, released):
    """``(notebook, resubmission number)`` a submitted ``file_name`` stands for, or ``(None, 0)``.

    ``released`` lists the chapter's notebook names (no ``.ipynb``). An exact name wins; then the
    name without LMS suffixes; then a case-insensitive match of exactly one released name (the
    longest, when one contains another) inside the file name.
    """
    stem = Path(file_name).name
    if not stem.lower().endswith(".ipynb"):
        return None, 0
    stem = stem[: -len(".ipynb")]
    if stem in released:
        return stem, 0
    number, base = 0, stem
    while True:
        match = _SUFFIX.search(base)
        if not match or match.start() == 0:
            break
        digits = re.sub(r"\D", "", match.group())
        number = max(number, int(digits) if digits else 1)
        base = base[: match.start()]
    lowered = {name.lower(): name for name in released}
    if base.lower() in lowered:
        return lowered[base.lower()], number
    inside = [name for low, name in lowered.items() if low in stem.lower()]
    inside = [name for name in inside if not any(name != other and name.lower() in other.lower() for other in inside)]
    if len(inside) == 1:
        return inside[0], number
    return None, 0


def probable_notebook(file_name, released):
    """The released notebook a file name most resembles (for "did you mean"), or None."""
    stem = Path(file_name).stem.lower()
    stem = re.sub(r"[^a-z0-9]+", "_", stem).strip("_")
    scores = []
    for name in released:
        words = [word for word in re.split(r"[^a-z0-9]+", name.lower()) if word and not word.isdigit()]
        hits = sum(word in stem for word in words)
        ratio = difflib.SequenceMatcher(None, stem, name.lower()).ratio()
        scores.append((hits, ratio, name))
    if not scores:
        return None
    hits, ratio, name = max(scores)
    return name if hits or ratio >= 0.6 else None


def match_files(folder, pattern=DEFAULT_PATTERN, released=None):
    """``({student: {notebook: [(resubmission, path), ...]}}, [unrecognised descriptions])``.

    ``notebook`` is the released notebook name the file resolved to (``released`` given), else the
    file name's stem. Unrecognised entries are ``(student or None, description, file name)``.
    """
    from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

    plugin = FileNameCollectorPlugin(named_regexp=pattern, valid_ext=[".ipynb"])
    found, unrecognised = {}, []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith((".", "__MACOSX")) for part in relative.parts):
            unrecognised.append((None, str(relative), None))
            continue
        matched = str(path)
        if path.suffix.lower() == ".ipynb":  # "01_attention.IPYNB": patterns and nbgrader expect .ipynb
            matched = matched[: -len(path.suffix)] + ".ipynb"
        info = plugin.collect(matched)
        student = (info or {}).get("student_id")
        if not info or not student or not STUDENT_ID_PATTERN.fullmatch(student):
            unrecognised.append((None, str(relative), path.name if path.suffix.lower() == ".ipynb" else None))
            continue
        file_name = Path(info["file_id"]).name
        if released is None:
            notebook, number = Path(file_name).stem, 0
        else:
            notebook, number = resolve_notebook(file_name, released)
        if notebook is None:
            unrecognised.append((student, str(relative), file_name))
            continue
        found.setdefault(student, {}).setdefault(notebook, []).append((number, path))
    return found, unrecognised


def _pick(candidates):
    """The newest of several files for one notebook: highest resubmission number, then newest file."""
    return max(candidates, key=lambda item: (item[0], item[1].stat().st_mtime, str(item[1])))


def collect(course_dir, chapter, source, pattern=DEFAULT_PATTERN, released=None, replace=False):
    """Import the submissions in ``source`` (folder or .zip); return a :class:`Collected`.

    Each file is stored as ``<notebook>.ipynb`` for the released notebook of ``chapter`` it resolved
    to. A student collected before keeps the notebooks this collection has no file for, unless
    ``replace``.
    """
    from grader.course_folder import course_api

    source = Path(source)
    if not source.exists():
        raise GraderError(f"{source} does not exist")
    with tempfile.TemporaryDirectory(prefix="grader-collect-") as workdir:
        folder = source
        if source.is_file():
            if not zipfile.is_zipfile(source):
                raise GraderError(f"{source} is neither a folder nor a zip file")
            folder = Path(workdir) / "extracted"
            folder.mkdir()
            _safe_extract(source, folder)
        found, unmatched = match_files(folder, pattern, released)
        result = Collected(students=[])
        submissions = {}
        for student, notebooks in sorted(found.items()):
            for notebook, candidates in sorted(notebooks.items()):
                if released is not None and notebook not in released:
                    unmatched.append((student, str(candidates[0][1].relative_to(folder)), None))
                    continue
                number, chosen = _pick(candidates)
                for _, other in candidates:
                    if other != chosen:
                        result.notes.append(
                            f"{student}: {notebook}: took {chosen.relative_to(folder)} (the latest), "
                            f"not {other.relative_to(folder)}"
                        )
                submissions.setdefault(student, {})[notebook] = chosen
        if not submissions:
            raise GraderError(f"no submissions of {chapter} recognised in {source} (pattern {pattern!r})")
        students = store_submissions(course_dir, chapter, submissions, replace=replace)
        result.students = students
        for student, description, file_name in unmatched:
            guess = probable_notebook(file_name, released) if file_name and released else None
            who = f"{student}: " if student else ""
            result.unrecognised.append(
                f"{who}{description}" + (f" (probably {guess}.ipynb: rename it and collect again)" if guess else "")
            )
        if released is not None:
            api = course_api(course_dir)
            for student in students:
                folder_now = Path(api.coursedir.format_path(api.coursedir.submitted_directory, student, chapter))
                present = {path.stem for path in folder_now.glob("*.ipynb")}
                for notebook in sorted(set(released) - present):
                    guesses = [description for who, description, file_name in unmatched
                               if who == student and file_name and probable_notebook(file_name, released) == notebook]
                    hint = f"; probably {guesses[0]}" if guesses else ""
                    result.warnings.append(f"{student}: {notebook}.ipynb missing{hint}")
                for who, description, file_name in unmatched:
                    if who == student and not (file_name and probable_notebook(file_name, released)):
                        result.warnings.append(f"{student}: unrecognised file {description}")
    return result
