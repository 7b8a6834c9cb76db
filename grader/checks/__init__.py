"""Exercise checks, one module per chapter: ``from grader.checks.ch01 import check_scaled_dot_product_attention``.

Every check takes the learner's function or class, runs it against llmcore on several cases, prints
a one-line report on success and raises :class:`~grader.checks.framework.CheckFailure` (an
``AssertionError``) with a diagnosis on failure. ``hidden=True`` runs the hidden-test variant
(other seeds and shapes) used by nbgrader's hidden test cells.
"""

from .framework import CheckFailure

__all__ = ["CheckFailure"]
