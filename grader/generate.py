"""Generate the student release (course/) from the nbgrader source notebooks (solutions/).

Generation runs in a throwaway course folder with its own gradebook, so it never
touches an instructor's gradebook and leaves no database in the repository. The
released notebooks are then normalised so that regenerating gives byte-identical
files and course/ only changes when solutions/ does.
"""
import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from grader.errors import GraderError
from grader.nbgrader_setup import VOLATILE_FILES, base_config, make_api

CHAPTER_PATTERN = re.compile(r"ch\d\d_\w+")
# The student's JupyterLab picks the kernel from this; everything else in the
# notebook metadata depends on the author's machine (versions, widgets, editor state).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "trusted")


def find_chapters(folder):
    """Names of the chapter folders (``chNN_topic`` with notebooks) in ``folder``, sorted."""
    return sorted(
        path.name
        for path in Path(folder).iterdir()
        if CHAPTER_PATTERN.fullmatch(path.name) and any(path.glob("*.ipynb"))
    )


def normalise_notebook(nb):
    """Strip outputs and machine-dependent metadata from ``nb`` in place; return it."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
    return nb


def normalise_notebook_file(path):
    """Rewrite the notebook at ``path`` normalised, in nbformat's JSON layout."""
    nb = normalise_notebook(nbformat.read(path, as_version=4))
    nbformat.write(nb, path)


def generate_chapters(solutions_dir, chapters, workdir):
    """Release ``chapters`` of ``solutions_dir`` under ``workdir/release``; return that folder.

    Runs ``generate_assignment`` with --force semantics against a gradebook in
    ``workdir`` and normalises every released notebook.
    """
    workdir = Path(workdir)
    for chapter in chapters:
        source = Path(solutions_dir) / chapter
        if not source.is_dir():
            available = ", ".join(find_chapters(solutions_dir)) or "none"
            raise GraderError(f"no chapter {chapter!r} in {solutions_dir} (available: {available})")
        shutil.copytree(source, workdir / "source" / chapter, ignore=shutil.ignore_patterns(*VOLATILE_FILES))
    api = make_api(base_config(workdir))
    for chapter in chapters:
        result = api.generate_assignment(chapter, force=True, create=True)
        if not result["success"]:
            raise GraderError.from_nbgrader(f"generate {chapter}", result)
    release = workdir / "release"
    for notebook in sorted(release.glob("*/*.ipynb")):
        normalise_notebook_file(notebook)
    return release


def generate_course(solutions_dir, course_dir, chapters=None):
    """Regenerate ``course_dir/<chapter>`` for ``chapters`` (default: all of ``solutions_dir``).

    Each chapter folder is replaced only once every chapter has been generated,
    so a failing chapter leaves course/ untouched. When all chapters are
    regenerated, chapter folders without a source are removed as stale; files
    outside chapter folders (syllabus, README) are never touched. Returns the
    names of the chapters written and of the stale chapters removed.
    """
    course_dir = Path(course_dir)
    all_chapters = chapters is None
    chapters = find_chapters(solutions_dir) if all_chapters else list(chapters)
    if chapters:
        with tempfile.TemporaryDirectory(prefix="grader-generate-") as workdir:
            release = generate_chapters(solutions_dir, chapters, workdir)
            for chapter in chapters:
                target = course_dir / chapter
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(release / chapter, target)
    stale = []
    if all_chapters:
        stale = [name for name in find_chapters(course_dir) if name not in chapters]
        for name in stale:
            shutil.rmtree(course_dir / name)
    return chapters, stale
