"""What a submitted notebook is, compared with its release: readable? the right notebook? tampered?

Runs before nbgrader sees the file. :func:`read_submission` sorts out files nbgrader cannot read
(not UTF-8, not JSON, not nbformat 4). :func:`analyse` compares every cell the release tags for
nbgrader with the submission, by ``grade_id`` first, then by identical source (a de-tagged cell),
then by position (an answer cell whose metadata was stripped), and returns a repaired notebook:
edited locked and test cells are noted (nbgrader restores their source), deleted or de-tagged ones
are put back with their metadata, so every test runs for real. Comparing with the *release* (not
nbgrader's checksums) keeps the hidden-test checksum noise (nbgrader issue #1961) out of the report.
"""
import copy
import json
import re
from dataclasses import dataclass, field

import nbformat

# What the release's nbgrader metadata says about a cell; a change to any of these is tampering.
META_KEYS = ("grade", "solution", "locked", "task", "grade_id", "points")

# Kinds of report entries, by severity: "tamper" entries make the notebook's status "tampered".
SEVERITY = {
    "test_cell_edited": "tamper",
    "test_cell_deleted": "tamper",
    "test_cell_detagged": "tamper",
    "locked_cell_edited": "tamper",
    "locked_cell_deleted": "tamper",
    "locked_cell_detagged": "tamper",
    "metadata_changed": "tamper",
    "checks_modified": "tamper",
    "reference_called": "cheat",
    "network_attempt": "cheat",
    "answer_cell_deleted": "info",
    "output_truncated": "info",
    "network_not_isolated": "info",
}


@dataclass(frozen=True)
class Entry:
    """One line of the tamper and cheat report."""

    kind: str
    cell: str | None
    detail: str

    @property
    def severity(self):
        return SEVERITY.get(self.kind, "info")


@dataclass
class Analysis:
    notebook: object  # the repaired NotebookNode
    entries: list = field(default_factory=list)
    wrong_notebook: bool = False


def read_submission(path):
    """``(notebook, None)`` or ``(None, why it is malformed)`` for the file at ``path``."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text (byte {error.start})"
    try:
        data = json.loads(text)
    except ValueError as error:
        return None, f"not JSON ({error})"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        return None, "not a Jupyter notebook (no list of cells)"
    if data.get("nbformat") != 4:
        return None, f"nbformat {data.get('nbformat')!r}; expected 4"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # nbformat's ValidationError and friends
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"invalid notebook ({first[:200]})"
    return nb, None


def _meta(cell):
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _flags(meta):
    flags = {key: meta.get(key) for key in META_KEYS}
    flags["grade"], flags["solution"] = bool(flags["grade"]), bool(flags["solution"])
    flags["locked"], flags["task"] = bool(flags["locked"]), bool(flags["task"])
    if flags["grade"] and flags["points"] is not None:
        flags["points"] = float(flags["points"])
    else:
        flags["points"] = None
    return flags


def _label(meta):
    if meta.get("grade") and not meta.get("solution"):
        return "test_cell"
    if meta.get("locked") and not meta.get("solution"):
        return "locked_cell"
    return "answer_cell"


def analyse(submission, release, earlier=()):
    """Compare ``submission`` with ``release`` (both NotebookNodes); return an :class:`Analysis`.

    ``earlier`` are the versions of the notebook released before ``release`` (the instructor fixed
    a test and re-released): a locked or test cell exactly as one of them released it is no edit;
    it is brought up to date with ``release`` like any other cell.
    """
    nb = copy.deepcopy(submission)
    cells = nb.cells
    release_cells = [cell for cell in release.cells if _meta(cell).get("grade_id")]
    versions = {}  # grade_id -> [every released version of that cell], the current one first
    for version in [release, *earlier]:
        for cell in version.cells:
            grade_id = _meta(cell).get("grade_id")
            if grade_id:
                versions.setdefault(grade_id, []).append(cell)

    def released_sources(rcell):
        return {version.source for version in versions[_meta(rcell)["grade_id"]]
                if version.cell_type == rcell.cell_type}

    def released_flags(rcell):
        return [(_flags(_meta(version)), version.cell_type) for version in versions[_meta(rcell)["grade_id"]]]
    entries = []
    matched = {}  # release grade_id -> index into `cells`
    by_id = {}
    for index, cell in enumerate(cells):
        grade_id = _meta(cell).get("grade_id")
        if grade_id and grade_id not in by_id:
            by_id[grade_id] = index

    # 1. by grade_id
    for rcell in release_cells:
        grade_id = _meta(rcell)["grade_id"]
        if grade_id in by_id:
            matched[grade_id] = by_id[grade_id]
    used = set(matched.values())

    # 2. locked and test cells by identical source, among cells that are not tagged as released ones
    released_ids = {_meta(cell)["grade_id"] for cell in release_cells}
    def free(index):
        return index not in used and _meta(cells[index]).get("grade_id") not in released_ids

    for rcell in release_cells:
        meta = _meta(rcell)
        if meta["grade_id"] in matched or not meta.get("locked") or not rcell.source.strip():
            continue
        for index, cell in enumerate(cells):
            if free(index) and cell.cell_type == rcell.cell_type and cell.source in released_sources(rcell):
                matched[meta["grade_id"]] = index
                used.add(index)
                entries.append(Entry(f"{_label(meta)}_detagged", meta["grade_id"],
                                     "its nbgrader metadata was removed or changed; restored"))
                cells[index].metadata["nbgrader"] = copy.deepcopy(dict(meta))
                break

    # Evidence that this is the released notebook: a locked cell's exact text, or an answer cell's id.
    sources = {cell.source for cell in cells}
    evidence = sum(1 for cell in release_cells if _meta(cell).get("locked") and cell.source.strip()
                   and {source for source in released_sources(cell) if source.strip()} & sources)
    evidence += sum(1 for cell in release_cells if _meta(cell).get("solution")
                    and _meta(cell)["grade_id"] in by_id and _meta(cells[by_id[_meta(cell)["grade_id"]]]).get("solution"))
    if not matched or not evidence:
        return Analysis(nb, [], wrong_notebook=True)

    # 3. answer cells by position: a free cell of the same type between the matched neighbours
    order = [_meta(cell)["grade_id"] for cell in release_cells]
    for position, rcell in enumerate(release_cells):
        meta = _meta(rcell)
        if meta["grade_id"] in matched or not meta.get("solution"):
            continue
        before = [matched[g] for g in order[:position] if g in matched]
        after = [matched[g] for g in order[position + 1:] if g in matched]
        low, high = (max(before) if before else -1), (min(after) if after else len(cells))
        candidates = [i for i in range(low + 1, high) if free(i) and cells[i].cell_type == rcell.cell_type]
        # an answer holds code: prefer a non-empty cell (an emptied hidden-test cell may sit in between)
        candidates = [i for i in candidates if cells[i].source.strip()] or candidates
        if candidates:
            index = candidates[0]
            matched[meta["grade_id"]] = index
            used.add(index)
            entries.append(Entry("metadata_changed", meta["grade_id"],
                                 "answer cell without its nbgrader metadata; recognised by position"))
            cells[index].metadata["nbgrader"] = copy.deepcopy(dict(meta))

    # 4. compare what matched; restore metadata
    for rcell in release_cells:
        meta = _meta(rcell)
        grade_id = meta["grade_id"]
        if grade_id not in matched:
            continue
        cell = cells[matched[grade_id]]
        got = _meta(cell)
        if (_flags(got), cell.cell_type) in released_flags(rcell)[1:] and cell.cell_type == rcell.cell_type:
            cell.metadata["nbgrader"] = copy.deepcopy(dict(meta))  # an earlier release: bring it up to date
        elif _flags(got) != _flags(meta) or cell.cell_type != rcell.cell_type:
            changed = [key for key in META_KEYS if _flags(got)[key] != _flags(meta)[key]]
            if cell.cell_type != rcell.cell_type:
                changed.append("cell_type")
            entries.append(Entry("metadata_changed", grade_id, f"changed: {', '.join(changed)}; restored"))
            cell.metadata["nbgrader"] = copy.deepcopy(dict(meta))
            if cell.cell_type != rcell.cell_type:
                replacement = copy.deepcopy(rcell)
                if meta.get("solution"):
                    replacement.source = cell.source
                cells[matched[grade_id]] = replacement
                cell = replacement
        if meta.get("locked") and not meta.get("solution") and cell.source not in released_sources(rcell):
            entries.append(Entry(f"{_label(meta)}_edited", grade_id, "source changed; restored before grading"))

    # 5. put back what is missing, after the cell that precedes it in the release
    for position, rcell in enumerate(release_cells):
        meta = _meta(rcell)
        grade_id = meta["grade_id"]
        if grade_id in matched:
            continue
        previous = [matched[g] for g in order[:position] if g in matched]
        insert_at = (max(previous) + 1) if previous else 0
        restored = copy.deepcopy(rcell)
        if restored.get("id") in {cell.get("id") for cell in cells}:
            restored["id"] = re.sub(r"[^A-Za-z0-9_-]", "-", f"restored-{grade_id}")[:64]
        if restored.cell_type == "code":
            restored.outputs, restored.execution_count = [], None
        cells.insert(insert_at, restored)
        for key, index in matched.items():
            if index >= insert_at:
                matched[key] = index + 1
        used = {index + 1 if index >= insert_at else index for index in used}
        matched[grade_id] = insert_at
        used.add(insert_at)
        kind = f"{_label(meta)}_deleted"
        detail = "missing; put back and graded" if kind == "test_cell_deleted" else "missing; put back"
        entries.append(Entry(kind, grade_id, detail))
    return Analysis(nb, entries)


def reference_calls(autograded_nb):
    """Report entries for test cells whose check said the learner called the reference."""
    entries = []
    for cell in autograded_nb.cells:
        meta = _meta(cell)
        if not meta.get("grade"):
            continue
        for output in cell.get("outputs", []):
            text = output.get("evalue", "") if output.get("output_type") == "error" else ""
            if "which implements this very exercise" in text:
                first = text.strip().splitlines()[0]
                entries.append(Entry("reference_called", meta.get("grade_id"), first[:300]))
    return entries


def timed_out_cells(autograded_nb):
    """Labels (grade_id or cell number) of the cells that hit the per-cell time limit."""
    found = []
    for index, cell in enumerate(autograded_nb.cells):
        if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            found.append(_meta(cell).get("grade_id") or f"cell {index}")
    return found
