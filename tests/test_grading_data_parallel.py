"""The data-parallel exercise graded for real: its two processes talk over loopback inside the grading sandbox.

A grading kernel runs in a fresh network namespace (``unshare -n``) whose loopback starts down; the kernel
brings that namespace's ``lo`` up (``GRADER_LOOPBACK_UP``, :func:`grader.kernel_launcher.bring_loopback_up`),
so the check's gloo ranks can meet. A one-notebook chapter is released and autograded end to end.
"""
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from grader import forkserver_client, sandbox
from grader.sandbox import SandboxExecute
from nbg_cli import grader
from nbg_helpers import cells_by_grade_id, with_solutions
from nbg_synthetic import _answer, _cell, _check, _hidden, _notebook

pytestmark = [
    pytest.mark.slow,  # a torch template and four graded notebooks: about 30 s
    pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning"),
]

CHAPTER = "ch92_data_parallel"
NOTEBOOK = "01_data_parallel"
SIGNATURE = "def train_data_parallel(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):"
STEP = """rank, world_size = dist.get_rank(), dist.get_world_size()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= {divisor}
        optimizer.step()"""
CHECK_POINTS, HIDDEN_POINTS = 2, 3


def data_parallel_notebook():
    return _notebook([
        _cell(new_code_cell("import torch\nimport torch.distributed as dist\n"
                            "from grader.checks.ch05 import check_data_parallel_step"), "setup", locked=True),
        _answer("train_data_parallel", SIGNATURE, STEP.format(divisor="world_size")),
        _check("data_parallel_check", CHECK_POINTS, "check_data_parallel_step(train_data_parallel)"),
        _hidden("data_parallel_hidden", HIDDEN_POINTS, "check_data_parallel_step(train_data_parallel, hidden=True)"),
    ])


def test_a_grading_kernel_sees_its_own_namespace_with_loopback_up():
    executor = SandboxExecute(memory_mb=0, preload="json", timeout=30, notebook_timeout=60)
    if not executor._isolated:
        pytest.skip("this OS does not allow `unshare -n`: kernels share the host's network, loopback included")
    report = ("import os\nfrom llmcore.training.data_parallel import loopback_is_up\n"
              "print(os.readlink('/proc/self/ns/net'), loopback_is_up())")
    nb = nbformat.v4.new_notebook(cells=[new_code_cell(report)])
    try:
        nb, _ = executor.preprocess(nb, {"nbgrader": {"student": "lo", "notebook": "nb"}})
    finally:
        forkserver_client.close_all()
    assert sandbox.RUNS[("lo", "nb")]["isolated"]
    namespace, up = nb.cells[0].outputs[0]["text"].split()
    assert namespace != os.readlink("/proc/self/ns/net")
    assert up == "True"


def test_autograde_gives_full_marks_to_a_correct_step_and_partial_marks_to_mistakes(tmp_path):
    solutions = tmp_path / "solutions" / CHAPTER
    solutions.mkdir(parents=True)
    nbformat.write(data_parallel_notebook(), solutions / f"{NOTEBOOK}.ipynb")
    course = tmp_path / "course"
    assert grader("init", course).rc == 0
    run = grader("release", CHAPTER, "--course-dir", course, "--solutions", tmp_path / "solutions")
    assert run.rc == 0, run.err
    release = nbformat.read(course / "release" / CHAPTER / f"{NOTEBOOK}.ipynb", as_version=4)
    source = nbformat.read(solutions / f"{NOTEBOOK}.ipynb", as_version=4)

    def answered(divisor: str):
        nb = with_solutions(release, source)
        cells_by_grade_id(nb)["train_data_parallel"].source = f"{SIGNATURE}\n    " + STEP.format(divisor=divisor)
        return nb

    submissions = {
        "complete": with_solutions(release, source),
        "divides_by_two": answered("2"),  # right for the visible cases' two ranks, wrong for the hidden three
        "not_averaged": answered("1"),
        "blank": release,
    }
    for student, nb in submissions.items():
        (tmp_path / "inbox" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "inbox" / student / f"{NOTEBOOK}.ipynb")
    run = grader("autograde", CHAPTER, "--course-dir", course, "--submissions", tmp_path / "inbox", "--jobs", 2,
                 "--cell-timeout", 60, "--notebook-timeout", 120)
    assert f"autograded {CHAPTER} for {len(submissions)} students" in run.out, run.out + run.err

    from grader import report
    from grader.course_folder import course_api

    coursedir = course_api(course).coursedir
    statuses = report.load_statuses(coursedir, CHAPTER)
    scores = {student: statuses[(CHAPTER, student, NOTEBOOK)][1:3] for student in submissions}
    total = CHECK_POINTS + HIDDEN_POINTS
    assert scores == {
        "complete": (total, total),
        "divides_by_two": (CHECK_POINTS, total),
        "not_averaged": (0, total),
        "blank": (0, total),
    }, statuses
    # gloo over the namespace's own loopback and a FileStore are no network attempt to report
    assert not [e for e in report.load_entries(coursedir, CHAPTER) if e["kind"].startswith("network")]
