"""Feedback students can be given as it is: nbgrader GenerateFeedback preprocessors and the exporter.

The course folder's ``nbgrader_config.py`` (``grader.nbgrader_setup.base_config``) installs these, so
every nbgrader entry point that writes feedback (``python -m grader feedback``, ``nbgrader
generate_feedback``, the formgrader's "Generate Feedback" button) writes the same safe pages:

* :class:`StatusBanner`: a banner at the top with the notebook's grading status and its reason, read
  from the grader's status table in the gradebook;
* ``ClearHiddenTests`` (nbgrader): hidden-test source removed from the cells;
* :class:`HideTestTracebacks`: a failed test shows the check's message, never its traceback (which
  would quote the hidden test); an interrupted cell says which limit stopped it instead of a raw
  ``KeyboardInterrupt``; server paths are removed from the tracebacks of student code; the course
  secret is redacted wherever student code printed it;
* :class:`MathToMathML`: maths in markdown becomes MathML, which browsers render offline;
* :class:`FeedbackExporter`: the page template (``grader/templates/llmcore_feedback``): test cells
  named by their grade_id in the contents, no MathJax from a CDN.
"""
import html
import os
import re
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_markdown_cell
from nbgrader.preprocessors import NbGraderPreprocessor

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "llmcore_feedback"
REPO_ROOT = Path(__file__).resolve().parent.parent
INTERRUPTED = ("KeyboardInterrupt", "CellTimeoutError")
SECRET_ENV = "GRADER_COURSE_SECRET"

STATUS_TEXT = {
    "graded": "graded",
    "tampered": "graded after restoring the test cells you changed",
    "missing": "not submitted",
    "malformed": "could not be read",
    "timed_out": "stopped at a time limit",
    "kernel_died": "stopped: the notebook's Python process ended",
    "not_graded": "not graded yet",
}


def load_status(db_url, chapter, student, notebook):
    """``(status, score, max_score, detail)`` stored by ``python -m grader autograde``, or None."""
    path = str(db_url).removeprefix("sqlite:///")
    if not path or not os.path.isfile(path):
        return None
    try:
        with closing(sqlite3.connect(path, timeout=30)) as db:
            row = db.execute(
                "SELECT status, score, max_score, detail FROM llmcore_notebook_status "
                "WHERE chapter = ? AND student_id = ? AND notebook = ?", (chapter, student, notebook),
            ).fetchone()
    except sqlite3.Error:
        return None
    return tuple(row) if row else None


def banner_text(notebook, status, score, max_score, detail):
    """The markdown of the feedback banner."""
    what = STATUS_TEXT.get(status, status)
    line = f"**{notebook}: {what}** (status `{status}`) — score {score:g} / {max_score:g}."
    if detail and status != "graded":
        line += f"  \nWhy: {clean_text(detail)}."
    if status in ("timed_out", "kernel_died"):
        line += "  \nThe tests that ran before keep their points; the others score 0."
    if status == "missing":
        line += f"  \nNo file named `{notebook}.ipynb` was in your submission. If you handed it in under " \
                "another name, tell your instructor."
    return line


def _banner_html(text):
    return (
        '<div class="alert alert-info llmcore-status" role="status" style="margin: 0.5em 0 1em 0; '
        'padding: 0.6em 0.9em; border: 1px solid #9ac; background: #eef5fb">'
        + "<br>".join(_inline(part) for part in text.split("  \n")) + "</div>"
    )


def _inline(text):
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


class StatusBanner(NbGraderPreprocessor):
    """Put the notebook's grading status and its reason at the top of the feedback."""

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        found = load_status(info.get("db_url", ""), info.get("assignment"), info.get("student"), info.get("notebook"))
        if found:
            status, score, max_score, detail = found
            resources.setdefault("llmcore", {})["status"] = found
            cell = new_markdown_cell(_banner_html(banner_text(info.get("notebook"), status, score, max_score, detail)))
            cell.metadata["llmcore_status"] = status
            nb.cells.insert(0, cell)
        self._pages_for_ungraded(info)
        return nb, resources

    @staticmethod
    def _pages_for_ungraded(info):
        """Write the banner page of the student's notebooks nbgrader has no graded copy of (missing,
        malformed): nbgrader's feedback, from any entry point, then has a page for every notebook."""
        path = str(info.get("db_url", "")).removeprefix("sqlite:///")
        chapter, student = info.get("assignment"), info.get("student")
        if not path or not os.path.isfile(path) or not chapter or not student:
            return
        try:
            with closing(sqlite3.connect(path, timeout=30)) as db:
                rows = db.execute(
                    "SELECT notebook, status, score, max_score, detail FROM llmcore_notebook_status "
                    "WHERE chapter = ? AND student_id = ? AND status IN ('missing', 'malformed', 'not_graded')",
                    (chapter, student),
                ).fetchall()
        except sqlite3.Error:
            return
        folder = Path(path).parent / "feedback" / student / chapter  # the feedback folder sits next to the gradebook
        for notebook, status, score, max_score, detail in rows:
            page = folder / f"{notebook}.html"
            if not page.exists():
                folder.mkdir(parents=True, exist_ok=True)
                page.write_text(missing_feedback_page(notebook, status, score, max_score, detail))


_PATH_PREFIXES = None


def _path_prefixes():
    """Absolute paths of this server that must not appear in feedback, longest first."""
    global _PATH_PREFIXES
    if _PATH_PREFIXES is None:
        import tempfile

        prefixes = {str(REPO_ROOT): "<course library>", sys.prefix: "<python>", sys.base_prefix: "<python>",
                    tempfile.gettempdir(): "<tmp>", os.path.expanduser("~"): "<home>"}
        _PATH_PREFIXES = sorted(((p, r) for p, r in prefixes.items() if p and p != "/"), key=lambda x: -len(x[0]))
    return _PATH_PREFIXES


_SITE = re.compile(r"(?:/[^\s/:'\"]+)+/(?:site|dist)-packages/")


def clean_text(text, extra_prefixes=()):
    """``text`` without absolute paths of the grading server (site-packages, course, home, temp)."""
    text = _SITE.sub("", text)
    for prefix, replacement in [*extra_prefixes, *_path_prefixes()]:
        text = text.replace(prefix, replacement)
    return text


def _interrupted_message(detail):
    match = re.search(r"(\d+) s limit for one cell", detail or "")
    limit = f"the {match.group(1)} s limit" if match else "the time limit"
    return (f"Stopped: this cell ran longer than {limit} for one cell and was interrupted. "
            "Make it faster (fewer steps, smaller sizes) and run it again.")


class HideTestTracebacks(NbGraderPreprocessor):
    """Reduce tracebacks to what a student may see (see the module doc).

    A failed test cell shows ``ename: message`` (the check's message is the complete feedback); an
    interrupted cell shows which limit stopped it; other tracebacks lose the server's paths.
    """

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        status = (resources.get("llmcore") or {}).get("status") or load_status(
            info.get("db_url", ""), info.get("assignment"), info.get("student"), info.get("notebook"))
        self._detail = status[3] if status else ""
        course_root = getattr(getattr(self, "coursedir", None), "root", None) or os.getcwd()
        self._prefixes = [(str(course_root), "<course>")]
        self._secret = course_secret_value(info.get("db_url", ""))
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        grade = cell.metadata.get("nbgrader", {}).get("grade")
        interrupted = [o for o in cell.get("outputs", []) if o.get("output_type") == "error" and o.get("ename") in INTERRUPTED]
        if len(interrupted) > 1:  # KeyboardInterrupt, then nbclient's CellTimeoutError: one message is enough
            cell.outputs = [o for o in cell.outputs if not any(o is extra for extra in interrupted[1:])]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                ename = output.get("ename", "Error")
                if ename in INTERRUPTED:
                    message = _interrupted_message(self._detail)
                    output["ename"], output["evalue"], output["traceback"] = "TimeLimit", message, [message]
                elif grade:
                    message = f"{ename}: {output.get('evalue', '')}".rstrip(": ")
                    if ename == "AssertionError" and not output.get("evalue"):
                        message = "AssertionError: a test in this cell failed"
                    output["traceback"] = [clean_text(message, self._prefixes)]
                else:
                    output["traceback"] = [clean_text(line, self._prefixes) for line in output.get("traceback", [])]
                output["evalue"] = clean_text(str(output.get("evalue", "")), self._prefixes)
            if self._secret:
                _redact(output, self._secret)
        return cell, resources


def _redact(value, secret):
    """Replace ``secret`` wherever it occurs in the strings of an output (in place)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                value[key] = item.replace(secret, "[redacted]")
            else:
                _redact(item, secret)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                value[index] = item.replace(secret, "[redacted]")
            else:
                _redact(item, secret)


def course_secret_value(db_url):
    """The course secret of the course folder whose gradebook is ``db_url`` ('' when none)."""
    from grader.nbgrader_setup import SECRET_FILENAME

    path = str(db_url).removeprefix("sqlite:///")
    if not path:
        return ""
    secret_file = Path(path).parent / SECRET_FILENAME
    try:
        return secret_file.read_text().strip()
    except OSError:
        return ""


# $$...$$ (display) and $...$ (inline), not escaped, not across blank lines; code is left alone.
_DISPLAY = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\$)")
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)


def latex_to_mathml(source):
    """Markdown ``source`` with its ``$…$`` / ``$$…$$`` maths replaced by MathML."""
    try:
        from latex2mathml.converter import convert
    except ImportError:  # an environment installed before the course extra had it: maths stays as TeX
        return source

    def replace(match, display):
        try:
            return convert(match.group(1).strip(), display="block" if display else "inline")
        except Exception:  # maths latex2mathml cannot read stays as it was
            return match.group(0)

    parts = _CODE.split(source)
    for index in range(0, len(parts), 2):  # even parts are outside code
        text = _DISPLAY.sub(lambda m: replace(m, True), parts[index])
        parts[index] = _INLINE.sub(lambda m: replace(m, False), text)
    return "".join(parts)


class MathToMathML(NbGraderPreprocessor):
    """Maths in markdown cells as MathML: it renders in any current browser without MathJax or network."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown" and "$" in cell.source:
            cell.source = latex_to_mathml(cell.source)
        return cell, resources


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback exporter with the course's template (see the module doc)."""

    def __init__(self, config=None, **kwargs):
        import copy

        from traitlets.config import Config

        config = copy.deepcopy(config) if config is not None else Config()
        # the template is looked up during __init__: configure this class before it runs
        basedirs = list(config.HTMLExporter.get("extra_template_basedirs", []))
        config.FeedbackExporter.template_name = TEMPLATE_NAME
        config.FeedbackExporter.extra_template_basedirs = [str(TEMPLATES), *basedirs]
        super().__init__(config=config, **kwargs)


def feedback_preprocessors():
    """GenerateFeedback's preprocessors for the course (the order matters: banner, then cleaning)."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    return [GetGrades, StatusBanner, CSSHTMLHeaderPreprocessor, ClearHiddenTests, HideTestTracebacks, MathToMathML]


def missing_feedback_page(notebook, status, score, max_score, detail):
    """A standalone feedback page for a notebook nbgrader could not give feedback on (missing, malformed)."""
    banner = _banner_html(banner_text(notebook, status, score, max_score, detail))
    return (
        f'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8" />\n<title>{html.escape(notebook)}</title>\n'
        '<style>body { font-family: sans-serif; font-size: 14px; margin: 2em; }</style>\n</head>\n<body>\n'
        f"<h4>{html.escape(notebook)} (Score: {score:g} / {max_score:g})</h4>\n{banner}\n</body>\n</html>\n"
    )
