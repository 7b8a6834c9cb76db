"""Hostile and broken submissions: each one's exact outcome, and nobody else loses anything.

One course folder is graded once per module (``--jobs 2``) with short limits; every case is a
student whose expected status, score per test cell and report entries are asserted. The chapter
(tests/nbg_adversarial.py) is the synthetic one plus a notebook graded by a real grader check.
"""
import csv
import zipfile
from pathlib import Path

import nbformat
import pytest

import nbg_adversarial as adv
from nbg_cli import grader
from nbg_helpers import cells_by_grade_id, nbgrader_meta, with_solutions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTER = adv.CHAPTER
A, T, M = adv.ARITHMETIC, adv.TEXT, adv.MASKS
POINTS = {
    A: {"add_check": 1, "add_hidden": 2, "mul_check": 1, "mul_hidden": 3},
    T: {"shout_check": 2, "shout_hidden": 3},
    M: {"causal_mask_mod_check": 2, "causal_mask_mod_hidden": 1, "swiglu_hidden_size_check": 1, "swiglu_hidden_size_hidden": 1,
        "alibi_slopes_check": 1, "alibi_slopes_hidden": 1},
}
LIMITS = ["--cell-timeout", 4, "--notebook-timeout", 20, "--memory-mb", 2048, "--max-output-kb", 256]
CORRECT = {
    "add": "def add(a, b):\n    return a + b",
    "mul": "def mul(a, b):\n    return a * b",
    "shout": 'def shout(text):\n    return text.upper() + "!"',
    "causal_mask_mod": "def causal_mask_mod(b, h, q_idx, kv_idx):\n    return kv_idx <= q_idx",
    "swiglu_hidden_size": f"def swiglu_hidden_size(d_model, multiple_of=256, multiplier=None):\n    {adv.SWIGLU_HIDDEN_SIZE}",
    "alibi_slopes": f"def alibi_slopes(n_heads):\n    {adv.ALIBI_SLOPES}",
}
ALL = ...  # every test cell of the notebook fails


def _set(nb, grade_id, source):
    cells_by_grade_id(nb)[grade_id].source = source


def _strip_metadata(nb):
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        cell.metadata.pop("deletable", None)
        cell.metadata.pop("editable", None)
    return nb


# student -> {notebook: edit} where edit is a function(nb) -> nb | str (raw file), or None to omit it.
def _cases(release, source):
    def complete(name):
        return with_solutions(release[name], source[name])

    def edited(name, **answers):
        nb = complete(name)
        for grade_id, code in answers.items():
            _set(nb, grade_id, code)
        return nb

    def delete(nb, grade_id):
        nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != grade_id]
        return nb

    def slow(nb):  # eight extra cells of 3 s each: every cell is within its limit, the notebook is not
        at = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == "shout") + 1
        nb.cells[at:at] = [nbformat.v4.new_code_cell("import time\ntime.sleep(3)") for _ in range(8)]
        return nb

    foreign = (REPO_ROOT / "course" / "ch01_transformer" / "01_attention.ipynb").read_text()
    loop_forever = "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass\n"
    return {
        "complete": {A: complete(A), T: complete(T), M: complete(M)},
        "blank": {A: release[A], T: release[T], M: release[M]},
        "partial": {A: with_solutions(release[A], source[A], keep_stub={"mul"}), T: complete(T)},
        "edited_test": {A: edited(A, add_check="pass"), T: complete(T)},
        "deleted_test": {A: delete(edited(A, mul="def mul(a, b):\n    return a + b"), "mul_hidden"), T: complete(T)},
        "metadata_stripped": {A: _strip_metadata(complete(A)), T: complete(T)},
        "sys_exit": {A: edited(A, add="def add(a, b):\n    import sys\n    sys.exit(1)"), T: complete(T)},
        "os_exit": {A: edited(A, mul="def mul(a, b):\n    import os\n    os._exit(1)"), T: complete(T)},
        "loop_in_function": {A: edited(A, mul="def mul(a, b):\n    while True:\n        pass"), T: complete(T)},
        "loop_top_level": {A: complete(A), T: edited(T, shout=loop_forever + CORRECT["shout"])},
        "slow_notebook": {A: complete(A), T: slow(complete(T))},
        "memory_bomb": {
            A: complete(A),
            T: edited(T, shout=CORRECT["shout"] + "\nhog = []\nwhile True:\n    hog.append(bytearray(2**27))"),
        },
        "huge_output": {A: complete(A), T: edited(T, shout=CORRECT["shout"] + '\nprint("x" * 20_000_000)')},
        "non_json": {A: "{ not a notebook", T: complete(T)},
        "wrong_chapter": {A: foreign, T: complete(T)},
        "reference_called": {A: complete(A), M: edited(M, causal_mask_mod="causal_mask_mod = llmcore.causal_mask")},
        "reference_called_ch05": {
            A: complete(A),
            M: edited(M, swiglu_hidden_size="from llmcore.ffn import gated_hidden_size as swiglu_hidden_size",
                      alibi_slopes="from llmcore.alibi import alibi_slopes"),
        },
        "monkeypatch_check": {
            A: complete(A),
            M: edited(M, causal_mask_mod=(
                "def causal_mask_mod(b, h, q_idx, kv_idx):\n    return kv_idx >= q_idx\n\n"
                "import grader.checks.ch01 as checks\n"
                "checks.check_causal_mask_mod = lambda *args, **kwargs: None\n"
                "check_causal_mask_mod = checks.check_causal_mask_mod"
            )),
        },
        "monkeypatch_framework": {
            A: complete(A),
            M: edited(M, causal_mask_mod=(
                "def causal_mask_mod(b, h, q_idx, kv_idx):\n    return kv_idx >= q_idx\n\n"
                "import grader.checks.framework as framework\n"
                "framework.describe_mismatch = lambda *args, **kwargs: None"
            )),
        },
        "network": {
            A: complete(A),
            T: edited(T, shout=(
                "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
                "except OSError as error:\n    print('no network:', error)\n" + CORRECT["shout"]
            )),
        },
    }


# student -> {notebook: (status, failing test cells (ALL: every one), report entry kinds)}
# Notebooks a student did not submit are expected "missing".
EXPECTED = {
    "complete": {A: ("graded", [], set()), T: ("graded", [], set()), M: ("graded", [], set())},
    "blank": {A: ("graded", ALL, set()), T: ("graded", ALL, set()), M: ("graded", ALL, set())},
    "partial": {A: ("graded", ["mul_check", "mul_hidden"], set()), T: ("graded", [], set())},
    "edited_test": {A: ("tampered", [], {"test_cell_edited"}), T: ("graded", [], set())},
    "deleted_test": {A: ("tampered", ["mul_check", "mul_hidden"], {"test_cell_deleted"}), T: ("graded", [], set())},
    "metadata_stripped": {
        A: ("tampered", [], {"locked_cell_detagged", "test_cell_detagged", "metadata_changed", "test_cell_deleted"}),
        T: ("graded", [], set()),
    },
    "sys_exit": {A: ("graded", ["add_check", "add_hidden"], set()), T: ("graded", [], set())},
    "os_exit": {A: ("kernel_died", ["mul_check", "mul_hidden"], set()), T: ("graded", [], set())},
    "loop_in_function": {A: ("timed_out", ["mul_check", "mul_hidden"], set()), T: ("graded", [], set())},
    "loop_top_level": {A: ("graded", [], set()), T: ("timed_out", ALL, set())},  # ignores the interrupt
    "slow_notebook": {A: ("graded", [], set()), T: ("timed_out", ALL, set())},
    "memory_bomb": {A: ("graded", [], set()), T: ("graded", [], set())},
    "huge_output": {A: ("graded", [], set()), T: ("graded", [], {"output_truncated"})},
    "non_json": {A: ("malformed", None, set()), T: ("graded", [], set())},
    "wrong_chapter": {A: ("malformed", None, set()), T: ("graded", [], set())},
    "reference_called": {
        A: ("graded", [], set()),
        M: ("graded", ["causal_mask_mod_check", "causal_mask_mod_hidden"], {"reference_called"}),
    },
    "reference_called_ch05": {
        A: ("graded", [], set()),
        M: ("graded", ["swiglu_hidden_size_check", "swiglu_hidden_size_hidden", "alibi_slopes_check", "alibi_slopes_hidden"],
            {"reference_called"}),
    },
    "monkeypatch_check": {A: ("graded", [], set()), M: ("tampered", ALL, {"checks_modified"})},
    "monkeypatch_framework": {A: ("graded", [], set()), M: ("tampered", ALL, {"checks_modified"})},
    "network": {A: ("graded", [], set()), T: ("graded", [], {"network_attempt"})},
}
DETAILS = {  # a word the status detail must contain
    ("non_json", A): "not JSON",
    ("wrong_chapter", A): "wrong notebook",
    ("os_exit", A): "process ended",
    ("loop_in_function", A): "stopped after the 4 s limit for one cell, in cell mul",
    ("slow_notebook", T): "stopped after the 20 s limit for the whole notebook",
}


def expected_cells(notebook, failing):
    failing = list(POINTS[notebook]) if failing is ALL else failing or []
    return {cell: (0.0 if cell in failing else float(points), float(points)) for cell, points in POINTS[notebook].items()}


def write_inbox(inbox, cases):
    for student, notebooks in cases.items():
        folder = inbox / student
        folder.mkdir(parents=True)
        for name, nb in notebooks.items():
            if isinstance(nb, str):
                (folder / f"{name}.ipynb").write_text(nb)
            else:
                nbformat.write(nb, folder / f"{name}.ipynb")


def released_course(root):
    solutions = root / "solutions"
    adv.write_chapter(solutions)
    course = root / "course"
    assert grader("init", course).rc == 0
    run = grader("release", CHAPTER, "--course-dir", course, "--solutions", solutions)
    assert run.rc == 0, run.err
    names = [f"{n}.ipynb" for n in (A, T, M)]
    release = {Path(n).stem: nbformat.read(course / "release" / CHAPTER / n, as_version=4) for n in names}
    source = {Path(n).stem: nbformat.read(solutions / CHAPTER / n, as_version=4) for n in names}
    return course, release, source


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    course, release, source = released_course(root)
    write_inbox(root / "inbox", _cases(release, source))
    runs = {
        "autograde": grader("autograde", CHAPTER, "--course-dir", course, "--submissions", root / "inbox",
                            "--jobs", 2, *LIMITS),
        "export": grader("export", "--course-dir", course, "--to", root / "grades.csv", "--format", "long"),
        "report": grader("report", CHAPTER, "--course-dir", course, "--csv", root / "summary.csv",
                         "--status-csv", root / "statuses.csv", "--entries-csv", root / "entries.csv"),
        "feedback": grader("feedback", CHAPTER, "--course-dir", course),
    }
    from grader import report
    from grader.course_folder import course_api

    coursedir = course_api(course).coursedir
    return {
        "root": root, "course": course, "runs": runs, "coursedir": coursedir,
        "statuses": report.load_statuses(coursedir, CHAPTER),
        "cells": report.load_cell_scores(coursedir, CHAPTER),
        "entries": report.load_entries(coursedir, CHAPTER),
        "release": release, "source": source,
    }


CASES = [(student, nb) for student in EXPECTED for nb in (A, T, M)]


@pytest.mark.parametrize("student,notebook", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_each_notebook_has_its_exact_outcome(graded, student, notebook):
    status, failing, kinds = EXPECTED[student].get(notebook, ("missing", None, set()))
    got_status, score, max_score, detail = graded["statuses"][(CHAPTER, student, notebook)]
    assert (got_status, max_score) == (status, adv.MAX_SCORES[notebook]), detail
    if failing is None:  # never graded: no cell scores, score 0
        assert score == 0.0
        assert not any(key[:2] == (student, notebook) for key in graded["cells"])
    else:
        cells = {cell: value for (s, n, cell), value in graded["cells"].items() if (s, n) == (student, notebook)}
        assert cells == expected_cells(notebook, failing)
        assert score == sum(value for value, _ in cells.values())
    got_kinds = {e["kind"] for e in graded["entries"] if (e["student_id"], e["notebook"]) == (student, notebook)}
    assert got_kinds == kinds
    if (student, notebook) in DETAILS:
        assert DETAILS[(student, notebook)] in detail


def test_every_report_entry_names_the_cell_it_is_about(graded):
    entries = {(e["student_id"], e["kind"], e["cell"]) for e in graded["entries"]}
    assert ("edited_test", "test_cell_edited", "add_check") in entries
    assert ("deleted_test", "test_cell_deleted", "mul_hidden") in entries
    assert ("reference_called", "reference_called", "causal_mask_mod_check") in entries
    assert ("monkeypatch_check", "checks_modified", "causal_mask_mod_check") in entries
    network = [e for e in graded["entries"] if e["kind"] == "network_attempt"]
    assert any("192.0.2.1" in e["detail"] for e in network)
    patched = [e["detail"] for e in graded["entries"] if e["student_id"] == "monkeypatch_framework"]
    assert any("grader.checks.framework.describe_mismatch" in d for d in patched)


def test_checksum_noise_of_hidden_tests_is_not_reported(graded):
    # Untouched hidden-test cells trip nbgrader's checksum warning (issue #1961); the report stays empty.
    assert not [e for e in graded["entries"] if e["student_id"] in ("complete", "blank", "partial")]


def test_the_command_reports_failures_and_exits_1(graded):
    run = graded["runs"]["autograde"]
    assert run.rc == 1
    assert f"autograded {CHAPTER} for {len(EXPECTED)} students" in run.out
    assert "could not grade non_json/01_arithmetic: malformed" in run.err
    assert "tampered edited_test/01_arithmetic" in run.err


def test_export_and_summary_agree_with_the_stored_statuses(graded):
    assert graded["runs"]["export"].rc == 0
    with open(graded["root"] / "grades.csv", newline="") as handle:
        rows = {(r["student_id"], r["notebook"]): r for r in csv.DictReader(handle)}
    for (chapter, student, notebook), (status, score, _, _) in graded["statuses"].items():
        assert rows[(student, notebook)]["status"] == status
        assert float(rows[(student, notebook)]["score"]) == score
    report = graded["runs"]["report"]
    assert report.rc == 0, report.err
    assert "gradebook integrity: ok" in report.out
    assert "per-exercise averages" in report.out and "add_check" in report.out
    with open(graded["root"] / "summary.csv", newline="") as handle:
        summary = {row["student_id"]: row for row in csv.DictReader(handle)}
    # one row per student with whole-number scores and a total (LMS-ready), points possible first
    total = f"{sum(adv.MAX_SCORES.values()):g}"
    assert summary["points_possible"]["total"] == total
    assert summary["os_exit"][f"{CHAPTER}/{A}"] == "3" and "kernel_died" not in summary["os_exit"].values()
    assert summary["complete"]["total"] == total
    with open(graded["root"] / "statuses.csv", newline="") as handle:
        statuses = {(row["student_id"], row["notebook"]): row for row in csv.DictReader(handle)}
    assert statuses[("os_exit", A)]["status"] == "kernel_died"
    assert "process ended" in statuses[("os_exit", A)]["detail"]
    assert float(statuses[("complete", A)]["seconds"]) > 0


def test_gradebook_passes_the_integrity_check(graded):
    from grader.report import integrity_problems

    assert integrity_problems(graded["coursedir"]) == []


def test_feedback_never_shows_hidden_tests(graded):
    assert graded["runs"]["feedback"].rc == 0, graded["runs"]["feedback"].err
    feedback = graded["course"] / "feedback"
    pages = {p.relative_to(feedback): p.read_text() for p in feedback.glob(f"*/{CHAPTER}/*.html")}
    assert Path("blank", CHAPTER, f"{A}.html") in pages and Path("blank", CHAPTER, f"{M}.html") in pages
    hidden = ["add(-1, 1)", "mul(-2, 4)", 'shout("")', "hidden=True", "BEGIN HIDDEN TESTS"]
    for page, html in pages.items():
        for secret in hidden:
            assert secret not in html, f"{page} shows {secret!r}"
    assert "causal_mask_mod is not implemented yet" in pages[Path("blank", CHAPTER, f"{M}.html")]


def test_regrading_a_student_is_idempotent_and_touches_nobody_else(graded, tmp_path):
    from grader import report

    before = dict(graded["statuses"])
    again = ["os_exit", "edited_test", "non_json"]
    run = grader("autograde", CHAPTER, "--course-dir", graded["course"], "--jobs", 1, *LIMITS,
                 *[arg for student in again for arg in ("--student", student)])
    assert run.rc == 1  # the same broken notebooks as before
    assert f"autograded {CHAPTER} for 3 students" in run.out
    after = report.load_statuses(graded["coursedir"], CHAPTER)
    assert {k: v[:3] for k, v in after.items()} == {k: v[:3] for k, v in before.items()}
    assert report.load_cell_scores(graded["coursedir"], CHAPTER) == graded["cells"]
    assert report.integrity_problems(graded["coursedir"]) == []


def test_collect_reads_an_lms_zip_and_lists_what_it_did_not_recognise(graded, tmp_path):
    course, release = graded["course"], graded["release"]
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"submissions/alice/{A}.ipynb", nbformat.writes(release[A]))
        zf.writestr(f"submissions/bob/{CHAPTER}/{T}.ipynb", nbformat.writes(release[T]))
        zf.writestr("submissions/bob/notes.txt", "hello")
        zf.writestr(f"submissions/carol/99_other.ipynb", nbformat.writes(release[T]))
        zf.writestr(f"__MACOSX/submissions/alice/._{A}.ipynb", "junk")
    run = grader("collect", CHAPTER, "--course-dir", course, archive)
    assert run.rc == 0, run.err
    assert "collected 2 submissions" in run.out and "alice, bob" in run.out
    assert (course / "submitted" / "alice" / CHAPTER / f"{A}.ipynb").is_file()
    assert (course / "submitted" / "bob" / CHAPTER / f"{T}.ipynb").is_file()
    for name in ("notes.txt", "99_other.ipynb", "__MACOSX"):
        assert name in run.err


def test_collect_default_pattern_is_nbgrader_zip_collect_config(graded):
    from grader.collect import DEFAULT_PATTERN
    from grader.course_folder import load_course_config

    config = load_course_config(graded["course"])
    assert config.FileNameCollectorPlugin.named_regexp == DEFAULT_PATTERN


@pytest.mark.parametrize("raw,why", [
    (b"\xff\xfe{", "not UTF-8"),
    (b'{"nbformat": 3, "cells": []}', "nbformat 3"),
    (b'[1, 2]', "not a Jupyter notebook"),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "nonsense"}]}', "invalid"),
])
def test_malformed_files_are_named_for_what_is_wrong(tmp_path, raw, why):
    from grader.integrity import read_submission

    path = tmp_path / "nb.ipynb"
    path.write_bytes(raw)
    nb, problem = read_submission(path)
    assert nb is None and why in problem


@pytest.fixture(scope="module")
def parallel_and_sequential(tmp_path_factory):
    """The same four submissions graded with --jobs 1 and --jobs 3 in two course folders."""
    csvs = {}
    for jobs in (1, 3):
        root = tmp_path_factory.mktemp(f"jobs{jobs}")
        course, release, source = released_course(root)
        cases = _cases(release, source)
        chosen = ["partial", "os_exit", "non_json", "edited_test"]
        write_inbox(root / "inbox", {s: cases[s] for s in chosen})
        run = grader("autograde", CHAPTER, "--course-dir", course, "--submissions", root / "inbox",
                     "--jobs", jobs, *LIMITS)
        assert run.rc == 1, run.err
        assert grader("export", "--course-dir", course, "--to", root / "grades.csv", "--format", "long").rc == 0
        with open(root / "grades.csv", newline="") as handle:  # all but the seconds each notebook took
            rows = [row[:7] + row[8:] for row in csv.reader(handle)]
        assert rows[0][:7] == ["student_id", "chapter", "notebook", "score", "max_score", "status", "detail"]
        csvs[jobs] = "\n".join(",".join(row) for row in rows) + "\n"
    return csvs


def test_parallel_and_sequential_grading_give_identical_csvs(parallel_and_sequential):
    assert parallel_and_sequential[1] == parallel_and_sequential[3]
    assert parallel_and_sequential[1].count("\n") == 1 + 4 * 3
