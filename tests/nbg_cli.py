"""Running ``python -m grader`` in-process from tests (nbgrader is imported once, not per command)."""
import contextlib
import io
from dataclasses import dataclass

from grader.cli import main


@dataclass
class Run:
    """Exit status and printed output of one command."""

    rc: int
    out: str
    err: str


def grader(*args):
    """Run ``python -m grader ARGS`` in this process and capture what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse: --help and usage errors
            rc = exit_.code
    return Run(rc, out.getvalue(), err.getvalue())
