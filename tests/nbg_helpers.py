"""Helpers for the nbgrader pipeline tests: reading notebooks, building submissions, reading grades."""
import csv

import nbformat

SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
RELEASE_FORBIDDEN = SOLUTION_MARKERS + HIDDEN_MARKERS


def nbgrader_meta(cell):
    return cell.metadata.get("nbgrader", {})


def cells_by_grade_id(nb):
    return {nbgrader_meta(cell)["grade_id"]: cell for cell in nb.cells if "grade_id" in nbgrader_meta(cell)}


def graded_points(nb):
    """{grade_id: points} of the graded (test) cells of ``nb``."""
    return {
        nbgrader_meta(cell)["grade_id"]: nbgrader_meta(cell)["points"]
        for cell in nb.cells
        if nbgrader_meta(cell).get("grade")
    }


def with_solutions(release_nb, source_nb, keep_stub=()):
    """A copy of ``release_nb`` whose answer cells hold the source's solution.

    Answer cells whose grade_id is in ``keep_stub`` keep the release stub, as
    for a student who has not done that exercise.
    """
    submission = nbformat.from_dict(release_nb)
    source_cells = cells_by_grade_id(source_nb)
    for cell in submission.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution") and meta["grade_id"] not in keep_stub:
            cell.source = source_cells[meta["grade_id"]].source
    return submission


def _marked_lines(source, markers):
    """Lines strictly inside ``markers`` regions of ``source`` (the markers are substrings)."""
    begin, end = markers
    inside, lines = False, []
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


def secret_lines(source_cell):
    """Lines of a source cell that students must not see: solutions and hidden tests.

    Lines that also appear outside the secret regions (such as a closing
    bracket) cannot leak anything and are left out; so are blank lines. An answer
    cell without markers is secret as a whole.
    """
    meta = nbgrader_meta(source_cell)
    source = source_cell.source
    if meta.get("solution") and not any(marker in source for marker in SOLUTION_MARKERS):
        secret = [line.strip() for line in source.splitlines()]
    else:
        secret = _marked_lines(source, SOLUTION_MARKERS) + _marked_lines(source, HIDDEN_MARKERS)
    public = {line.strip() for line in source.splitlines()} - set(secret)
    return [line for line in secret if line and line not in public]


def leaks(release_nb, source_nb):
    """Descriptions of markers or secret source lines found in ``release_nb``; empty when clean."""
    found = []
    source_cells = cells_by_grade_id(source_nb)
    for index, cell in enumerate(release_nb.cells):
        for marker in RELEASE_FORBIDDEN:
            if marker in cell.source:
                found.append(f"cell {index}: marker {marker!r}")
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in source_cells:
            released_lines = {line.strip() for line in cell.source.splitlines()}
            for line in secret_lines(source_cells[grade_id]):
                if line in released_lines:
                    found.append(f"cell {index} ({grade_id}): {line!r}")
    return found


def read_grades(csv_path):
    """{(student_id, notebook): (score, max_score, status)} from an exported grades CSV."""
    with open(csv_path, newline="") as handle:
        return {
            (row["student_id"], row["notebook"]): (float(row["score"]), float(row["max_score"]), row["status"])
            for row in csv.DictReader(handle)
        }
