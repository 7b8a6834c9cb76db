"""nbgrader configuration of the repository: solutions/ (source) is released into course/.

The settings themselves live in grader.nbgrader_setup so that instructor course
folders created with `python -m grader init` share them. Regenerate course/ with
`python -m grader generate`: unlike plain `nbgrader generate_assignment` it uses a
throwaway gradebook and strips volatile metadata so that course/ diffs stay clean.
"""
import os
import sys

_repo_root = os.path.dirname(os.path.abspath(__file__))
if _repo_root not in sys.path:  # grader must import even without `pip install -e .`
    sys.path.insert(0, _repo_root)

from grader.nbgrader_setup import repository_config  # noqa: E402

c = get_config()  # noqa: F821 (injected by traitlets)
c.merge(repository_config(_repo_root))
