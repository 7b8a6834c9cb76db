"""``course/syllabus.json`` points every taught SYLLABUS id at a real notebook, section and grade cell."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
SYLLABUS_MAP = json.loads((REPO / "course" / "syllabus.json").read_text(encoding="utf-8"))
# The course keeps its own copy of the syllabus so that a bare clone can test against it.
SYLLABUS_FILE = REPO / "docs" / "SYLLABUS.md"
SHARED_SYLLABUS = REPO.parent / "shared" / "SYLLABUS.md"


def _headings(notebook: nbformat.NotebookNode) -> set[str]:
    return {
        line.lstrip("#").strip()
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("#")
    }


def _grade_ids(notebook: nbformat.NotebookNode) -> dict[str, dict]:
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.metadata["nbgrader"]
        for cell in notebook.cells
        if "nbgrader" in cell.get("metadata", {})
    }


@pytest.mark.parametrize("concept", sorted(SYLLABUS_MAP))
@pytest.mark.parametrize("tree", ["solutions", "course"])
def test_entry_points_at_an_existing_section_and_graded_cells(concept: str, tree: str) -> None:
    entry = SYLLABUS_MAP[concept]
    path = REPO / tree / entry["notebook"]
    assert path.exists(), f"{concept}: {tree}/{entry['notebook']} does not exist"
    notebook = nbformat.read(path, as_version=4)
    assert entry["section"] in _headings(notebook), f"{concept}: no heading {entry['section']!r} in {path.name}"
    cells = _grade_ids(notebook)
    for grade_id in entry["grade_ids"]:
        assert grade_id in cells, f"{concept}: grade_id {grade_id!r} not in {tree}/{entry['notebook']}"
        assert cells[grade_id].get("grade"), f"{concept}: {grade_id!r} is not a graded test cell"
        assert cells[grade_id].get("points", 0) > 0, f"{concept}: {grade_id!r} carries no points"


def _syllabus_ids(chapter_prefix: str) -> dict[str, bool]:
    """SYLLABUS ids of a chapter mapped to whether they are [E] exercises."""
    found = {}
    for match in re.finditer(r"^- ([A-Z]\d\d)( \[E\])?", SYLLABUS_FILE.read_text(encoding="utf-8"), re.MULTILINE):
        if match.group(1).startswith(chapter_prefix):
            found[match.group(1)] = bool(match.group(2))
    return found


def test_every_chapter_one_concept_is_mapped_and_exercises_are_graded() -> None:
    concepts = _syllabus_ids("T")
    assert len(concepts) == 12
    missing = sorted(set(concepts) - set(SYLLABUS_MAP))
    assert not missing, f"SYLLABUS ids not mapped in course/syllabus.json: {missing}"
    ungraded = sorted(c for c, exercise in concepts.items() if exercise and not SYLLABUS_MAP[c]["grade_ids"])
    assert not ungraded, f"[E] concepts without grade_ids: {ungraded}"


# Chapter 5's concepts taught so far: the LLaMA recipe (Qwen, GLM, ALiBi, Baichuan, BLOOM, the
# vocabulary extension and the data pipeline are the open models' part of the chapter).
LLAMA_RECIPE = {"L01", "L02", "L03", "L04", "L05", "L06", "L08", "L14", "L15", "L18"}


def test_the_llama_recipe_is_mapped_and_its_exercises_are_graded() -> None:
    concepts = _syllabus_ids("L")
    assert LLAMA_RECIPE <= set(concepts)
    missing = sorted(LLAMA_RECIPE - set(SYLLABUS_MAP))
    assert not missing, f"SYLLABUS ids not mapped in course/syllabus.json: {missing}"
    # L18 is not an [E] id, but its data-parallel step is graded all the same.
    graded = {c for c in LLAMA_RECIPE if concepts[c]} | {"L18"}
    ungraded = sorted(c for c in graded if not SYLLABUS_MAP[c]["grade_ids"] or not SYLLABUS_MAP[c]["check"])
    assert not ungraded, f"chapter-5 concepts without grade_ids or checks: {ungraded}"
    assert {SYLLABUS_MAP[c]["notebook"].split("/")[0] for c in LLAMA_RECIPE} == {"ch05_llama_family"}


OPEN_MODELS = {"L07", "L09", "L10", "L11", "L12", "L13", "L16", "L17"}


def test_the_open_models_on_the_recipe_are_mapped_and_their_exercises_are_graded() -> None:
    concepts = _syllabus_ids("L")
    assert OPEN_MODELS <= set(concepts)
    missing = sorted(OPEN_MODELS - set(SYLLABUS_MAP))
    assert not missing, f"SYLLABUS ids not mapped in course/syllabus.json: {missing}"
    ungraded = sorted(c for c in OPEN_MODELS if concepts[c] and not (SYLLABUS_MAP[c]["grade_ids"] and SYLLABUS_MAP[c]["check"]))
    assert not ungraded, f"[E] concepts of Qwen, GLM, Baichuan and the data pipeline without grade_ids or checks: {ungraded}"
    notebooks = {SYLLABUS_MAP[c]["notebook"] for c in OPEN_MODELS}
    assert {n.split("/")[0] for n in notebooks} == {"ch05_llama_family"}
    assert not notebooks & {SYLLABUS_MAP[c]["notebook"] for c in LLAMA_RECIPE}, "the open models continue the chapter in notebooks of their own"


def test_course_readme_lists_every_mapped_concept() -> None:
    readme = (REPO / "course" / "README.md").read_text(encoding="utf-8")
    for concept, entry in SYLLABUS_MAP.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| {concept} ")), None)
        assert row is not None, f"course/README.md has no table row for {concept}"
        assert entry["notebook"] in row and entry["section"] in row, f"course/README.md row for {concept} is stale: {row}"


@pytest.mark.skipif(not SHARED_SYLLABUS.exists(), reason="no shared/SYLLABUS.md beside this checkout")
def test_syllabus_copy_is_current() -> None:
    assert SYLLABUS_FILE.read_text(encoding="utf-8") == SHARED_SYLLABUS.read_text(encoding="utf-8"), (
        "docs/SYLLABUS.md differs from shared/SYLLABUS.md: copy the new syllabus in"
    )


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("concept", sorted(SYLLABUS_MAP))
def test_reference_and_checks_resolve(concept: str) -> None:
    from grader.checks import REGISTRY

    entry = SYLLABUS_MAP[concept]
    assert entry["reference"].startswith("llmcore."), f"{concept}: the reference is an llmcore object"
    _resolve(entry["reference"])
    for exercise_id in entry["check"]:
        assert exercise_id in REGISTRY, f"{concept}: check {exercise_id!r} is not a registered exercise"
        assert concept in REGISTRY[exercise_id].syllabus, f"{concept}: {exercise_id} does not declare it"


def test_every_exercise_concept_names_its_checks_and_every_check_is_mapped() -> None:
    from grader.checks import REGISTRY

    exercises = {c for c, is_exercise in _syllabus_ids("T").items() if is_exercise}
    assert not sorted(c for c in exercises if not SYLLABUS_MAP[c]["check"]), "[E] concepts without a check"
    mapped = {exercise_id for entry in SYLLABUS_MAP.values() for exercise_id in entry["check"]}
    assert mapped == set(REGISTRY), f"registered but unmapped: {sorted(set(REGISTRY) - mapped)}"
