"""Collecting submissions from a folder or an LMS zip download into a course folder.

A zip is read with nbgrader's ``zip_collect`` machinery (``FileNameCollectorPlugin``): every file's
full extracted path is matched against ``named_regexp``, which must define the groups
``student_id`` and ``file_id``. The default accepts ``<student_id>/<notebook>.ipynb`` and
``<student_id>/<chapter>/<notebook>.ipynb`` at any depth; LMS layouts need their own pattern
(``--pattern``, see docs/INSTRUCTORS.md).
"""
import shutil
import tempfile
import zipfile
from pathlib import Path

from grader.errors import GraderError
from grader.grading import STUDENT_ID_PATTERN, store_submissions

from grader.collect_pattern import DEFAULT_PATTERN  # noqa: E402 (shared with nbgrader_setup)
MAX_UNZIPPED_BYTES = 2 * 2**30


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


def match_files(folder, pattern=DEFAULT_PATTERN):
    """``({student: {file_name: path}}, [unrecognised paths])`` for the files under ``folder``."""
    from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

    plugin = FileNameCollectorPlugin(named_regexp=pattern, valid_ext=[".ipynb"])
    found, unrecognised = {}, []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith((".", "__MACOSX")) for part in relative.parts):
            unrecognised.append(str(relative))
            continue
        info = plugin.collect(str(path))
        student = (info or {}).get("student_id")
        if not info or not student or not STUDENT_ID_PATTERN.fullmatch(student):
            unrecognised.append(str(relative))
            continue
        name = Path(info["file_id"]).name
        if name in found.setdefault(student, {}):
            unrecognised.append(f"{relative} (a second {name} for {student})")
            continue
        found[student][name] = path
    return found, unrecognised


def collect(course_dir, chapter, source, pattern=DEFAULT_PATTERN, released=None):
    """Import the submissions in ``source`` (folder or .zip); return ``(students, unrecognised)``.

    Files whose name is not a released notebook of ``chapter`` (``released``) are reported as
    unrecognised and not imported.
    """
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
        found, unrecognised = match_files(folder, pattern)
        submissions = {}
        for student, files in sorted(found.items()):
            for name, path in sorted(files.items()):
                if released is not None and Path(name).stem not in released:
                    unrecognised.append(f"{path.relative_to(folder)} (not a notebook of {chapter})")
                    continue
                submissions.setdefault(student, []).append(path)
        if not submissions:
            raise GraderError(f"no submissions of {chapter} recognised in {source} (pattern {pattern!r})")
        staged = Path(workdir) / "staged"
        copies = {}
        for student, paths in submissions.items():
            (staged / student).mkdir(parents=True)
            copies[student] = []
            for path in paths:
                shutil.copy2(path, staged / student / path.name)
                copies[student].append(staged / student / path.name)
        students = store_submissions(course_dir, chapter, copies)
    return students, unrecognised
