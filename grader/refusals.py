"""What nbgrader refuses, said in one sentence with what to do, and the formgrader's Autograde button.

nbgrader reports a refusal as an exception deep inside a long log. :func:`explain` recognises the
known ones in that log and returns one sentence for the instructor; :class:`RefuseAutograde` is
the course folder's autograde preprocessor for plain nbgrader (the formgrader's "Autograde" button,
``nbgrader autograde``): it grades nothing and points to ``python -m grader autograde``, which grades
under limits, in the sandbox, and records the statuses ``report`` and ``export`` read.
"""
import re

from nbgrader.preprocessors import NbGraderPreprocessor

AUTOGRADE_MESSAGE = (
    "plain nbgrader autograde (the formgrader's Autograde button) is disabled in this course folder: "
    "it would run student code without the grader's limits and sandbox and without recording statuses. "
    "Run: python -m grader autograde CHAPTER --course-dir COURSE_DIR"
)


class RefuseAutograde(NbGraderPreprocessor):
    """First autograde preprocessor of a course folder: refuse, with :data:`AUTOGRADE_MESSAGE`."""

    def preprocess(self, nb, resources):
        raise RuntimeError(AUTOGRADE_MESSAGE)


# (regular expression on nbgrader's log, sentence); groups of the match fill the sentence.
KNOWN = [
    (re.compile(r"Cannot add or remove cells for notebook '([^']+)' because there are submissions"),
     "refused: notebook {0} gained, lost or renamed a graded cell (a grade_id) while the gradebook holds "
     "submissions of it, and nbgrader keeps grades per cell. Nothing was changed. Fix the test in place under "
     "the same grade_id (its code and points may change) and release again; a new exercise goes into a new chapter"),
    (re.compile(r"Cannot modify existing assignment '([^']+)' because there are submissions"),
     "refused: a notebook was added to or removed from chapter {0} while the gradebook holds submissions of it. "
     "Nothing was changed. Keep the chapter's notebooks as released; put a new notebook into a new chapter"),
    (re.compile(r"Duplicate grade id: (\S+)"),
     "refused: two cells share the grade_id {0}; give each graded or locked cell its own grade_id in the source"),
    (re.compile(r"nbgrader cell does not have a grade_id|grade_id is empty"),
     "refused: a graded, answer or locked cell has no grade_id; set one in the source notebook "
     "(Create Assignment toolbar)"),
    (re.compile(r"nbgrader cell '([^']*)' does not have points"),
     "refused: graded cell {0} has no points; set its points in the source notebook"),
    (re.compile(r"No end solution statement found|Encountered nested begin solution"),
     "refused: a ### BEGIN SOLUTION has no matching ### END SOLUTION (or they are nested) in the source notebook"),
    (re.compile(r"unable to open database file"),
     "the gradebook could not be opened: the course folder was moved or is not writable"),
]


def explain(log):
    """One sentence for a known nbgrader refusal in ``log``, or None."""
    for pattern, sentence in KNOWN:
        match = pattern.search(log or "")
        if match:
            groups = [group or "?" for group in match.groups()] or ["?"]
            return sentence.format(*groups)
    return None
