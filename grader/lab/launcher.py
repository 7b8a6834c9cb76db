"""Start JupyterLab for the course: ``make lab`` (learners) and ``make instructor-lab``.

Learner mode opens ``course/`` with nbgrader's instructor tools hidden (the Nbgrader menu,
Formgrader, Create Assignment, the Assignment and Course lists, which need an exchange a
self-learner does not have); the Validate button stays. Instructor mode keeps every nbgrader tool
and opens the repository root, or the course folder given with ``--course-dir`` (where the
formgrader finds that folder's ``nbgrader_config.py``). Both modes turn off JupyterLab's news prompt
and update check, and open notebooks without marking them modified (:mod:`grader.lab.contents`).

Nothing is written anywhere: the settings are folders of this repository (``grader/lab/settings/common``,
``grader/lab/settings/learner``) put in front of ``JUPYTER_CONFIG_PATH`` for this one server, so a user's own
Jupyter settings stay as they are (and win over ours where they set the same thing). The server
imports :mod:`grader.lab.contents` (the package is installed by ``make lab``).

On Linux the script first looks for a Chinese (CJK) font and prints a one-line warning when there is
none: without one, every Chinese term of the notebooks shows as boxes in a browser on this machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[2]
SETTINGS = Path(__file__).resolve().parent / "settings"
COMMON = SETTINGS / "common"  # both modes: no news prompt, no update check, notebooks open unmodified
LEARNER = SETTINGS / "learner"  # learner mode: nbgrader's instructor tools hidden

FONT_PACKAGE = "fonts-noto-cjk"
FONT_WARNING = (
    "WARNING: no Chinese (CJK) font found: the Chinese terms in the notebooks will show as boxes in a browser on "
    f"this machine; install one (Debian/Ubuntu: sudo apt-get install {FONT_PACKAGE}; Fedora: sudo dnf install "
    "google-noto-sans-cjk-fonts) and reload the page."
)
# File names of the CJK fonts Linux distributions ship (Noto/Source Han, WenQuanYi, AR PL, Droid).
CJK_FONT_FILE = re.compile(r"cjk|wqy|wenquanyi|sourcehan|droidsansfallback|notosans(sc|tc|hk)|notoserif(sc|tc)|uming|ukai",
                           re.IGNORECASE)
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")


def _fc_list_zh() -> str | None:
    """Families fontconfig (what browsers on Linux use) knows for Chinese; None without ``fc-list``."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        return subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _font_files(dirs: Sequence[str]) -> bool:
    for folder in dirs:
        root = Path(folder).expanduser()
        if root.is_dir() and any(CJK_FONT_FILE.search(path.name) for path in root.rglob("*") if path.is_file()):
            return True
    return False


def cjk_font_found(fc_list: Callable[[], str | None] = _fc_list_zh, dirs: Sequence[str] = FONT_DIRS,
                   platform: str = sys.platform) -> bool:
    """Whether this machine has a font with Chinese glyphs (always True off Linux: macOS and Windows ship one)."""
    if not platform.startswith("linux"):
        return True
    families = fc_list()
    if families is not None:
        return bool(families.strip())
    return _font_files(dirs)


def config_path(instructor: bool, environ: dict[str, str]) -> str:
    """``JUPYTER_CONFIG_PATH`` for the server: our folders first, then whatever the caller had."""
    ours = [str(COMMON)] if instructor else [str(LEARNER), str(COMMON)]
    theirs = [entry for entry in environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if entry]
    return os.pathsep.join(ours + theirs)


def lab_command(instructor: bool, course_dir: Path | None, extra: Sequence[str],
                environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the JupyterLab server."""
    if instructor:
        notebook_dir = course_dir.expanduser().resolve() if course_dir is not None else REPO
    else:
        notebook_dir = REPO / "course"
    env = {**environ, "JUPYTER_CONFIG_PATH": config_path(instructor, environ)}
    chosen = any(arg.startswith(("--notebook-dir", "--ServerApp.root_dir", "--ServerApp.notebook_dir")) for arg in extra)
    command = [sys.executable, "-m", "jupyterlab", *([] if chosen else [f"--notebook-dir={notebook_dir}"]), *extra]
    return command, env


def server_folder(instructor: bool, course_dir: Path | None) -> Path:
    """Where the server runs: nbgrader (the formgrader, Validate) reads ``nbgrader_config.py`` from there.

    An instructor's course folder has its own config (safe feedback, its gradebook); everything else
    runs from the repository, whose config gives Validate the course's cell time limit.
    """
    if instructor and course_dir is not None:
        return course_dir.expanduser().resolve()
    return REPO


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--instructor", action="store_true", help="keep nbgrader's instructor tools (formgrader, "
                        "Create Assignment); opens the repository root or --course-dir")
    parser.add_argument("--course-dir", type=Path, help="instructor mode: your course folder (python -m grader init)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and JUPYTER_CONFIG_PATH, start nothing")
    args, extra = parser.parse_known_args(argv)
    if args.course_dir is not None and not args.instructor:
        parser.error("--course-dir is for --instructor; learners work in course/")
    if args.course_dir is not None and not args.course_dir.expanduser().is_dir():
        parser.error(f"no course folder {args.course_dir} (create one with: python -m grader init {args.course_dir})")
    if not cjk_font_found():
        print(FONT_WARNING, file=sys.stderr, flush=True)
    command, env = lab_command(args.instructor, args.course_dir, extra, dict(os.environ))
    if args.dry_run:
        print(f"JUPYTER_CONFIG_PATH={env['JUPYTER_CONFIG_PATH']}")
        print(" ".join(command))
        return 0
    os.chdir(server_folder(args.instructor, args.course_dir))
    os.execve(command[0], command, env)
    return 0  # not reached

