"""Exercise checks, one package per chapter: ``from grader.checks.ch01 import check_scaled_dot_product_attention``.

Each exercise is declared once (:mod:`grader.checks.spec`) and registered in :data:`REGISTRY`;
importing this package registers every chapter's exercises. A check takes the learner's function or
class, runs it against llmcore on several cases, prints a one-line report on success and raises
:class:`~grader.checks.framework.CheckFailure` (an ``AssertionError``) with a diagnosis on failure.
``hidden=True`` runs the hidden-test variant (other seeds and shapes) used by nbgrader's hidden test
cells. :func:`hint` prints the code-level hint for an exercise's last failure.
"""

from . import ch01, ch05  # noqa: F401  (registers the exercises)
from .framework import CheckFailure
from .spec import REGISTRY, hint

__all__ = ["CheckFailure", "REGISTRY", "hint"]
