"""Chapter 1 graded as a new instructor would, for a class of six (issue 13's walk-through).

``python -m benchmarks.six_student_class [--workdir DIR] [--jobs 2]`` builds a Canvas-style zip of six
students — two complete solutions (ada, ben), a blank release (cai), three bugs (dana: unscaled
attention, an off-by-one causal mask, an unbiased LayerNorm variance), a notebook the LMS renamed
``01_attention (1).ipynb`` (eli) and an endless training step (fay) — then runs, as documented in
docs/INSTRUCTORS.md: init, release, collect --lms canvas, autograde, report, feedback, export. It
prints each command's output, the time autograde took, and the top of every feedback page (the
status banner). Nothing here is a pass/fail figure; it takes a few minutes (the training notebook,
and fay's 120 s cell limit).
"""
from __future__ import annotations

import argparse
import html
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "ch01_transformer"
NOTEBOOKS = ("01_attention", "02_building_blocks", "03_training")
CANVAS_IDS = {"ada": 1001, "ben": 1002, "cai": 1003, "dana": 1004, "eli": 1005, "fay": 1006}

BUGS = {  # notebook -> [(answer cell, old text, new text)]
    "01_attention": [
        ("scaled_dot_product_attention_impl", "scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])",
         "scores = q @ k.transpose(-2, -1)"),
        ("causal_mask_mod_impl", "return kv_idx <= q_idx", "return kv_idx < q_idx"),
    ],
    "02_building_blocks": [
        ("layer_norm_impl", "variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)",
         "variance = x.var(dim=-1, keepdim=True)"),
    ],
}
ENDLESS_TRAIN_STEP = '''def train_step(model, optimizer, scheduler, src, tgt, smoothing=0.1, pad_id=ToySeq2SeqTask.PAD) -> float:
    """One step of teacher-forced training on a batch; this one keeps training until the loss is tiny."""
    loss = None
    while loss is None or loss.item() > -1.0:  # never true: a loss is never negative
        decoder_input, labels = teacher_forcing_batch(tgt)
        logits = model(src, decoder_input)
        loss = label_smoothed_cross_entropy(logits, labels, smoothing, pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()
    return loss.item()
'''


def _class(release: dict, source: dict) -> dict:
    """{student: {file name in the LMS zip: notebook}}."""
    import nbformat

    sys.path.insert(0, str(REPO / "tests"))
    from nbg_helpers import cells_by_grade_id, with_solutions

    def complete(name):
        return with_solutions(release[name], source[name])

    buggy = {name: complete(name) for name in NOTEBOOKS}
    for name, edits in BUGS.items():
        for grade_id, old, new in edits:
            cell = cells_by_grade_id(buggy[name])[grade_id]
            assert old in cell.source, (grade_id, old)
            cell.source = cell.source.replace(old, new)
    looping = {name: complete(name) for name in NOTEBOOKS}
    cells_by_grade_id(looping["03_training"])["train_step_impl"].source = ENDLESS_TRAIN_STEP
    students = {
        "ada": {f"{n}.ipynb": complete(n) for n in NOTEBOOKS},
        "ben": {f"{n}.ipynb": complete(n) for n in NOTEBOOKS},
        "cai": {f"{n}.ipynb": release[n] for n in NOTEBOOKS},
        "dana": {f"{n}.ipynb": buggy[n] for n in NOTEBOOKS},
        "eli": {"01_attention (1).ipynb": complete("01_attention"),
                **{f"{n}.ipynb": complete(n) for n in NOTEBOOKS[1:]}},
        "fay": {f"{n}.ipynb": looping[n] for n in NOTEBOOKS},
    }
    return {s: {name: nbformat.writes(nb) for name, nb in files.items()} for s, files in students.items()}


def _run(*args) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from nbg_cli import grader

    print(f"\n$ python -m grader {' '.join(str(a) for a in args)}", flush=True)
    run = grader(*args)
    print(run.out.rstrip())
    if run.err.strip():
        print("[stderr]\n" + run.err.rstrip())
    print(f"[exit {run.rc}]", flush=True)
    return run.rc


def banner(page: Path) -> str:
    """The status banner of a feedback page, as text."""
    text = page.read_text()
    match = re.search(r'<div class="alert alert-info llmcore-status"[^>]*>(.*?)</div>', text, re.S)
    if not match:
        return "(no banner)"
    inner = re.sub(r"<br\s*/?>", " / ", match.group(1))
    return html.unescape(re.sub(r"<[^>]+>", "", inner)).strip()


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="six-students-"))
    workdir.mkdir(parents=True, exist_ok=True)
    course = workdir / "course"
    print(f"working in {workdir}")
    _run("init", course)
    _run("release", CHAPTER, "--course-dir", course)
    release = {n: nbformat.read(course / "release" / CHAPTER / f"{n}.ipynb", as_version=4) for n in NOTEBOOKS}
    source = {n: nbformat.read(REPO / "solutions" / CHAPTER / f"{n}.ipynb", as_version=4) for n in NOTEBOOKS}
    archive = workdir / "canvas-submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for student, files in _class(release, source).items():
            for index, (name, text) in enumerate(files.items()):
                zf.writestr(f"{student}_{CANVAS_IDS[student]}_{5000 + index}_{name}", text)
    _run("collect", CHAPTER, "--course-dir", course, archive, "--lms", "canvas", "--strict")
    start = time.perf_counter()
    _run("autograde", CHAPTER, "--course-dir", course, "--jobs", args.jobs)
    print(f"[autograde took {time.perf_counter() - start:.0f} s with --jobs {args.jobs}]")
    _run("report", CHAPTER, "--course-dir", course, "--csv", workdir / "summary.csv",
         "--status-csv", workdir / "statuses.csv")
    _run("feedback", CHAPTER, "--course-dir", course)
    ids = workdir / "lms-ids.csv"
    ids.write_text("student_id,lms_id,name\n" + "".join(f"{s},{i},{s.title()}\n" for s, i in CANVAS_IDS.items()))
    _run("export", "--course-dir", course, "--to", workdir / "grades.csv")
    _run("export", "--course-dir", course, "--to", workdir / "canvas.csv", "--format", "canvas", "--lms-ids", ids)
    for name in ("grades.csv", "canvas.csv"):
        print(f"\n--- {name}\n{(workdir / name).read_text().rstrip()}")
    print("\n--- top of each feedback page")
    for page in sorted((course / "feedback").glob(f"*/{CHAPTER}/*.html")):
        print(f"{page.parts[-3]}/{page.stem}: {banner(page)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
